"""Ctrl-C during ``slipstream get``: always the one line and exit status 130.

The download's HTTP body goes through a throttling loopback proxy (the server's
``public_url`` points at it), so the test knows how far the transfer is and sends
SIGINT to the real ``slipstream get`` subprocess at chosen points: while it waits for
body bytes (the proxy then holds the rest, so the signal lands mid-transfer), and at
several short delays after the last byte (verifying, renaming, closing the websocket).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from tests.helpers.server import Served, StartServer

INTERRUPTED = "slipstream get: interrupted; run the same command again to resume\n"
SIZE = 1024 * 1024
CHUNK = 32 * 1024
PAUSE = 0.004
"""Seconds between relayed chunks: about 8 MB/s, so the body takes ~0.13 s."""


@dataclass
class Proxy:
    """Relays connections to ``target`` (the server); the server's replies go out in
    ``CHUNK``-sized pieces, and ``before_chunk(body_bytes_so_far)`` runs before each
    piece of a reply body (it may wait, holding the rest of the body back)."""

    target: int = 0
    before_chunk: Callable[[int], object] | None = None
    after_body: Callable[[], object] | None = None
    body_size: int = SIZE

    async def handle(self, client: trio.SocketStream) -> None:
        try:
            upstream = await trio.open_tcp_stream("127.0.0.1", self.target)
        except OSError:
            await client.aclose()
            return
        async with client, upstream, trio.open_nursery() as nursery:
            nursery.start_soon(self._up, client, upstream, nursery.cancel_scope)
            await self._down(upstream, client)
            nursery.cancel_scope.cancel()

    @staticmethod
    async def _up(
        client: trio.SocketStream, upstream: trio.SocketStream, scope: trio.CancelScope
    ) -> None:
        try:
            while data := await client.receive_some(65536):
                await upstream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()

    async def _down(self, upstream: trio.SocketStream, client: trio.SocketStream) -> None:
        head = bytearray()
        body = -1  # body bytes relayed so far; -1 while the head is still coming
        try:
            while data := await upstream.receive_some(CHUNK):
                if body < 0:
                    head += data
                    end = head.find(b"\r\n\r\n")
                    if end < 0:
                        continue
                    data, body = bytes(head[end + 4 :]), 0
                    await client.send_all(bytes(head[: end + 4]))
                for start in range(0, len(data), CHUNK):
                    piece = data[start : start + CHUNK]
                    if self.before_chunk is not None:
                        await _maybe_await(self.before_chunk(body))
                    await client.send_all(piece)
                    body += len(piece)
                    if body >= self.body_size and self.after_body is not None:
                        await _maybe_await(self.after_body())
                    await trio.sleep(PAUSE)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


async def _maybe_await(value: object) -> None:
    if hasattr(value, "__await__"):
        await value  # type: ignore[misc]


@pytest.fixture
async def proxied(start_server: StartServer, nursery: trio.Nursery) -> tuple[Served, Proxy]:
    """A server whose presigned URLs point at a throttling proxy in front of it."""
    proxy = Proxy()
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    proxy_port = listeners[0].socket.getsockname()[1]
    nursery.start_soon(trio.serve_listeners, proxy.handle, listeners)
    served = await start_server(public_url=f"http://127.0.0.1:{proxy_port}")
    proxy.target = served.port
    (served.root / "big.bin").write_bytes(os.urandom(SIZE))
    return served, proxy


@dataclass
class Run:
    status: int
    stdout: str
    stderr: str


async def get(served: Served, cwd: Path, *args: str, watch: Callable[[trio.Process], None]) -> Run:
    """Run ``slipstream get big.bin`` in ``cwd``; ``watch(process)`` arms the signals."""
    env = {k: v for k, v in os.environ.items() if k != "SLIPSTREAM_TOKEN"}
    command = [sys.executable, "-m", "slipstream", "get", "--server"]
    command += [f"ws://127.0.0.1:{served.port}/ws", "--token", served.token, *args, "big.bin"]
    out, err = cwd / "stdout", cwd / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = await trio.lowlevel.open_process(
            command, cwd=cwd, env=env, stdout=stdout, stderr=stderr
        )
    try:
        watch(process)
        with trio.fail_after(30):
            status = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
    return Run(status, out.read_text(), err.read_text())


MID_TRANSFER = [0.0, 0.3, 0.7, 0.97]
"""Fractions of the body relayed when SIGINT is sent (the proxy then holds the rest)."""
AFTER_BODY = [0.0, 0.002, 0.006, 0.015, 0.04]
"""Seconds after the last body byte was relayed when SIGINT is sent."""


async def interrupt_mid_transfer(
    served: Served, proxy: Proxy, cwd: Path, fraction: float, *args: str
) -> Run:
    """SIGINT once ``fraction`` of the body was relayed; the proxy holds the rest back
    until the client has exited, so the signal always lands mid-transfer."""
    sent = trio.Event()
    process: list[trio.Process] = []
    threshold = min(int(fraction * SIZE), SIZE - CHUNK)  # at most: before the last chunk

    async def hold(body: int) -> None:
        if body >= threshold and not sent.is_set():
            sent.set()
            process[0].send_signal(signal.SIGINT)
        if sent.is_set():
            with trio.move_on_after(20):
                await process[0].wait()

    proxy.before_chunk, proxy.after_body = hold, None
    run = await get(served, cwd, *args, watch=process.append)
    assert sent.is_set(), f"the transfer never reached {fraction}"
    return run


async def test_ctrl_c_at_many_points_of_a_transfer_is_one_line_and_130(
    proxied: tuple[Served, Proxy], tmp_path: Path
) -> None:
    served, proxy = proxied
    expected = (served.root / "big.bin").read_bytes()
    dest = tmp_path / "big.bin"
    for fraction in MID_TRANSFER:
        run = await interrupt_mid_transfer(served, proxy, tmp_path, fraction, "--no-resume")
        assert (run.status, run.stdout, run.stderr) == (130, "", INTERRUPTED), fraction
        assert not dest.exists()

    for delay in AFTER_BODY:
        process: list[trio.Process] = []

        async def late(delay: float = delay, process: list[trio.Process] = process) -> None:
            await trio.sleep(delay)
            process[0].send_signal(signal.SIGINT)

        proxy.before_chunk, proxy.after_body = None, late
        dest.unlink(missing_ok=True)
        run = await get(served, tmp_path, "--no-resume", watch=process.append)
        if run.status == 0:  # the signal came after the download was complete
            assert run.stderr == ""
            assert run.stdout == f"saved big.bin ({SIZE} bytes, SHA-256 verified)\n"
            assert dest.read_bytes() == expected
        else:
            assert (run.status, run.stdout, run.stderr) == (130, "", INTERRUPTED), delay


INTERRUPT_IN_READER = """
import signal, sys
import trio_websocket

original = trio_websocket.WebSocketConnection.get_message
replies = 0

async def get_message(self):
    global replies
    message = await original(self)
    replies += 1
    if replies == 2:  # the type 7 reply: Ctrl-C while the client's reader task runs
        signal.raise_signal(signal.SIGINT)
    return message

trio_websocket.WebSocketConnection.get_message = get_message
"""
"""Makes Ctrl-C arrive while the client's websocket reader task runs (what trio does
when the signal comes while that task, not the download's own, is running)."""
AS_COMMAND = """
from slipstream.server import cli
sys.argv[0] = "slipstream"
sys.exit(cli.entry())
"""
AS_LIBRARY = """
from functools import partial
from pathlib import Path
import trio
from slipstream.client import download_file
url, token, name = sys.argv[1:]
try:
    trio.run(partial(download_file, url, token, name, Path(name)))
except BaseException as exc:
    print(type(exc).__name__)
"""


async def run_script(script: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "SLIPSTREAM_TOKEN"}
    with trio.fail_after(30):
        return await trio.run_process(
            [sys.executable, "-c", script, *args],
            cwd=cwd,
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


async def test_ctrl_c_in_the_clients_background_task_is_one_line_and_130(
    served: Served, tmp_path: Path
) -> None:
    url = f"ws://127.0.0.1:{served.port}/ws"
    args = ["get", "--server", url, "--token", served.token, "random.bin"]
    done = await run_script(INTERRUPT_IN_READER + AS_COMMAND, tmp_path, *args)
    assert (done.returncode, done.stdout, done.stderr.decode()) == (130, b"", INTERRUPTED)
    assert not (tmp_path / "random.bin").exists()


async def test_the_client_library_raises_ctrl_c_as_a_plain_keyboard_interrupt(
    served: Served, tmp_path: Path
) -> None:
    url = f"ws://127.0.0.1:{served.port}/ws"
    done = await run_script(
        INTERRUPT_IN_READER + AS_LIBRARY, tmp_path, url, served.token, "random.bin"
    )
    assert (done.stdout, done.stderr) == (b"KeyboardInterrupt\n", b"")
