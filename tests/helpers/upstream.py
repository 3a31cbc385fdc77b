"""A real HTTP/1.1 upstream on loopback for tests of the outbound fetcher (Trio + h11).

Tests register resources by path and point the code under test at :meth:`Upstream.url`::

    upstream.add("/a.bin", Blob(data, drop_after=1000, drop_count=1))
    upstream.add("/old", Redirect(upstream.url("/a.bin")))
    upstream.add("/gone", Status(404, b"no such thing"))

Resources misbehave on request: slow bodies (``delay_per_chunk``), a slow head (first byte:
``delay_head``), a body held mid-way until the test says go (``hold``), connections cut
mid-body (``drop_after``, optionally with a TCP reset),
a ``Content-Length`` that lies (``lie_length``), chunked framing (no length), Range support
switched off.  :class:`Handler` runs a test's own callable for one-off behaviour.

What the upstream saw is kept for assertions: :attr:`Upstream.connections` (TCP connections
accepted), :attr:`Upstream.requests` (one :class:`RecordedRequest` per request head) and
:attr:`Upstream.responding` (replies being sent right now: one a client stopped reading
without closing its connection stays there).

Range semantics follow RFC 9110 in the subset fetchers rely on: one ``bytes=`` range
(``a-b``, ``a-``, ``-n``) gives ``206`` with ``Content-Range``; an unsatisfiable one ``416``
with ``bytes */SIZE``; several ranges, another unit or bad syntax give the full ``200``.
``If-Range`` honours the range only for an equal strong ETag or the exact Last-Modified.

This module deliberately shares no code with ``slipstream`` (it is the independent party
the fetcher is tested against).  Every wait has a deadline (``timeout``), and sockets are
closed when the task running :meth:`Upstream.run` is cancelled.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import inspect
import os
import socket
import struct
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any, TypeAlias, cast

import h11
import trio

DEFAULT_CHUNK = 64 * 1024
FIXED_LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"
"""The ``Last-Modified`` of an in-memory :class:`Blob` unless it says otherwise."""
SERVER_NAME = "slipstream-test-upstream"


class _Auto(enum.Enum):
    AUTO = "auto"


AUTO = _Auto.AUTO
"""Default of :attr:`Blob.etag` / :attr:`Blob.last_modified`: derive one from the content."""


@dataclass(frozen=True)
class RecordedRequest:
    """One request head as the upstream received it."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    """``(lowercase name, value)`` pairs in the order received."""
    client_port: int
    """The peer's TCP port (tells connections apart: keep-alive reuses one)."""

    @property
    def path(self) -> str:
        """The target without its query string."""
        return self.target.split("?", 1)[0]

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        return next((value for key, value in self.headers if key == name), None)


@dataclass
class Blob:
    """A byte object served with GET / HEAD, Range and If-Range (unless told to misbehave).

    Give either ``data`` or ``path`` (a file streamed from disk in ``chunk``-sized reads, for
    bodies too large to hold in memory).
    """

    data: bytes = b""
    path: Path | None = None
    etag: str | _Auto | None = AUTO
    """Sent as ``ETag``; ``AUTO`` derives a strong one from the content, None sends none."""
    last_modified: str | _Auto | None = AUTO
    """``AUTO``: the file's mtime, or :data:`FIXED_LAST_MODIFIED` for ``data``; None: none."""
    content_type: str = "application/octet-stream"
    content_disposition: str | None = None
    status: int = 200
    """Status of the full reply; Range is only considered when it is 200."""
    delay_head: float = 0.0
    """Seconds to wait before sending the response head."""
    delay_per_chunk: float = 0.0
    """Seconds to wait before each body chunk."""
    hold: trio.Event | None = None
    """When given, each reply stops after ``hold_after`` body bytes until this is set (within
    the upstream's ``timeout``, else the connection is cut)."""
    hold_after: int = 0
    chunk: int = DEFAULT_CHUNK
    drop_after: int | None = None
    """Close the connection after this many body bytes of a reply."""
    drop_count: int | None = None
    """Cut only the first N replies that reach ``drop_after`` (None: every one)."""
    drop_with_reset: bool = False
    """Cut with a TCP reset (RST) instead of an orderly close."""
    lie_length: int | None = None
    """Announce this ``Content-Length``, send the real body, then close."""
    chunked: bool = False
    """Send no ``Content-Length`` (chunked framing): the size is unknown to the client."""
    ranges: bool = True
    """Honour Range / If-Range and send ``Accept-Ranges: bytes``; False: always the 200."""
    extra_headers: list[tuple[str, str]] = field(default_factory=list)
    drops_done: int = field(default=0, init=False)
    """How many replies were cut so far (counts towards ``drop_count``)."""

    def __post_init__(self) -> None:
        if self.data and self.path is not None:
            raise ValueError("give data or path, not both")
        if self.chunk <= 0:
            raise ValueError("chunk must be positive")
        if self.status < 200:
            raise ValueError("status must be a final status")

    @property
    def size(self) -> int:
        """Length of the content in bytes."""
        return self.path.stat().st_size if self.path is not None else len(self.data)

    def content(self) -> bytes:
        """The whole content (reads the file for a path blob: for assertions on small files)."""
        return self.path.read_bytes() if self.path is not None else self.data

    def current_etag(self) -> str | None:
        """The ETag sent now (``AUTO``: a hash of the data, or of the file's size and mtime)."""
        if self.etag is not AUTO:
            return self.etag
        if self.path is not None:
            st = self.path.stat()
            token = f"{st.st_size}-{st.st_mtime_ns}".encode()
        else:
            token = self.data
        return '"' + hashlib.blake2b(token, digest_size=12).hexdigest() + '"'

    def current_last_modified(self) -> str | None:
        """The Last-Modified sent now."""
        if self.last_modified is not AUTO:
            return self.last_modified
        if self.path is not None:
            return formatdate(self.path.stat().st_mtime, usegmt=True)
        return FIXED_LAST_MODIFIED

    def read(self, start: int, stop: int) -> Generator[bytes | memoryview, None, None]:
        """The bytes ``[start, stop)`` in pieces of at most ``chunk``."""
        if self.path is None:
            view = memoryview(self.data)
            for pos in range(start, stop, self.chunk):
                yield view[pos : min(pos + self.chunk, stop)]
            return
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for pos in range(start, stop, self.chunk):
                piece = os.pread(fd, min(self.chunk, stop - pos), pos)
                if not piece:
                    raise RuntimeError(f"{self.path} shrank while being served")
                yield piece
        finally:
            os.close(fd)


@dataclass(frozen=True)
class Redirect:
    """A redirect to ``location`` (absolute, or relative to this upstream)."""

    location: str
    status: int = 302


@dataclass(frozen=True)
class Status:
    """A fixed reply: ``code`` with ``body`` (``text/plain``) and ``headers``."""

    code: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)


Resource: TypeAlias = "Blob | Redirect | Status | Handler"


@dataclass(frozen=True)
class Handler:
    """One-off behaviour: ``fn(request)`` returns (or awaits) the resource to serve.

    The callable may sleep, record, or choose per call (e.g. 503 once, then a Blob).
    """

    fn: Callable[[RecordedRequest], Resource | Awaitable[Resource]]


class _Cut(Exception):
    """The reply was cut on purpose: close the connection now."""

    def __init__(self, reset: bool) -> None:
        super().__init__("cut")
        self.reset = reset


NOT_FOUND = Status(404, b"not found\n")


class Upstream:
    """A loopback HTTP/1.1 server with a table of :data:`Resource` by path.

    Run it with ``port = await nursery.start(upstream.run)``; ``timeout`` bounds every
    wait for the client (idle keep-alive, reading a request, each send).
    """

    def __init__(self, *, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.port: int | None = None
        self.connections = 0
        """TCP connections accepted since start (or the last :meth:`reset`)."""
        self.requests: list[RecordedRequest] = []
        """Every request head received since start (or the last :meth:`reset`)."""
        self.responding = 0
        """Requests whose reply is being sent now (back to 0 once every reply has ended:
        sent, or its connection closed by the client)."""
        self.open_now = 0
        """TCP connections open now."""
        self.most_open = 0
        """The most connections open at once since start (or the last :meth:`reset`)."""
        self._resources: dict[str, Resource] = {}

    # --- set-up and observation ---------------------------------------------------------

    def add(self, path: str, resource: Resource) -> str:
        """Serve ``resource`` at ``path`` (a target with a query matches exactly first,
        then by path); returns :meth:`url` of it when the server is running, else ``path``."""
        path = _slash(path)
        self._resources[path] = resource
        return self.url(path) if self.port is not None else path

    def remove(self, path: str) -> None:
        """Stop serving ``path`` (it becomes a 404)."""
        self._resources.pop(_slash(path), None)

    def url(self, path: str = "/") -> str:
        """``http://127.0.0.1:PORT/path``."""
        if self.port is None:
            raise RuntimeError("the upstream is not running yet")
        return f"http://127.0.0.1:{self.port}{_slash(path)}"

    def requests_for(self, path: str) -> list[RecordedRequest]:
        """The recorded requests whose path (query ignored) is ``path``."""
        path = _slash(path)
        return [r for r in self.requests if r.path == path]

    def reset(self) -> None:
        """Forget the recorded connections and requests (resources stay)."""
        self.connections = 0
        self.most_open = self.open_now
        self.requests.clear()

    # --- serving -------------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Bind 127.0.0.1 on a free port, report it via ``task_status``, serve until cancelled."""
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        try:
            self.port = int(listeners[0].socket.getsockname()[1])
            task_status.started(self.port)
            # serve_listeners closes the listeners and every accepted stream on cancel.
            await trio.serve_listeners(self._connection, listeners)
        finally:
            for listener in listeners:
                await trio.aclose_forcefully(listener)

    async def _connection(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            await self._serve(stream)
        finally:
            self.open_now -= 1

    async def _serve(self, stream: trio.SocketStream) -> None:
        port = int(stream.socket.getpeername()[1])
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await self._read_request(stream, conn, port)
                if request is None:
                    return
                self.responding += 1
                try:
                    await self._respond(stream, conn, request)
                finally:
                    self.responding -= 1
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except _Cut as cut:
            if cut.reset:
                _abort(stream)
        except h11.RemoteProtocolError:
            with contextlib.suppress(*_NETWORK_ERRORS, h11.LocalProtocolError):
                await self._send_status(stream, conn, Status(400, b"bad request\n"), "GET")
        except _NETWORK_ERRORS:
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def _read_request(
        self, stream: trio.SocketStream, conn: h11.Connection, port: int
    ) -> RecordedRequest | None:
        """The next request head (its body read and dropped), or None when the client left."""
        request: RecordedRequest | None = None
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                with trio.fail_after(self.timeout):
                    data = await stream.receive_some(DEFAULT_CHUNK)
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                request = RecordedRequest(
                    method=event.method.decode("ascii"),
                    target=event.target.decode("latin-1"),
                    headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers],
                    client_port=port,
                )
                self.requests.append(request)
            elif isinstance(event, h11.EndOfMessage):
                return request
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None

    async def _respond(
        self, stream: trio.SocketStream, conn: h11.Connection, request: RecordedRequest
    ) -> None:
        resource = self._resources.get(request.target) or self._resources.get(request.path)
        resource = NOT_FOUND if resource is None else resource
        if isinstance(resource, Blob) and request.method not in ("GET", "HEAD"):
            resource = Status(405, b"method not allowed\n", [("Allow", "GET, HEAD")])
        # What a Handler returns is served as is, whatever the method.
        while isinstance(resource, Handler):
            produced = resource.fn(request)
            resource = await produced if inspect.isawaitable(produced) else produced
        if isinstance(resource, Redirect):
            status = Status(resource.status, headers=[("Location", resource.location)])
            await self._send_status(stream, conn, status, request.method)
        elif isinstance(resource, Status):
            await self._send_status(stream, conn, resource, request.method)
        else:
            await self._send_blob(stream, conn, request, resource)

    async def _send_status(
        self, stream: trio.SocketStream, conn: h11.Connection, status: Status, method: str
    ) -> None:
        headers = [("Server", SERVER_NAME), *status.headers]
        has_body = status.code not in (204, 304)
        if has_body:
            headers += [("Content-Type", "text/plain"), ("Content-Length", str(len(status.body)))]
        await self._send(stream, conn.send(h11.Response(status_code=status.code, headers=headers)))
        if has_body and method != "HEAD" and status.body:
            await self._send(stream, conn.send(h11.Data(data=status.body)))
        await self._send(stream, conn.send(h11.EndOfMessage()))

    async def _send_blob(
        self, stream: trio.SocketStream, conn: h11.Connection, request: RecordedRequest, blob: Blob
    ) -> None:
        size = blob.size
        etag = blob.current_etag()
        last_modified = blob.current_last_modified()
        validators = [("ETag", etag), ("Last-Modified", last_modified)]
        headers = [("Server", SERVER_NAME), ("Content-Type", blob.content_type)]
        headers += [(name, value) for name, value in validators if value is not None]
        if blob.content_disposition is not None:
            headers.append(("Content-Disposition", blob.content_disposition))
        if blob.ranges:
            headers.append(("Accept-Ranges", "bytes"))
        headers += blob.extra_headers

        status, start, stop = blob.status, 0, size
        if blob.ranges and blob.status == 200:
            decision = choose_range(
                request.header("range"), request.header("if-range"), size, etag, last_modified
            )
            if decision == "unsatisfiable":
                await self._delay(blob.delay_head)
                status416 = Status(416, headers=[("Content-Range", f"bytes */{size}")])
                await self._send_status(stream, conn, status416, request.method)
                return
            if isinstance(decision, tuple):
                status, (start, stop) = 206, decision
                headers.append(("Content-Range", f"bytes {start}-{stop - 1}/{size}"))
        lying = blob.lie_length is not None
        if lying:
            headers.append(("Content-Length", str(blob.lie_length)))
        elif not blob.chunked:
            headers.append(("Content-Length", str(stop - start)))

        await self._delay(blob.delay_head)
        await self._send(stream, conn.send(h11.Response(status_code=status, headers=headers)))
        if request.method == "HEAD":
            await self._send(stream, conn.send(h11.EndOfMessage()))
            return
        cut_at = blob.drop_after
        if blob.drop_count is not None and blob.drops_done >= blob.drop_count:
            cut_at = None

        def frame(piece: bytes | memoryview) -> list[Any] | None:
            # A lying length is bypassed by writing the raw bytes (h11 would refuse them).
            if lying:
                return [piece]
            # h11 passes any bytes-like object through untouched (no copy of the slice).
            return conn.send_with_data_passthrough(h11.Data(data=cast(bytes, piece)))

        sent, cut = 0, False
        with contextlib.closing(blob.read(start, stop)) as pieces:
            for piece in pieces:
                await self._delay(blob.delay_per_chunk)
                if blob.hold is not None and sent >= blob.hold_after:
                    with trio.fail_after(self.timeout):
                        await blob.hold.wait()
                if cut_at is not None and sent + len(piece) >= cut_at:
                    if cut_at > sent:
                        await self._send(stream, frame(piece[: cut_at - sent]))
                    cut = True
                    break
                await self._send(stream, frame(piece))
                sent += len(piece)
        if cut or (cut_at is not None and sent >= cut_at):  # sent >= cut_at: an empty body
            blob.drops_done += 1
            raise _Cut(blob.drop_with_reset)
        if lying:
            raise _Cut(False)
        await self._send(stream, conn.send(h11.EndOfMessage()))

    async def _send(
        self, stream: trio.SocketStream, data: bytes | memoryview | list[Any] | None
    ) -> None:
        """Write ``data`` (bytes or h11's list of pieces) within ``timeout``."""
        if isinstance(data, list):
            data = data[0] if len(data) == 1 else b"".join(data)
        if not data:
            return
        with trio.fail_after(self.timeout):
            await stream.send_all(data)

    @staticmethod
    async def _delay(seconds: float) -> None:
        if seconds > 0:
            await trio.sleep(seconds)


_NETWORK_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError)


def choose_range(
    range_header: str | None,
    if_range: str | None,
    size: int,
    etag: str | None,
    last_modified: str | None,
) -> tuple[int, int] | str | None:
    """Decide a reply: ``(start, stop)`` for a 206, ``"unsatisfiable"`` for a 416, None for 200.

    Only one ``bytes=`` range is honoured; anything else (several, another unit, bad syntax,
    a failed ``If-Range``) gives None.
    """
    if range_header is None:
        return None
    if if_range is not None:
        strong_match = etag is not None and not etag.startswith("W/") and if_range == etag
        date_match = last_modified is not None and if_range == last_modified
        if not (strong_match or date_match):
            return None
    unit, _, spec = range_header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = spec.strip().partition("-")
    first, last = _number(first_text), _number(last_text)
    if not dash or _BAD in (first, last):
        return None
    if first is None:
        if last is None:
            return None
        if last == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - last), size
    if last is not None and last < first:
        return None
    if first >= size:
        return "unsatisfiable"
    return first, size if last is None else min(last + 1, size)


_BAD = -1


def _number(text: str) -> int | None:
    """An unsigned decimal: None when empty, ``_BAD`` when not digits."""
    text = text.strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit()):
        return _BAD
    # A thousand-digit position is as unsatisfiable as any other past the end.
    return int(text) if len(text) < 40 else 10**40


def _slash(path: str) -> str:
    return path if path.startswith("/") else "/" + path


def _abort(stream: trio.SocketStream) -> None:
    """Make the coming close a TCP reset (SO_LINGER with a zero timeout)."""
    with contextlib.suppress(OSError):
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
