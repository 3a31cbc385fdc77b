"""``slipstream serve`` as a real subprocess.

:func:`serve` / :class:`Running` (Trio) for tests that kill and restart the server;
:class:`CliServer` (blocking) for command-line tests that read its banner on stdout.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx
import trio

BANNER = re.compile(rb"at http://127\.0\.0\.1:(\d+)/")
"""The line the server logs once it listens (``--port 0`` picks the port)."""


@dataclass
class Running:
    """A ``slipstream serve`` subprocess, the port it listens on, and its log file."""

    proc: trio.Process
    port: int
    log: Path
    token: str | None = None

    def client(self) -> httpx.AsyncClient:
        """An httpx client for this server (with the bearer token when there is one)."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.port}", headers=headers, timeout=10
        )

    async def stop(self, signum: int) -> int:
        """Send ``signum`` and wait (bounded) for the exit status."""
        self.proc.send_signal(signum)
        with trio.fail_after(20):
            return await self.proc.wait()


@asynccontextmanager
async def serve(
    root: Path,
    log: Path,
    *flags: str,
    token: str | None = None,
    env: dict[str, str] | None = None,
) -> AsyncIterator[Running]:
    """Run the server over ``root`` with ``flags`` (and ``env`` added to the environment)
    until the block exits; always killed after."""
    env = {k: v for k, v in os.environ.items() if k != "SLIPSTREAM_TOKEN"} | (env or {})
    command = [sys.executable, "-m", "slipstream", "serve", "--root", str(root), "--port", "0"]
    command += ["--no-access-log", *flags, *(["--token", token] if token else [])]
    with log.open("wb") as out:
        proc = await trio.lowlevel.open_process(
            command, stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        with trio.fail_after(30):
            while (match := BANNER.search(log.read_bytes())) is None:
                if proc.poll() is not None:
                    raise AssertionError(f"server exited: {log.read_text(errors='replace')}")
                await trio.sleep(0.02)
        yield Running(proc, int(match[1]), log, token)
    finally:
        if proc.returncode is None:
            proc.kill()
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            await proc.wait()


URL_LINE = re.compile(r"at (http://([^/\s]+):(\d+)/)")
TOKEN_LINE = re.compile(r"access token: (\S+)")


class CliServer:
    """``python -m slipstream serve --port 0 ...`` with its URL and token read from stdout."""

    def __init__(
        self, root: Path, *args: str, env: dict[str, str] | None = None, log: Path | None = None
    ) -> None:
        self.root = root
        self.log_path = log if log is not None else root.parent / f"server-{time.time_ns()}.log"
        environment = {k: v for k, v in os.environ.items() if k != "SLIPSTREAM_TOKEN"}
        environment.update(env or {})
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "slipstream",
                "serve",
                "--port",
                "0",
                "--root",
                str(root),
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=environment,
        )
        self.stdout = b""
        self.url, self.host, self.port, self.token = self._read_banner()

    def _read_banner(self) -> tuple[str, str, int, str]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 20
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            while not (URL_LINE.search(self.text) and TOKEN_LINE.search(self.text)):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not selector.select(0)):
                    self.kill()
                    raise AssertionError(f"no banner; stdout={self.text!r} log={self.log!r}")
                if selector.select(remaining):
                    chunk = os.read(self.proc.stdout.fileno(), 4096)
                    if not chunk:
                        continue
                    self.stdout += chunk
        url = URL_LINE.search(self.text)
        token = TOKEN_LINE.search(self.text)
        assert url is not None and token is not None
        return url.group(1), url.group(2), int(url.group(3)), token.group(1)

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    @property
    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 10) -> None:
        """Poll the server's log until ``text`` appears in it (AssertionError after
        ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while text not in self.log:
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never logged; log={self.log!r}")
            time.sleep(0.01)

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url.rstrip("/"), timeout=10, verify=False, **kwargs)  # type: ignore[arg-type]

    def download(self, filepath: str, token: str | None = None, **params: str) -> httpx.Response:
        with self.client() as client:
            return client.get(
                "/api/download",
                params={"filepath": filepath, "token": token or self.token, **params},
            )

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15) -> int:
        """Send ``signum`` and return the exit code."""
        self.proc.send_signal(signum)
        return self.wait(timeout)

    def wait(self, timeout: float = 15) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"server did not exit; log={self.log!r}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> CliServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
