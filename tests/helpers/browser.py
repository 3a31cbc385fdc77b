"""Debian's chromium driven by Playwright, for the web page's tests.

Playwright's sync API is bound to the thread that started it, and the tests' servers
run on Trio in the test's thread, so the browser lives in one thread of its own
(:class:`BrowserThread`, started once per test session): a test hands it a function
with :meth:`BrowserThread.run` and awaits the result without blocking the servers.

:class:`PageWatch` records what must fail a test: console errors, uncaught page
errors, requests that failed, and replies with an error status.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import trio
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

T = TypeVar("T")

CALL_TIMEOUT = 60.0
"""Seconds one browser call may take before the test fails."""


def chromium_path() -> str:
    """The system chromium (installed by ``make system-deps``); never a downloaded one."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise RuntimeError("chromium is not installed: run `make system-deps`")
    return path


class BrowserThread:
    """One headless chromium in one thread, for every browser test of a session."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="browser")
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None

    def start(self) -> None:
        """Launch the browser (blocking)."""
        self._executor.submit(self._launch).result(timeout=CALL_TIMEOUT)

    def _launch(self) -> None:
        self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(
            executable_path=chromium_path(),
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )

    @property
    def browser(self) -> Browser:
        """The launched browser (use it in the browser thread only)."""
        assert self._browser is not None, "the browser is not started"
        return self._browser

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in the browser thread; its result (or exception)."""
        future = self._executor.submit(function, *args)
        return await trio.to_thread.run_sync(lambda: future.result(timeout=CALL_TIMEOUT))

    def close(self) -> None:
        """Close the browser and stop Playwright and the thread (blocking)."""

        def stop() -> None:
            if self._browser is not None:
                self._browser.close()
            if self._playwright is not None:
                self._playwright.stop()

        try:
            self._executor.submit(stop).result(timeout=CALL_TIMEOUT)
        finally:
            self._executor.shutdown(wait=True)


@dataclass
class PageWatch:
    """What went wrong on a page: console errors, page errors, failed requests, and
    replies with a status of 400 or more (each as one line)."""

    problems: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        """Record ``page``'s problems from now on."""
        page.on(
            "console",
            lambda msg: (
                self.problems.append(f"console {msg.type}: {msg.text}")
                if msg.type in ("error", "warning")
                else None
            ),
        )
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        page.on(
            "requestfailed",
            lambda request: self.problems.append(
                f"request failed: {request.method} {request.url} {request.failure}"
            ),
        )
        page.on(
            "response",
            lambda response: (
                self.problems.append(
                    f"HTTP {response.status}: {response.request.method} {response.url}"
                )
                if response.status >= 400
                else None
            ),
        )


@contextmanager
def open_page(browser: Browser, base: str) -> Iterator[tuple[Page, PageWatch]]:
    """A fresh context and page on ``base`` (downloads accepted, clipboard allowed),
    watched; closed afterwards."""
    context = browser.new_context(accept_downloads=True, base_url=base)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    context.set_default_timeout(15_000)
    page = context.new_page()
    watch = PageWatch()
    watch.attach(page)
    try:
        yield page, watch
    finally:
        context.close()
