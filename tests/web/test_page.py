"""The web page in a real browser: sign in, browse, fetch, zip, copy a link, pull in.

Every test fails on a console error, an uncaught page error, a failed request or an
error reply the page receives (:class:`~tests.helpers.browser.PageWatch`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import time
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import trio
from playwright.sync_api import Page, WebSocketRoute, expect

from tests.helpers.browser import BrowserThread, open_page
from tests.helpers.remote_downloads import Env, payload
from tests.helpers.server import Served, wait_for
from tests.helpers.upstream import Blob

pytestmark = pytest.mark.browser


def sign_in(page: Page, token: str) -> None:
    """Open the page and sign in with ``token`` (by the field's label)."""
    page.goto("/")
    page.get_by_label("Access token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#listing-status")).to_contain_text("entries")
    expect(page.locator("#listing-status")).not_to_contain_text("Loading")


def download_bytes(page: Page, button: str) -> tuple[str, bytes]:
    """Click ``button`` and return the name and bytes of the download it starts."""
    with page.expect_download() as info:
        page.get_by_role("button", name=button, exact=True).click()
    download = info.value
    path = download.path()
    return download.suggested_filename, Path(path).read_bytes()


async def test_sign_in_browse_and_fetch(browser_thread: BrowserThread, served: Served) -> None:
    def scenario() -> list[str]:
        with open_page(browser_thread.browser, served.base) as (page, watch):
            sign_in(page, served.token)
            assert page.evaluate("sessionStorage.getItem('slipstream.token')") == served.token
            assert served.token not in page.url
            name, body = download_bytes(page, "Download random.bin")
            assert (name, body) == ("random.bin", served.files["random.bin"])
            page.get_by_role("link", name="subdir/").click()
            expect(page.locator("#crumbs")).to_contain_text("subdir")
            expect(page.get_by_role("link", name="deeper/")).to_be_visible()
            name, body = download_bytes(page, "Download inner.txt")
            assert (name, body) == ("inner.txt", served.files["subdir/inner.txt"])
            page.get_by_role("link", name="Home").click()
            expect(page.get_by_role("link", name="subdir/")).to_be_visible()
            return watch.problems

    assert await browser_thread.run(scenario) == []


async def test_zip_two_files_and_a_directory(browser_thread: BrowserThread, served: Served) -> None:
    def scenario() -> tuple[str, bytes, list[str]]:
        with open_page(browser_thread.browser, served.base) as (page, watch):
            sign_in(page, served.token)
            page.get_by_label("Select small.txt", exact=True).check()
            expect(page.get_by_role("button", name="Zip selected (1)")).to_be_disabled()
            for name in ("data.json", "subdir"):
                page.get_by_label(f"Select {name}", exact=True).check()
            with page.expect_download() as info:
                page.get_by_role("button", name="Zip selected (3)").click()
            download = info.value
            return download.suggested_filename, Path(download.path()).read_bytes(), watch.problems

    name, body, problems = await browser_thread.run(scenario)
    assert problems == []
    assert name == "download.zip"
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.testzip() is None
        contents = {info.filename: archive.read(info) for info in archive.infolist()}
    wanted = ["small.txt", "data.json", "subdir/inner.txt", "subdir/deeper/deep.txt"]
    assert contents == {path: served.files[path] for path in wanted}


async def test_copy_link_that_works(browser_thread: BrowserThread, served: Served) -> None:
    def scenario() -> tuple[str, str, list[str]]:
        with open_page(browser_thread.browser, served.base) as (page, watch):
            sign_in(page, served.token)
            page.get_by_label("Link expiry").select_option(label="1 day")
            page.get_by_role("button", name="Copy link small.txt", exact=True).click()
            expect(page.locator("#message")).to_contain_text("copied")
            copied = page.evaluate("navigator.clipboard.readText()")
            return copied, page.get_by_label("Last link").input_value(), watch.problems

    before = int(time.time())
    copied, shown, problems = await browser_thread.run(scenario)
    assert problems == []
    assert copied == shown
    assert served.token not in copied
    expires = int(parse_qs(urlsplit(copied).query)["expires"][0])
    assert before + 86_400 <= expires <= int(time.time()) + 86_400
    async with httpx.AsyncClient() as client:  # no token: the signature is the credential
        reply = await client.get(copied)
    assert reply.status_code == 200
    assert reply.content == served.files["small.txt"]


async def test_checksums_on_request(browser_thread: BrowserThread, served: Served) -> None:
    def scenario() -> tuple[str, list[str]]:
        with open_page(browser_thread.browser, served.base) as (page, watch):
            sign_in(page, served.token)
            page.get_by_role("button", name="Checksums medium.bin", exact=True).click()
            details = page.locator("#details")
            expect(details).to_contain_text("SHA-256")
            return details.inner_text(), watch.problems

    text, problems = await browser_thread.run(scenario)
    assert problems == []
    data = served.files["medium.bin"]
    assert hashlib.sha256(data).hexdigest() in text
    assert hashlib.sha1(data).hexdigest() in text


async def test_a_folder_of_10000_entries_is_paged(
    browser_thread: BrowserThread, served: Served
) -> None:
    many = served.root / "many"
    many.mkdir()
    for i in range(10_000):
        (many / f"f{i:05d}.txt").write_bytes(b"x" * (i % 7))

    def scenario() -> tuple[int, str, list[str]]:
        with open_page(browser_thread.browser, served.base) as (page, watch):
            page.goto("/#/many")
            page.get_by_label("Access token").fill(served.token)
            page.get_by_role("button", name="Sign in").click()
            expect(page.locator("#listing-status")).to_have_text("10000 entries", timeout=30_000)
            expect(page.locator("#page-info")).to_have_text("Page 1 of 100")
            rows = page.locator("#rows tr").count()
            page.get_by_role("button", name="Size").click()  # sorts all 10,000 at once
            page.get_by_role("button", name="Name").click()
            page.get_by_role("button", name="Name").click()  # descending
            first = page.locator("#rows tr").first.inner_text()
            page.get_by_role("button", name="Next page").click()
            expect(page.locator("#page-info")).to_have_text("Page 2 of 100")
            return rows, first, watch.problems

    rows, first, problems = await browser_thread.run(scenario)
    assert problems == []
    assert rows == 100
    assert "f09999.txt" in first


async def test_pull_in_a_url_and_watch_it_finish(browser_thread: BrowserThread, env: Env) -> None:
    data = payload(3 * 1024 * 1024)
    url = env.upstream.add("/files/pulled.bin", Blob(data, chunk=64 * 1024, delay_per_chunk=0.02))
    served = env.served

    def scenario() -> tuple[str, list[str]]:
        with open_page(browser_thread.browser, served.base) as (page, watch):
            sign_in(page, served.token)
            page.get_by_label("URL", exact=True).fill(url)
            page.get_by_label("SHA-256 (optional)").fill(hashlib.sha256(data).hexdigest())
            page.get_by_role("button", name="Pull into this folder").click()
            job = page.locator("#jobs li", has_text="pulled.bin")
            expect(job.locator(".progress")).to_contain_text("/s")  # a live progress event
            expect(job).to_have_attribute("data-status", "completed", timeout=30_000)
            expect(job.locator("progress")).to_have_js_property("value", 100)
            expect(job.locator(".progress")).to_contain_text("100%")
            history = page.locator("#history-rows tr", has_text="pulled.bin")
            expect(history).to_contain_text("completed")
            expect(page.get_by_role("button", name="Download pulled.bin")).to_be_visible()
            return job.inner_text(), watch.problems

    _, problems = await browser_thread.run(scenario)
    assert problems == []
    assert (served.root / "pulled.bin").read_bytes() == data


async def test_cancel_a_slow_pull(browser_thread: BrowserThread, env: Env) -> None:
    release = trio.Event()
    url = env.upstream.add(
        "/files/slow.bin", Blob(payload(1024 * 1024), hold=release, hold_after=64 * 1024)
    )
    served = env.served

    def scenario() -> list[str]:
        with open_page(browser_thread.browser, served.base) as (page, watch):
            sign_in(page, served.token)
            page.get_by_label("URL", exact=True).fill(url)
            page.get_by_role("button", name="Pull into this folder").click()
            job = page.locator("#jobs li", has_text="slow.bin")
            expect(job).to_have_attribute("data-status", "downloading")
            page.get_by_role("button", name="Cancel slow.bin").click()
            expect(job).to_have_attribute("data-status", "cancelled")
            history = page.locator("#history-rows tr", has_text="slow.bin")
            expect(history).to_have_attribute("data-status", "cancelled")
            return watch.problems

    try:
        assert await browser_thread.run(scenario) == []
    finally:
        release.set()
    assert not (served.root / "slow.bin").exists()


async def test_a_pull_that_ends_while_the_websocket_is_down_is_shown_ended(
    browser_thread: BrowserThread, env: Env
) -> None:
    """The page reloads the jobs after a reconnect: the final event sent while its
    websocket was down is lost, yet the job is shown completed and in the history."""
    release = trio.Event()
    url = env.upstream.add(
        "/files/gap.bin", Blob(payload(1024 * 1024), hold=release, hold_after=64 * 1024)
    )
    served = env.served
    jobs = served.server.services.jobs
    sockets: list[WebSocketRoute] = []
    refuse = [False]  # while set, the page's websocket connections are closed at once

    def route(ws: WebSocketRoute) -> None:
        if refuse[0]:
            ws.close()
            return
        ws.connect_to_server()
        sockets.append(ws)

    pages = contextlib.ExitStack()

    def start() -> Any:
        page, watch = pages.enter_context(open_page(browser_thread.browser, served.base))
        page.route_web_socket("**/ws", route)
        sign_in(page, served.token)
        page.get_by_label("URL", exact=True).fill(url)
        page.get_by_role("button", name="Pull into this folder").click()
        job = page.locator("#jobs li", has_text="gap.bin")
        expect(job).to_have_attribute("data-status", "downloading")
        refuse[0] = True
        for ws in sockets:
            ws.close()
        expect(page.locator("#message")).to_contain_text("reconnecting")
        return page, watch

    def resume(page: Page, watch: Any) -> list[str]:
        refuse[0] = False
        job = page.locator("#jobs li", has_text="gap.bin")
        expect(job).to_have_attribute("data-status", "completed", timeout=30_000)
        expect(job.locator(".progress")).to_contain_text("100%")
        history = page.locator("#history-rows tr", has_text="gap.bin")
        expect(history).to_have_attribute("data-status", "completed")
        problems: list[str] = watch.problems
        return problems

    try:
        page, watch = await browser_thread.run(start)
        release.set()
        assert await wait_for(lambda: not jobs.active(), timeout=20)
        assert await browser_thread.run(resume, page, watch) == []
    finally:
        release.set()
        await browser_thread.run(pages.close)
    assert (served.root / "gap.bin").read_bytes() == payload(1024 * 1024)


async def test_refused_pull_shows_a_readable_message(
    browser_thread: BrowserThread, served: Served
) -> None:
    def scenario() -> tuple[str, list[str]]:
        with open_page(browser_thread.browser, served.base) as (page, watch):
            sign_in(page, served.token)
            page.get_by_label("URL", exact=True).fill("http://example.invalid/x")
            page.get_by_role("button", name="Pull into this folder").click()
            message = page.locator("#message")
            expect(message).to_contain_text("turned off")
            return message.inner_text(), watch.problems

    text, problems = await browser_thread.run(scenario)
    assert text == "Remote downloads are turned off on this server."
    # the refusal is the one error reply, and the page says what it means
    assert sorted(problems) == [
        "HTTP 403: GET " + served.base + "/?download=http%3A%2F%2Fexample.invalid%2Fx",
        "console error: Failed to load resource: the server responded with a status of 403"
        " (Forbidden)",
    ]
