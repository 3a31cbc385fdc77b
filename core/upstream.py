"""Plaintext HTTP/1.1 exchanges with upstreams: h11 reads the head, the body comes
straight from the socket.

:class:`slipstream.fetch.Fetcher` sends its ``http://`` GETs through here (``https://``
and other methods go through httpx).  The head of a request and of its response are
h11's job, as everywhere else in slipstream.  A body framed by ``Content-Length`` is then
read by :meth:`Exchange.readinto` with ``recv_into`` into the caller's buffer: no
``bytes`` object per chunk and no copy besides the kernel's, so the caller can CRC the
buffer and send (or ``pwrite``) the same memory.  The bytes h11 had already received past
the head (``trailing_data``) go first.  Chunked and close-delimited bodies are read
through h11's events (one copy; they are rare for files).

The common case skips h11 altogether (it costs about a third of a millisecond of CPU
per exchange, which a zip of a thousand small members pays a thousand times): a ``GET``
whose headers are plain tokens and visible values is written from a bytes template
(:func:`request_head`, byte for byte what h11 writes), and a response head in the strict
subset of :func:`slipstream.ext.parse_response_head` (HTTP/1.1, a body framed by one
``Content-Length``) is parsed by the extension.  Anything else (another method, an
unusual header, a chunked or close-delimited body, 1xx, any malformed head) goes to h11
with the same bytes, so h11 stays the engine and the judge of every unusual exchange;
``tests/ext/test_httphead_response.py`` checks the two parsers agree.

Why not httpcore here: the pump needs the socket and the bytes already buffered past the
head, and h11 exposes those publicly (``trailing_data``) where httpcore keeps both
private.  Connections come from the caller's ``connect`` (the fetcher's guarded backend:
one resolution, every address checked by the network policy), so this module never opens
a socket the policy did not see, and only ever talks to the host it was given.

Idle connections are kept per origin (:class:`~slipstream.upstream_pool.ConnectionPool`) for
``keepalive_expiry`` seconds: a zip of many members from one host reuses a few
connections instead of opening one per member.  A connection goes back to the pool only
when its response was read exactly to its end, nothing more arrived, and both sides
allow keep-alive; anything else closes it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Sequence
from typing import Final, Protocol

import h11
import trio

from slipstream.ext import (
    NEED_MORE,
    RELAY_DONE,
    RELAY_READ_TIMEOUT,
    Relayed,
    ResponseHead,
    parse_response_head,
)

from .numeric import InvalidNumber, parse_uint
from .upstream_pool import Connect, ConnectionPool, UpstreamConnection
from .upstream_request import request_head

__all__ = [
    "SPLICE_CHUNK",
    "SPLICE_FLAGS",
    "BodyEndedEarly",
    "BodyTimeout",
    "Connect",
    "ConnectionPool",
    "Exchange",
    "HeadFailed",
    "Relayer",
    "UpstreamConnection",
    "exchange",
    "keep_alive",
    "read_fast_head",
    "request_head",
    "splice_pipe",
]

HEAD_READ: Final = 16 * 1024
"""Bytes asked of the socket per read while the head is awaited: little more than a head,
so most of the body stays in the kernel for :meth:`Exchange.readinto` (what comes with
the head is copied into h11's buffer and out again)."""
EVENT_READ: Final = 256 * 1024
"""Bytes asked of the socket per read of a body that h11 frames (chunked, close-delimited)."""
MAX_HEAD: Final = 64 * 1024
"""Largest response head accepted (h11's ``max_incomplete_event_size``)."""
FAST_FIELDS: Final = 256
"""Most header fields the fast response-head parser takes (more: h11 reads the head)."""
SPLICE_CHUNK: Final = 1024 * 1024
"""Most bytes moved by one ``splice`` call (and the pipe's size)."""
SPLICE_FLAGS: Final = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)
"""Flags of every ``splice`` call: move pages where possible, never block."""
_GONE: Final = frozenset({errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN})


class HeadFailed(Exception):
    """No usable response head: the connection broke, timed out or spoke bad HTTP.

    ``stale`` is True when nothing at all came back (on a connection reused from the
    pool, the upstream had closed it meanwhile: the request may be sent again);
    ``timeout`` when the read timeout passed.
    """

    def __init__(self, message: str, *, timeout: bool = False, stale: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout
        self.stale = stale


class BodyEndedEarly(Exception):
    """The connection ended (or broke) before the announced body length arrived."""


class BodyTimeout(Exception):
    """No body byte arrived within the read timeout."""


def keep_alive(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """Whether an HTTP/1.1 answer with ``headers`` (lower-case names) allows keep-alive."""
    for name, value in headers:
        if name == b"connection" and b"close" in (t.strip().lower() for t in value.split(b",")):
            return False
    return True


def _content_length(response: h11.Response) -> int | None:
    """The body length when it is framed by Content-Length alone (h11 has checked the
    value: one plain decimal number); None for chunked, close-delimited or no body.
    Raises :class:`HeadFailed` for a length over ``INT64_MAX``."""
    if 100 <= response.status_code < 200 or response.status_code in (204, 304):
        return None
    length: int | None = None
    for name, value in response.headers:
        if name == b"transfer-encoding":
            return None
        if name == b"content-length":
            try:
                length = parse_uint(value)  # h11 has checked it is one decimal number
            except InvalidNumber as exc:
                raise HeadFailed(f"unusable Content-Length: {exc}") from exc
    return length


class Relayer(Protocol):
    """What relays an exchange's body bytes itself (a zip reply's send thread lane)."""

    async def relay(
        self, fd: int, first: memoryview, count: int, read_timeout: float, /
    ) -> tuple[int, Relayed]:
        """Send ``first``, then relay ``count`` bytes from the socket ``fd``; how many
        of ``first`` went out, and how far the relay got (raises for the client side)."""


class Exchange:
    """One response on one connection: its head, and its body through :meth:`readinto`.

    Call :meth:`finish` when done with it (whether or not the body was read): the
    connection goes back to the pool only if the body was read exactly to its end.
    """

    __slots__ = (
        "_buffered",
        "_conn",
        "_h11",
        "_keep",
        "_left",
        "_pending",
        "_pool",
        "_remaining",
        "_timeout",
        "headers",
        "spliced",
        "status",
    )

    def __init__(
        self,
        pool: ConnectionPool,
        conn: UpstreamConnection,
        machine: h11.Connection | None,
        status: int,
        headers: list[tuple[bytes, bytes]],
        keep: bool,
        length: int | None,
        buffered: memoryview | None,
        read_timeout: float,
    ) -> None:
        self._pool = pool
        self._conn: UpstreamConnection | None = conn
        self._h11 = machine
        """h11's state of the exchange (None when the fast path read the head: the body
        is then framed by Content-Length)."""
        self._timeout = read_timeout
        self.status = status
        self.headers = headers
        self._keep = keep
        self._remaining = length
        """Body bytes still to come when framed by Content-Length (None: h11 frames it)."""
        self._buffered = buffered
        """Body bytes received with the head (Content-Length bodies only)."""
        self._left = memoryview(b"")
        """Data h11 handed over that did not fit the caller's buffer (chunked bodies)."""
        self._pending = True
        self.spliced = 0
        """Body bytes :meth:`splice_to` has delivered so far."""

    @classmethod
    def from_head(
        cls,
        pool: ConnectionPool,
        conn: UpstreamConnection,
        head: ResponseHead,
        received: bytearray,
        read_timeout: float,
    ) -> Exchange:
        """The exchange whose head the fast parser read (``head``, parsed from
        ``received``, which may hold the first body bytes after it)."""
        headers = head.headers
        return cls(
            pool,
            conn,
            None,
            head.status,
            headers,
            keep_alive(headers),
            head.content_length,
            memoryview(received)[head.end :],
            read_timeout,
        )

    @classmethod
    def from_h11(
        cls,
        pool: ConnectionPool,
        conn: UpstreamConnection,
        machine: h11.Connection,
        response: h11.Response,
        read_timeout: float,
    ) -> Exchange:
        """The exchange whose head h11 read (``response``)."""
        headers = list(response.headers)
        keep = response.http_version == b"1.1" and keep_alive(headers)
        length = _content_length(response)
        buffered = memoryview(machine.trailing_data[0]) if length is not None else None
        status = response.status_code
        return cls(pool, conn, machine, status, headers, keep, length, buffered, read_timeout)

    @property
    def can_splice(self) -> bool:
        """Whether :meth:`splice_to` may be used (a Content-Length body, Linux)."""
        return self._remaining is not None and hasattr(os, "splice")

    async def splice_to(self, out: trio.socket.SocketType, count: int, send_timeout: float) -> None:
        """Move the next ``count`` body bytes to the socket ``out`` without copying them
        through user memory: upstream socket -> pipe -> ``out`` with ``os.splice``.

        Bytes h11 had already buffered are sent first.  :attr:`spliced` counts the bytes
        delivered, also when this raises midway: :class:`BodyEndedEarly` or
        :class:`BodyTimeout` for the upstream, ``trio.BrokenResourceError`` or
        ``trio.TooSlowError`` for ``out``.
        """
        remaining = self._remaining
        conn = self._conn
        if remaining is None or conn is None or count > remaining:
            raise ValueError("splice_to needs that many bytes of a Content-Length body")
        buffered = self._buffered
        if buffered:
            head = buffered[:count]
            await _send_all(out, head, send_timeout)
            self._buffered = buffered[len(head) :]
            self._remaining = remaining = remaining - len(head)
            self.spliced += len(head)
            count -= len(head)
        if not count:
            return
        source = conn.socket
        read_end, write_end = splice_pipe()
        try:
            while count:
                moved = await self._splice_in(source, write_end, min(count, SPLICE_CHUNK))
                self._remaining = remaining = remaining - moved
                count -= moved
                await _splice_out(read_end, out, moved, send_timeout)
                self.spliced += moved
        finally:
            os.close(read_end)
            os.close(write_end)

    async def relay_through(self, relayer: Relayer, count: int) -> None:
        """Have ``relayer`` move the next ``count`` body bytes from this connection's
        socket (the bytes h11 had already buffered first); :attr:`spliced` counts them.

        Raises :class:`BodyEndedEarly` or :class:`BodyTimeout` when the upstream stops
        short (the bytes before that were delivered), and what ``relayer`` raises for
        the client.  The connection is reused only if the body was read to its end.
        """
        fd, first, rest = self.relay_plan(count)
        # A client-side failure raises here with nothing counted: the body is then not
        # read to its end, so the connection (in an unknown state) is never reused.
        sent_first, moved = await relayer.relay(fd, first, rest, self._timeout)
        self.relayed(first, sent_first, moved)

    @property
    def read_timeout(self) -> float:
        """The longest wait for the next byte of this answer, in seconds."""
        return self._timeout

    def relay_plan(self, count: int) -> tuple[int, memoryview, int]:
        """What a relay of the next ``count`` body bytes moves: the socket's descriptor,
        the bytes already buffered that go first, and how many to take from the socket
        after them (for :meth:`relay_through`, or a relay queued without waiting; report
        its result with :meth:`relayed`)."""
        remaining = self._remaining
        conn = self._conn
        if remaining is None or conn is None or count > remaining:
            raise ValueError("a relay needs that many bytes of a Content-Length body")
        first = (self._buffered or memoryview(b""))[:count]
        return conn.socket.fileno(), first, count - len(first)

    def relayed(self, first: memoryview, sent_first: int, moved: Relayed) -> None:
        """Count what a relay planned by :meth:`relay_plan` moved (``first`` as planned;
        ``sent_first`` of it went out, then ``moved``).  Raises :class:`BodyEndedEarly`
        or :class:`BodyTimeout` when the upstream stopped short."""
        buffered = self._buffered or memoryview(b"")
        self._buffered = buffered[len(first) :]
        assert self._remaining is not None
        self._remaining -= len(first) + moved.received
        self.spliced += sent_first + moved.sent
        if moved.status == RELAY_DONE:
            return
        if moved.status == RELAY_READ_TIMEOUT:
            raise BodyTimeout("no data received within the read timeout")
        raise BodyEndedEarly(f"upstream closed with {self._remaining} body bytes missing")

    async def _splice_in(self, source: trio.socket.SocketType, pipe: int, size: int) -> int:
        fd = source.fileno()
        while True:
            try:
                moved = os.splice(fd, pipe, size, flags=SPLICE_FLAGS)
            except BlockingIOError:
                with trio.move_on_after(self._timeout) as scope:
                    await trio.lowlevel.wait_readable(source)
                if scope.cancelled_caught:
                    raise BodyTimeout("no data received within the read timeout") from None
                continue
            except OSError as exc:
                raise BodyEndedEarly(f"connection broke: {exc}") from exc
            if not moved:
                raise BodyEndedEarly(f"upstream closed with {self._remaining} body bytes missing")
            return moved

    async def readinto(self, buffer: memoryview) -> int:
        """Read body bytes into ``buffer``; how many (0 at the end of the body).

        Raises :class:`BodyEndedEarly` when the connection ends short of the announced
        length, :class:`BodyTimeout` when no byte comes within the read timeout, and
        ``h11.RemoteProtocolError`` for a malformed chunked body.
        """
        remaining = self._remaining
        if remaining is None:
            return await self._read_event(buffer)
        if not remaining:
            self._pending = False
            return 0
        size = min(len(buffer), remaining)
        count = 0
        buffered = self._buffered
        if buffered:
            count = min(size, len(buffered))
            buffer[:count] = buffered[:count]
            self._buffered = buffered[count:]
        conn = self._conn
        assert conn is not None, "read after finish()"
        if count < size:
            # What the kernel already holds comes in the same call, without a trip
            # through the event loop (the caller's send yields to the other tasks).
            count += _receive_ready(conn.socket, buffer[count:size])
        if not count:
            with trio.CancelScope(deadline=trio.current_time() + self._timeout) as scope:
                try:
                    count = await conn.socket.recv_into(buffer, size)
                except OSError as exc:
                    raise BodyEndedEarly(f"connection broke: {exc}") from exc
            if scope.cancelled_caught:
                raise BodyTimeout("no data received within the read timeout")
            if not count:
                raise BodyEndedEarly(f"upstream closed with {remaining} body bytes missing")
        self._remaining = remaining - count
        return count

    async def _read_event(self, buffer: memoryview) -> int:
        left = self._left
        machine = self._h11
        assert machine is not None  # h11 frames every body without a Content-Length
        while not left:
            if not self._pending:
                return 0
            event = machine.next_event()
            if event is h11.NEED_DATA:
                machine.receive_data(await self._receive())
            elif isinstance(event, h11.Data):
                left = memoryview(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._pending = False
            else:  # ConnectionClosed before the end: h11 raises for a cut chunked body
                raise BodyEndedEarly(f"unexpected {type(event).__name__} in the body")
        count = min(len(buffer), len(left))
        buffer[:count] = left[:count]
        self._left = left[count:]
        return count

    async def _receive(self) -> bytes:
        conn = self._conn
        assert conn is not None, "read after finish()"
        with trio.CancelScope(deadline=trio.current_time() + self._timeout) as scope:
            try:
                return await conn.socket.recv(EVENT_READ)
            except OSError as exc:
                raise BodyEndedEarly(f"connection broke: {exc}") from exc
        assert scope.cancelled_caught
        raise BodyTimeout("no data received within the read timeout")

    def _reusable(self) -> bool:
        if not self._keep:
            return False
        if self._remaining is not None:  # more than announced arrived: never reuse
            return not self._remaining and not self._buffered
        if self._pending:
            return False
        machine = self._h11
        assert machine is not None  # h11 frames every body without a Content-Length
        return machine.their_state is h11.DONE and not machine.trailing_data[0]

    async def finish(self) -> None:
        """Give the connection back to the pool if it can serve another request, else close it."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._reusable():
            await self._pool.release(conn)
        else:
            await conn.aclose()


def splice_pipe() -> tuple[int, int]:
    """A non-blocking pipe (read end, write end) for ``splice``, sized to hold
    :data:`SPLICE_CHUNK` where the kernel allows it; the caller closes both ends."""
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    with contextlib.suppress(OSError):  # the default 64 KiB pipe works too
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, SPLICE_CHUNK)
    return read_end, write_end


def _receive_ready(sock: trio.socket.SocketType, buffer: memoryview) -> int:
    """The bytes the socket holds right now, received into ``buffer`` without waiting;
    0 when there are none yet, and also when the connection has ended or broken (the
    waiting receive that follows then reports it)."""
    try:
        return os.readv(sock.fileno(), [buffer])
    except OSError:  # BlockingIOError: nothing yet; anything else: reported by the next receive
        return 0


async def _send_all(out: trio.socket.SocketType, data: memoryview, timeout: float) -> None:
    with trio.fail_after(timeout):
        while data:
            try:
                sent = await out.send(data)
            except OSError as exc:
                if exc.errno in _GONE:
                    raise trio.BrokenResourceError(str(exc)) from exc
                raise
            data = data[sent:]


async def _splice_out(pipe: int, out: trio.socket.SocketType, size: int, timeout: float) -> None:
    """Move ``size`` bytes from ``pipe`` to ``out`` (each wait for ``out`` within ``timeout``)."""
    fd = out.fileno()
    while size:
        try:
            sent = os.splice(pipe, fd, size, flags=SPLICE_FLAGS)
        except BlockingIOError:
            with trio.fail_after(timeout):
                await trio.lowlevel.wait_writable(out)
            continue
        except OSError as exc:
            if exc.errno in _GONE:
                raise trio.BrokenResourceError(str(exc)) from exc
            raise
        size -= sent
    await trio.lowlevel.checkpoint()


async def exchange(
    pool: ConnectionPool,
    host: str,
    port: int,
    method: str,
    target: bytes,
    headers: Sequence[tuple[bytes, bytes]],
    *,
    read_timeout: float,
) -> Exchange:
    """Send ``method target`` to ``host:port`` (``headers`` include ``Host``) and read
    the response head; the body is left for :meth:`Exchange.readinto`.

    A request on a reused connection that gets no byte back (the upstream closed it
    meanwhile) is sent once more on a new connection.  Raises :class:`HeadFailed`, or
    what ``connect`` raises.
    """
    for _attempt in range(2):
        conn, reused = await pool.acquire(host, port)
        try:
            return await _send_and_read_head(pool, conn, method, target, headers, read_timeout)
        except HeadFailed as exc:
            await conn.aclose()
            if not (reused and exc.stale):
                raise
        except BaseException:
            await conn.aclose()
            raise
    raise HeadFailed("the upstream closed the connection twice")  # pragma: no cover


async def read_fast_head(
    sock: trio.socket.SocketType, received: bytearray
) -> tuple[ResponseHead | None, bool]:
    """Receive a response head into ``received`` for the fast parser: (the head, False)
    once it is in; (None, False) when the parser declines it, (None, True) when the
    connection ended first (``received`` then holds what came, for h11)."""
    while True:
        try:
            # What the kernel already holds comes without a trip through the event
            # loop (an answer to a request written ahead is usually in by now).
            chunk = os.read(sock.fileno(), HEAD_READ)
        except BlockingIOError:
            chunk = await sock.recv(HEAD_READ)
        if not chunk:
            return None, True
        received += chunk
        head = parse_response_head(received, 0, MAX_HEAD, FAST_FIELDS)
        if isinstance(head, ResponseHead):
            return head, False
        if head != NEED_MORE:
            return None, False


def _h11_client(
    method: str, target: bytes, headers: Sequence[tuple[bytes, bytes]]
) -> tuple[h11.Connection, bytes]:
    """An h11 client that has sent the request, and the bytes it wrote."""
    machine = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
    data = machine.send(h11.Request(method=method, target=target, headers=list(headers)))
    data += machine.send(h11.EndOfMessage()) or b""
    return machine, data or b""


async def _send_and_read_head(
    pool: ConnectionPool,
    conn: UpstreamConnection,
    method: str,
    target: bytes,
    headers: Sequence[tuple[bytes, bytes]],
    read_timeout: float,
) -> Exchange:
    machine: h11.Connection | None = None
    data = request_head(method, target, headers)
    if data is None:
        machine, data = _h11_client(method, target, headers)
    received = bytearray()
    sock = conn.socket
    # The head is sent and read on the socket itself (the stream from ``connect`` is
    # only opened and closed here): one deadline for both.
    with trio.CancelScope(deadline=trio.current_time() + read_timeout) as scope:
        try:
            view = memoryview(data)
            while view:
                view = view[await sock.send(view) :]
            if machine is None:  # the fast path, until the head is in or declined
                head, ended = await read_fast_head(sock, received)
                if head is not None:
                    return Exchange.from_head(pool, conn, head, received, read_timeout)
                # Declined, or the connection ended: h11 judges.
                machine, _ = _h11_client(method, target, headers)
                machine.receive_data(bytes(received))
                if ended:
                    machine.receive_data(b"")
            while True:
                event = machine.next_event()
                if event is h11.NEED_DATA:
                    chunk = await sock.recv(HEAD_READ)
                    received += chunk[:1]  # (only whether anything came matters now)
                    machine.receive_data(chunk)
                elif isinstance(event, h11.Response):
                    return Exchange.from_h11(pool, conn, machine, event, read_timeout)
                elif not isinstance(event, h11.InformationalResponse):
                    raise HeadFailed("the upstream closed the connection", stale=not received)
        except OSError as exc:
            raise HeadFailed(f"connection broke: {exc}", stale=not received) from exc
        except h11.RemoteProtocolError as exc:
            raise HeadFailed(f"bad response head: {exc}", stale=not received) from exc
    assert scope.cancelled_caught
    raise HeadFailed("no response within the read timeout", timeout=True)
