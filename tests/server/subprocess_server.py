"""``slipstream serve`` as a real subprocess, for tests that kill and restart the server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

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
    root: Path, log: Path, *flags: str, token: str | None = None
) -> AsyncIterator[Running]:
    """Run the server over ``root`` with ``flags`` until the block exits; always killed after."""
    env = {k: v for k, v in os.environ.items() if k != "SLIPSTREAM_TOKEN"}
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
