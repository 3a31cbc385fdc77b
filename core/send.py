"""``send_body``: the one way every reply goes out, head and body, through a
:class:`BodyWriter`.

A segment map (files, multipart, a local zip) is written segment by segment
(``send_segments``); a :class:`StreamedBody` (a zip of remote objects) writes itself
through the same writer, which sends the head with its first bytes.

Literals are written with ``send_all`` (memoryviews, no copies); file slices go out
with zero-copy ``os.sendfile`` straight from the page cache, in bounded chunks with a
checkpoint between them so one fast client cannot starve the others.  Small file
slices are read into the pending write buffer instead, so a small reply leaves in one
``send`` together with its head.  Every wait for the socket has ``send_timeout`` as its
deadline: a client that stops reading is dropped.
"""

from __future__ import annotations

import abc
import errno
import os
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

import trio

from slipstream.segments import FileSlice, Literal, Segment, SegmentMap, UpstreamSlice

SENDFILE_CHUNK = 4 * 1024 * 1024
"""Largest single sendfile call; a checkpoint follows each one."""
SMALL_SLICE = 16 * 1024
"""File slices up to this size are read (pread) and coalesced with neighbouring bytes."""
COALESCE_LIMIT = 64 * 1024
"""Pending bytes are flushed once they reach this size."""

UpstreamWriter = Callable[[trio.SocketStream, UpstreamSlice], Awaitable[None]]


class Spliceable(Protocol):
    """A source that moves its bytes into a socket itself (an upstream body, by ``splice``)."""

    async def splice_to(
        self, out: trio.socket.SocketType, count: int, send_timeout: float, /
    ) -> None: ...


class BodyTruncated(Exception):
    """A file shrank (or an upstream failed) while we were sending: the promised length
    cannot be met, so the connection must be closed."""


class StreamedBody(abc.ABC):
    """A body produced while it is sent (a zip of remote objects), not a segment map.

    ``total`` is its exact length, known before the head goes out; :meth:`write` sends
    exactly that many bytes through the reply's :class:`BodyWriter` or raises
    (:class:`BodyTruncated` when a source failed); :meth:`aclose` always follows.
    """

    @property
    @abc.abstractmethod
    def total(self) -> int:
        """Body length in bytes."""

    @abc.abstractmethod
    async def write(self, out: BodyWriter) -> None:
        """Send the body through ``out`` (which holds the reply's head, not yet sent)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release what the body holds; called once when its reply has ended, whether
        :meth:`write` ran, failed, or never started (a ``HEAD``, a failed head).  Must
        not raise ``Exception``."""


Body = SegmentMap | StreamedBody | bytes
"""Every kind of reply body :func:`send_body` sends."""


async def send_body(
    stream: trio.SocketStream, body: Body, *, head: bytes = b"", send_timeout: float = 30.0
) -> int:
    """Write ``head`` and then ``body`` to ``stream``: the one entry for every reply.

    A segment map goes out as :func:`send_segments` sends it, bytes are coalesced with
    the head, and a :class:`StreamedBody` writes itself through the same
    :class:`BodyWriter` (which sends the head with its first bytes).  Returns the body
    bytes that went out by ``sendfile`` (:attr:`BodyWriter.sendfile_bytes`).
    """
    out = BodyWriter(stream, head, send_timeout)
    if isinstance(body, SegmentMap):
        await out.write_segments(body.segments)
    elif isinstance(body, StreamedBody):
        await body.write(out)
    else:
        await out.write(body)
    await out.flush()
    return out.sendfile_bytes


async def send_segments(
    stream: trio.SocketStream,
    segments: Iterable[Segment],
    *,
    head: bytes = b"",
    send_timeout: float = 30.0,
    upstream: UpstreamWriter | None = None,
) -> int:
    """Write ``head`` then every segment to ``stream``; return the body bytes written."""
    out = BodyWriter(stream, head, send_timeout)
    sent = await out.write_segments(segments, upstream)
    await out.flush()
    return sent


class BodyWriter:
    """Writes one reply to its socket: the head first, small pieces coalesced with it.

    Bytes wait in a buffer (which starts as the head) until it would pass
    :data:`COALESCE_LIMIT`; larger pieces, relayed chunks (:meth:`send`) and large file
    slices (``sendfile``) go out directly after it is flushed.  Every wait for the
    socket has ``send_timeout`` as its deadline (:class:`trio.TooSlowError`).
    """

    __slots__ = ("_pending", "_timeout", "sendfile_bytes", "stream")

    def __init__(self, stream: trio.SocketStream, head: bytes = b"", send_timeout: float = 30.0):
        self.stream = stream
        self._pending = bytearray(head)
        self._timeout = send_timeout
        self.sendfile_bytes = 0
        """Bytes of file slices sent with zero-copy ``sendfile`` (one add per slice)."""

    @property
    def send_timeout(self) -> float:
        """Seconds each wait for the socket may take."""
        return self._timeout

    async def flush(self) -> None:
        """Send what is buffered."""
        if self._pending:
            await send_all_within(self.stream, self._pending, self._timeout)
            self._pending.clear()

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer ``data`` if it fits under :data:`COALESCE_LIMIT`, else flush and send it."""
        if len(self._pending) + len(data) <= COALESCE_LIMIT:
            self._pending += data
        else:
            await self.flush()
            await send_all_within(self.stream, data, self._timeout)

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        """Flush, then send ``data`` at once (relayed chunks: no copy into the buffer)."""
        await self.flush()
        await send_all_within(self.stream, data, self._timeout)

    async def splice(self, source: Spliceable, count: int) -> None:
        """Flush, then let ``source`` move ``count`` bytes into the socket (zero copy)."""
        await self.flush()
        await source.splice_to(self.stream.socket, count, self._timeout)

    async def write_segments(
        self, segments: Iterable[Segment], upstream: UpstreamWriter | None = None
    ) -> int:
        """Write every segment (see the module docstring); return the bytes written."""
        pending = self._pending
        sent = 0
        for segment in segments:
            if isinstance(segment, Literal):
                await self.write(segment.data)
            elif isinstance(segment, FileSlice):
                if segment.length <= SMALL_SLICE:
                    pending += _pread_exact(segment)
                    if len(pending) >= COALESCE_LIMIT:
                        await self.flush()
                else:
                    await self.flush()
                    await _sendfile(self.stream, segment, self._timeout)
                    self.sendfile_bytes += segment.length
            elif isinstance(segment, UpstreamSlice):
                if upstream is None:
                    raise TypeError("this body has upstream segments but no upstream writer")
                await self.flush()
                await upstream(self.stream, segment)
            else:  # pragma: no cover - SegmentMap only holds the three kinds
                raise TypeError(f"unknown segment {segment!r}")
            sent += segment.length
        return sent


async def send_all_within(
    stream: trio.abc.SendStream, data: bytes | bytearray | memoryview, timeout: float
) -> None:
    """``send_all`` that raises :class:`trio.TooSlowError` if it takes over ``timeout``.

    Most small replies fit in the socket's send buffer: on a :class:`trio.SocketStream`
    they go out with one non-blocking ``send`` straight on the socket, then a plain
    checkpoint (so a loop of sends still yields and sees cancellation), with no cancel
    scope and none of the stream's per-call machinery.  Only what that ``send`` leaves
    goes through ``stream.send_all`` under a deadline (same as ``trio.fail_after``
    around the call, without the context-manager machinery).
    """
    view = memoryview(data)
    # another kind of stream (a wrapper, a test's) goes by its own send_all
    sent = _write_nowait(stream, view) if type(stream) is trio.SocketStream else 0
    if sent == len(view):
        await trio.lowlevel.checkpoint()
        return
    with trio.CancelScope(deadline=trio.current_time() + timeout) as scope:
        await stream.send_all(view[sent:])
    if scope.cancelled_caught:
        raise trio.TooSlowError


def _write_nowait(stream: trio.SocketStream, view: memoryview) -> int:
    """The bytes of ``view`` one non-blocking write puts in the socket's buffer."""
    try:
        # os.write on the socket is send(2) without flags; Python ignores SIGPIPE, so a
        # closed peer is EPIPE here, as with send (trio has no synchronous send).
        return os.write(stream.socket.fileno(), view)
    except BlockingIOError:
        return 0
    except OSError as exc:
        raise trio.BrokenResourceError(f"socket send failed: {exc}") from exc


def _file_fd(segment: FileSlice) -> int:
    fileno = getattr(segment.source, "fileno", None)
    if fileno is None:
        raise TypeError(f"file segment source {segment.source!r} has no fileno()")
    fd: int = fileno()
    return fd


def _pread_exact(segment: FileSlice) -> bytes:
    data = os.pread(_file_fd(segment), segment.length, segment.offset)
    if len(data) != segment.length:
        raise BodyTruncated(f"file shrank: wanted {segment.length} bytes, read {len(data)}")
    return data


async def _sendfile(stream: trio.SocketStream, segment: FileSlice, send_timeout: float) -> None:
    sock = stream.socket
    sock_fd = sock.fileno()
    file_fd = _file_fd(segment)
    offset = segment.offset
    remaining = segment.length
    while remaining:
        try:
            sent = os.sendfile(sock_fd, file_fd, offset, min(remaining, SENDFILE_CHUNK))
        except BlockingIOError:
            with trio.fail_after(send_timeout):
                await trio.lowlevel.wait_writable(sock)
            continue
        except OSError as exc:
            if exc.errno in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                raise trio.BrokenResourceError(str(exc)) from exc
            raise
        if sent == 0:
            raise BodyTruncated(f"file shrank: {remaining} bytes missing at offset {offset}")
        offset += sent
        remaining -= sent
        await trio.lowlevel.checkpoint()
