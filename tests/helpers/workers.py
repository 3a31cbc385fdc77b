"""A multi-worker ``slipstream serve --workers N`` for tests, and which worker answered.

Workers say who they are in test mode only (``$SLIPSTREAM_TEST_WORKER_HEADER=1``): every
reply carries ``X-Slipstream-Worker: SLOT-PID``.  Each helper here opens a NEW connection
per request, so the kernel spreads them over the workers.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

from tests.helpers.subprocess_server import CliServer

WORKER_ENV = {"SLIPSTREAM_TEST_WORKER_HEADER": "1"}


def workers_server(
    root: Path, workers: int, *args: str, env: dict[str, str] | None = None
) -> CliServer:
    """``slipstream serve --workers N`` over ``root`` in test mode (the worker header on)."""
    return CliServer(root, "--workers", str(workers), *args, env={**WORKER_ENV, **(env or {})})


def worker_of(head: bytes | dict[str, str] | object) -> str:
    """The ``SLOT-PID`` of the worker that sent a reply (a raw head or a headers mapping)."""
    if isinstance(head, bytes):
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"x-slipstream-worker":
                return value.strip().decode()
        raise AssertionError(f"no worker header in {head!r}")
    headers = getattr(head, "headers", head)
    value = headers.get("x-slipstream-worker")  # type: ignore[union-attr]
    assert value, f"no worker header in {headers!r}"
    return str(value)


def fresh_get(port: int, target: str, headers: dict[str, str] | None = None) -> tuple[bytes, bytes]:
    """One GET on a new connection (closed after): ``(head, body)``."""
    lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = bytearray()
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    return head, body


def until_workers(count: int, ask: Callable[[], str], *, tries: int = 200) -> dict[str, int]:
    """Call ``ask`` (which returns the worker that answered) until ``count`` different
    workers have answered; how often each did.  Fails after ``tries`` calls."""
    seen: dict[str, int] = {}
    for _ in range(tries):
        worker = ask()
        seen[worker] = seen.get(worker, 0) + 1
        if len(seen) >= count:
            return seen
    raise AssertionError(f"only {sorted(seen)} answered in {tries} connections")


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Poll ``predicate`` until true (AssertionError after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.02)
