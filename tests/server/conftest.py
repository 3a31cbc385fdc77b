"""Fixtures for the server suite: a real server on a loopback port, plus raw-socket helpers.

``served`` builds a root full of interesting files (text, random binary, empty, a
directory, a non-ASCII name, a FIFO, symlinks escaping the root, a secret file outside
it), starts :class:`~slipstream.server.Server` in the pytest-trio ``nursery`` and yields
a :class:`Served`.  ``start_server`` does the same with config overrides.

:class:`RawClient` speaks bytes over ``trio.open_tcp_stream`` and parses replies with a
client-side ``h11.Connection`` (so framing errors in our replies fail the tests).
"""

from __future__ import annotations

import json
import os
import random
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import h11
import httpx
import pytest
import trio

from slipstream.server import App, Config, Limits, Server

TOKEN = "test-token"
SECRET = b"TOP-SECRET-outside-the-root-7c1f\n"
TEST_LIMITS = dict(
    head_timeout=1.0,
    idle_timeout=1.5,
    send_timeout=1.0,
    body_timeout=1.0,
    drain_timeout=2.0,
    max_connections=64,
)
NON_ASCII_NAME = "résumé 日本語 ü.txt"


def make_limits(**overrides: Any) -> Limits:
    """Short test limits (seconds, not minutes), with ``overrides`` applied."""
    return Limits(**{**TEST_LIMITS, **overrides})


@dataclass
class Served:
    """A running test server and the tree it serves."""

    server: Server
    port: int
    root: Path
    outside: Path
    """The directory holding ``root`` and ``secret.txt`` (never served)."""
    token: str
    files: dict[str, bytes] = field(default_factory=dict)
    """Relative path -> content of every regular file created under the root."""

    @property
    def base(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth(self) -> dict[str, str]:
        """The ``Authorization`` header for the valid token."""
        return {"Authorization": f"Bearer {self.token}"}

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An httpx client pointed at this server (use as ``async with``).

        Plain HTTP only: ``verify=False`` skips building a TLS context (slow) per client.
        """
        return httpx.AsyncClient(base_url=self.base, timeout=10, verify=False, **kwargs)

    async def raw(self) -> RawClient:
        """A new raw connection to this server."""
        return await RawClient.connect(self.port)


def build_tree(base: Path) -> tuple[Path, dict[str, bytes]]:
    """Create ``base/root`` (served) and ``base/secret.txt`` (outside); return root, files."""
    root = base / "root"
    (root / "subdir" / "deeper").mkdir(parents=True)
    rng = random.Random(20240601)
    files: dict[str, bytes] = {
        "small.txt": b"hello, slipstream\n" * 20,
        "random.bin": rng.randbytes(3 * 1024 * 1024 + 12345),
        "medium.bin": rng.randbytes(70_001),
        "data.json": b'{"answer": 42}\n',
        "image.png": b"\x89PNG\r\n\x1a\n" + rng.randbytes(300),
        "noext": b"no extension here\n",
        "subdir/inner.txt": b"inside a subdirectory\n",
        "subdir/deeper/deep.txt": b"deep file\n",
        NON_ASCII_NAME: "ünïcödé content\n".encode(),
        'quo"te.txt': b"quoted name\n",
    }
    for rel, data in files.items():
        (root / rel).write_bytes(data)
    (root / "empty.txt").write_bytes(b"")
    (base / "secret.txt").write_bytes(SECRET)
    (base / "secret-dir").mkdir()
    (base / "secret-dir" / "secret.txt").write_bytes(SECRET)
    (root / "escape.txt").symlink_to(base / "secret.txt")
    (root / "escape-rel.txt").symlink_to(Path("..") / "secret.txt")
    (root / "escape-dir").symlink_to(base / "secret-dir")
    (root / "inside-link.txt").symlink_to(root / "small.txt")
    unreadable = root / "unreadable.txt"
    unreadable.write_bytes(b"nobody may read this\n")
    unreadable.chmod(0)
    os.mkfifo(root / "fifo")
    return root, files


StartServer = Callable[..., Awaitable[Served]]


async def start_in(
    nursery: trio.Nursery,
    base: Path,
    *,
    limits: dict[str, Any] | None = None,
    app: Callable[[Config], App] | None = None,
    **overrides: Any,
) -> Served:
    """Start a server in ``nursery`` over ``base/root`` (built by :func:`build_tree` if absent).

    ``limits`` are :class:`Limits` overrides; ``app`` builds the App from the Config;
    other keywords override :class:`Config` fields.
    """
    if (base / "root").exists():
        root = base / "root"
        files = {
            str(p.relative_to(root)): p.read_bytes()
            for p in root.rglob("*")
            if p.is_file()
            and not p.is_symlink()
            and os.access(p, os.R_OK)
            and p.stat().st_mode & 0o444
        }
    else:
        root, files = build_tree(base)
    options: dict[str, Any] = {
        "root": root,
        "port": 0,
        "tokens": [TOKEN],
        "access_log": False,
        "limits": make_limits(**(limits or {})),
    }
    options.update(overrides)
    config = Config(**options)
    server = Server(config, app(config) if app is not None else None)
    port = await nursery.start(server.run)
    return Served(server, port, root, base, TOKEN, files)


@asynccontextmanager
async def running_server(base: Path, **kwargs: Any) -> AsyncIterator[Served]:
    """A server in its own nursery, for tests that cannot use the ``nursery`` fixture
    (hypothesis re-runs fixtures per example).  Reuses ``base/root`` when it exists."""
    async with trio.open_nursery() as nursery:
        served = await start_in(nursery, base, **kwargs)
        try:
            yield served
        finally:
            nursery.cancel_scope.cancel()


@pytest.fixture
async def start_server(tmp_path: Path, nursery: trio.Nursery) -> StartServer:
    """``await start_server(**overrides)``: a server over a fresh tree (see :func:`start_in`).

    Servers stop when the test ends (the ``nursery`` fixture is cancelled).
    """

    async def start(**kwargs: Any) -> Served:
        return await start_in(
            nursery, Path(tempfile.mkdtemp(prefix="site", dir=tmp_path)), **kwargs
        )

    return start


@pytest.fixture
async def served(start_server: StartServer) -> Served:
    """A server with the default test config."""
    return await start_server()


# --- raw sockets ---------------------------------------------------------------------


@dataclass
class RawResponse:
    """One response as parsed by a client-side h11 connection."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    reason: bytes = b""

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        """Every value of header ``name``."""
        name = name.lower()
        return [value for key, value in self.headers if key == name]

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


class RawClient:
    """A raw TCP connection; ``send`` arbitrary bytes, ``read_response`` parses one reply."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)
        self._first = True
        self.closed_by_peer = False

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        """Connect to ``127.0.0.1:port``."""
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        """Write raw bytes."""
        await self.stream.send_all(data)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """One read (b"" at EOF; a reset counts as EOF)."""
        try:
            data = await self.stream.receive_some(max_bytes)
        except trio.BrokenResourceError:
            data = b""
        if not data:
            self.closed_by_peer = True
        return data

    async def read_response(self, method: str = "GET", *, timeout: float = 5.0) -> RawResponse:
        """Parse the next response (for a request made with ``method``)."""
        conn = self.h11
        if not self._first:
            conn.start_next_cycle()
        self._first = False
        # h11 must believe it sent the request to parse the reply (HEAD has no body).
        conn.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
        status = 0
        reason = b""
        headers: list[tuple[str, str]] = []
        body = bytearray()
        with trio.fail_after(timeout):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await self.receive())
                elif isinstance(event, h11.InformationalResponse):
                    continue
                elif isinstance(event, h11.Response):
                    status = event.status_code
                    reason = event.reason
                    headers = [(k.decode().lower(), v.decode("latin-1")) for k, v in event.headers]
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    return RawResponse(status, headers, bytes(body), reason)
                else:
                    raise AssertionError(f"connection closed before a full response: {event!r}")

    async def read_until_eof(self, *, timeout: float = 5.0) -> bytes:
        """Every byte until the peer closes (raises TooSlowError if it does not)."""
        out = bytearray()
        with trio.fail_after(timeout):
            while True:
                data = await self.receive()
                if not data:
                    return bytes(out)
                out += data

    async def is_closed(self, *, timeout: float = 5.0) -> bool:
        """True if the peer closes (with nothing more to read) within ``timeout``."""
        with trio.move_on_after(timeout):
            data = await self.receive()
            if data:
                raise AssertionError(f"expected EOF, got {data[:200]!r}")
            return True
        return False

    async def aclose(self) -> None:
        """Close our side."""
        await self.stream.aclose()

    def abort(self) -> None:
        """Close with a TCP reset (SO_LINGER 0), as a crashing client would."""
        sock = self.stream.socket
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()


async def exchange(port: int, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection and return everything until the server closes."""
    client = await RawClient.connect(port)
    try:
        await client.send(data)
        return await client.read_until_eof(timeout=timeout)
    finally:
        await client.aclose()


def get(target: str, *headers: str, method: str = "GET", host: str = "x") -> bytes:
    """A raw HTTP/1.1 request head: ``get("/healthz", "Range: bytes=0-1")``."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", *headers, "", ""]
    return "\r\n".join(lines).encode("latin-1")


def download_target(filepath: str, *, token: str | None = TOKEN, **extra: str) -> str:
    """``/api/download?filepath=...`` with ``filepath`` percent-encoded (and ``?token=``)."""
    query = f"filepath={quote(filepath, safe='')}"
    for key, value in extra.items():
        query += f"&{key}={quote(value, safe='')}"
    if token is not None:
        query += f"&token={quote(token, safe='')}"
    return f"/api/download?{query}"


def open_fd_count() -> int:
    """Open file descriptors of this process (the server runs in it too)."""
    return len(os.listdir("/proc/self/fd"))


async def settle_fds(target: int, *, timeout: float = 5.0) -> int:
    """Poll until the fd count is at most ``target`` (or ``timeout``); return the last count."""
    deadline = trio.current_time() + timeout
    count = open_fd_count()
    while count > target and trio.current_time() < deadline:
        await trio.sleep(0.05)
        count = open_fd_count()
    return count


async def wait_for(predicate: Callable[[], bool], *, timeout: float = 5.0) -> bool:
    """Poll ``predicate`` every 10 ms until it holds or ``timeout`` passes."""
    deadline = trio.current_time() + timeout
    while not predicate():
        if trio.current_time() >= deadline:
            return False
        await trio.sleep(0.01)
    return True


@pytest.fixture
async def raw_client(served: Served) -> AsyncIterator[RawClient]:
    """A raw connection to ``served``, closed after the test."""
    client = await served.raw()
    try:
        yield client
    finally:
        await client.aclose()
