"""The h11 connection loop: one task per TCP connection.

Reads requests (with head-size, header-count, head-time and idle limits the
library does not enforce for us), hands them to the application, writes the
response head and the body through ``send_body``, then loops for
keep-alive / pipelined requests.  Every failure becomes one JSON error reply (or a
closed socket when a reply is no longer possible); no traceback reaches a client.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable

import h11
import trio

from slipstream.errors import SlipstreamError
from slipstream.ext import DECLINE, RequestHead, parse_request_head
from slipstream.numeric import InvalidNumber, parse_uint
from slipstream.send import BodyTruncated, StreamedBody, send_all_within, send_body

from .config import Limits
from .errors import ErrorRenderer, error_response, unexpected_error_response
from .http import REASONS, Request, Response
from .http1 import (
    ProtocolFailure,
    asks_to_close,
    header_block,
    merged_headers,
    request_of,
    response_head,
)
from .metrics import Metrics
from .redact import redact_target
from .replay import ReplayStream

access_log = logging.getLogger("slipstream.access")
log = logging.getLogger("slipstream.server")

RECEIVE_SIZE = 64 * 1024
WEBSOCKET_PATH = "/ws"
"""The one path where a websocket upgrade is handed to the websocket handler."""
Handler = Callable[[Request], Awaitable[Response]]
STREAMED_CLOSE_TIMEOUT = 10.0
"""Seconds a streamed body may take to release what it holds once its reply ended."""
ErrorShapes = Callable[[Request | None], ErrorRenderer]
"""Which renderer answers the errors of a request (None: its head did not parse)."""
UpgradeHandler = Callable[[trio.abc.HalfCloseableStream, Request], Awaitable[None]]
"""Takes over a connection whose request asked for a websocket (the stream replays it)."""

# h11 merges repeated Content-Length fields and accepts Content-Length next to
# Transfer-Encoding; both are request-smuggling vectors, so we look at the raw head.
_CONTENT_LENGTH_LINE = re.compile(rb"(?im)^content-length[ \t]*:([^\r\n]*)")
_TRANSFER_ENCODING_LINE = re.compile(rb"(?im)^transfer-encoding[ \t]*:")
_HEAD_END = re.compile(rb"\r?\n\r?\n")


class _Length:
    """Stands in for body bytes we send ourselves (h11 only calls ``len()`` on it)."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


class IdleScopes:
    """Cancel scopes of connections waiting idle for their next request (drained first)."""

    def __init__(self) -> None:
        self.scopes: set[trio.CancelScope] = set()
        self.draining = False

    def cancel_all(self) -> None:
        """Start draining: idle connections close now, busy ones after their reply."""
        self.draining = True
        for scope in self.scopes:
            scope.cancel()


class HTTPConnection:
    """Serve one accepted socket until it closes, times out, or the server drains.

    Each request head goes first to the fast path (the extension's strict parser, which
    takes ordinary requests and gives exactly what h11 would); a head it declines is
    handed unchanged to a fresh h11 connection, which reads that request and writes its
    reply, and whose unread bytes come back for the next request.
    """

    def __init__(
        self,
        stream: trio.SocketStream,
        handler: Handler,
        limits: Limits,
        idle: IdleScopes,
        *,
        access_log_enabled: bool = True,
        websocket: UpgradeHandler | None = None,
        errors: ErrorShapes | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.stream = stream
        self.metrics = metrics
        """Counts every reply (None: metrics are off)."""
        self.errors: ErrorShapes = errors if errors is not None else _usual_shape
        self.websocket = websocket
        self._raw_request = bytearray()
        self.handler = handler
        self.limits = limits
        self.idle = idle
        self._buffer = bytearray()
        """Bytes received and not read yet (the start of the next request, pipelined)."""
        self.conn: h11.Connection | None = None
        """The h11 connection reading the current request; None on the fast path."""
        self._close_after = False
        """Fast path: the client asked for the connection to close after this request."""
        self._fd = stream.socket.fileno() if type(stream) is trio.SocketStream else -1
        """The socket's descriptor, for reads of bytes already waiting (-1: another
        kind of stream, read only through its own methods)."""
        self.access_log_enabled = access_log_enabled and access_log.isEnabledFor(logging.INFO)
        try:
            peer = stream.socket.getpeername()
            self.client = f"{peer[0]}:{peer[1]}"
        except OSError:
            self.client = "-"

    async def run(self) -> None:
        """Loop over requests on this connection; always closes the socket at the end."""
        try:
            first = True
            while True:
                request = await self._next_request(first)
                first = False
                if request is None:
                    break
                if self.websocket is not None and _wants_websocket(request):
                    self._log(request.method, request.target, 101, 0, None)
                    replay = ReplayStream(self.stream, bytes(self._raw_request))
                    await self._upgrade(replay, request)
                    break
                keep_going = await self._respond(request)
                if not keep_going or not self._next_cycle():
                    break
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            pass
        except trio.TooSlowError:
            log.debug("%s: send timed out, dropping client", self.client)
        except BodyTruncated as exc:
            log.warning("%s: %s", self.client, exc)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await self.stream.aclose()

    async def _upgrade(self, replay: ReplayStream, request: Request) -> None:
        """Hand the connection to the websocket handler (counted as a 101 of ``/ws``)."""
        assert self.websocket is not None
        metrics = self.metrics
        if metrics is None:
            await self.websocket(replay, request)
            return
        metrics.request_done(WEBSOCKET_PATH, 101, 0, 0)
        metrics.open_websockets.inc()
        try:
            await self.websocket(replay, request)
        finally:
            metrics.open_websockets.dec()

    def _next_cycle(self) -> bool:
        """After a reply: whether the connection may read another request."""
        conn = self.conn
        if conn is None:
            return not self._close_after
        if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
            return False
        self._buffer = bytearray(conn.trailing_data[0])  # the next request's first bytes
        self.conn = None
        return True

    # -- reading ------------------------------------------------------------------

    async def _receive(self, deadline: float, idle: bool) -> bytes | None:
        """One read; None when the deadline passed (or the server started draining).

        Bytes already waiting are taken with one non-blocking read, without a cancel
        scope or a trip through the scheduler (the reply before made a checkpoint, so
        the next request of a busy connection has usually arrived by then)."""
        if idle and self.idle.draining:
            return None
        if self._fd >= 0:
            try:
                return os.read(self._fd, RECEIVE_SIZE)
            except BlockingIOError:
                pass
            except ConnectionError:
                raise
            except OSError as exc:
                raise trio.BrokenResourceError(f"socket read failed: {exc}") from exc
        with trio.CancelScope(deadline=deadline) as scope:
            if idle:
                self.idle.scopes.add(scope)
                if self.idle.draining:
                    scope.cancel()
            try:
                return await self.stream.receive_some(RECEIVE_SIZE)
            finally:
                self.idle.scopes.discard(scope)
        return None

    async def _next_request(self, first: bool) -> Request | None:
        """Read the next request head (and a bounded body); None when the connection ends.

        A new connection must send its whole head within ``head_timeout``; a kept-alive
        one may idle ``idle_timeout`` before the first byte of its next request, and then
        has ``head_timeout`` for the rest of the head.
        """
        limits = self.limits
        buffer = self._buffer
        deadline = trio.current_time() + (
            limits.head_timeout if buffer or first else limits.idle_timeout
        )
        searched = 0  # where to look for the end of the head next (no quadratic rescans)
        try:
            while True:
                if buffer and (
                    _HEAD_END.search(buffer, searched) or len(buffer) > limits.max_head_bytes
                ):
                    head = parse_request_head(
                        buffer, 0, limits.max_head_bytes, limits.max_header_count
                    )
                    if isinstance(head, RequestHead):
                        return await self._fast_request(head)
                    assert head == DECLINE  # the head is complete, or over the limit
                    return await self._h11_request(first, deadline, closed=False)
                searched = max(0, len(buffer) - 2)
                data = await self._receive(deadline, idle=not buffer)
                if data is None:
                    if buffer:
                        raise ProtocolFailure(408, "request head timed out")
                    return None
                if not data:  # the client closed: h11 judges what it sent, if anything
                    return await self._h11_request(first, deadline, closed=True) if buffer else None
                if not buffer and not first:
                    deadline = trio.current_time() + limits.head_timeout
                buffer += data
        except ProtocolFailure as failure:
            await self._send_failure(failure)
            return None

    async def _fast_request(self, head: RequestHead) -> Request:
        """The request the fast path parsed at the start of the buffer, with its body."""
        self.conn = None
        self._close_after = asks_to_close(head)
        request = request_of(head.method, head.target, merged_headers(head.headers), self.client)
        length = head.content_length
        if length > self.limits.max_body_bytes:
            raise ProtocolFailure(413, "request body too large", request)
        buffer = self._buffer
        stop = head.end + length
        deadline = trio.current_time() + self.limits.body_timeout
        while len(buffer) < stop:
            data = await self._receive(deadline, idle=False)
            if data is None:
                raise ProtocolFailure(408, "request body timed out", request)
            if not data:
                raise trio.BrokenResourceError("client closed mid-body")
            buffer += data
        request.body = bytes(buffer[head.end : stop]) if length else b""
        del buffer[:stop]
        return request

    async def _h11_request(self, first: bool, deadline: float, closed: bool) -> Request | None:
        """The request at the start of the buffer, read by a fresh h11 connection (the fast
        path declined it); ``closed``: the client has closed its side."""
        limits = self.limits
        conn = self.conn = h11.Connection(
            h11.SERVER, max_incomplete_event_size=limits.max_head_bytes
        )
        raw = self._buffer
        self._buffer = bytearray()
        conn.receive_data(bytes(raw))
        if closed:
            conn.receive_data(b"")
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await self._receive(deadline, idle=not raw)
                    if data is None:
                        if raw:
                            raise ProtocolFailure(408, "request head timed out")
                        return None
                    if data and not raw and not first:
                        deadline = trio.current_time() + limits.head_timeout
                    if len(raw) <= limits.max_head_bytes:
                        raw += data
                    conn.receive_data(data)
                    if len(raw) > limits.max_head_bytes and _HEAD_END.search(raw) is None:
                        raise ProtocolFailure(431, "request head too large")
                elif isinstance(event, h11.Request):
                    request = self._check_head(event, raw)
                    self._raw_request = raw
                    break
                else:  # ConnectionClosed before a request started
                    return None
            request.body = await self._read_body(conn, request)
            return request
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            message = "request head too large" if status == 431 else "malformed request"
            if _TRANSFER_ENCODING_LINE.search(raw) and _CONTENT_LENGTH_LINE.search(raw):
                # h11 refuses an unknown coding (501) before we see the smuggling pair
                status, message = 400, "both Content-Length and Transfer-Encoding"
            await self._send_failure(ProtocolFailure(status, message))
            return None
        except ProtocolFailure as failure:
            await self._send_failure(failure)
            return None

    def _check_head(self, event: h11.Request, raw: bytearray) -> Request:
        limits = self.limits
        headers = event.headers
        merged = merged_headers(headers)
        request = request_of(event.method, event.target, merged, self.client)
        if len(headers) > limits.max_header_count:
            raise ProtocolFailure(431, "too many header fields", request)
        size = len(event.target) + sum(len(name) + len(value) + 4 for name, value in headers)
        if size > limits.max_head_bytes:
            raise ProtocolFailure(431, "request head too large", request)
        if "content-length" in merged:
            if "transfer-encoding" in merged:
                raise ProtocolFailure(400, "both Content-Length and Transfer-Encoding", request)
            end = _HEAD_END.search(raw)
            head = bytes(raw[: end.end()]) if end else bytes(raw)
            values = [v for m in _CONTENT_LENGTH_LINE.findall(head) for v in m.split(b",")]
            if len(values) != 1:
                raise ProtocolFailure(400, "duplicate Content-Length", request)
        return request

    async def _read_body(self, conn: h11.Connection, request: Request) -> bytes:
        if conn.their_state is h11.DONE:
            return b""
        declared = request.headers.get("content-length")
        if declared is not None and _over_limit(declared, self.limits.max_body_bytes):
            raise ProtocolFailure(413, "request body too large", request)
        if conn.they_are_waiting_for_100_continue:
            continue_ = h11.InformationalResponse(status_code=100, headers=[])
            await self._send_bytes(conn.send(continue_))
        body = bytearray()
        deadline = trio.current_time() + self.limits.body_timeout
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await self._receive(deadline, idle=False)
                if data is None:
                    raise ProtocolFailure(408, "request body timed out", request)
                conn.receive_data(data)
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > self.limits.max_body_bytes:
                    raise ProtocolFailure(413, "request body too large", request)
            elif isinstance(event, h11.EndOfMessage):
                return bytes(body)
            elif isinstance(event, h11.ConnectionClosed):
                raise trio.BrokenResourceError("client closed mid-body")

    # -- writing ------------------------------------------------------------------

    async def _send_bytes(self, data: bytes | None) -> None:
        if data:
            await send_all_within(self.stream, data, self.limits.send_timeout)

    async def _send_failure(self, failure: ProtocolFailure) -> None:
        """Reply to a request we could not parse or accept, then close."""
        conn = self.conn
        if conn is not None and conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        response = self.errors(failure.request)(failure)
        response.close_connection = True
        with contextlib.suppress(
            trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError
        ):
            sent, sendfile = await self._write(response, head_only=False)
            if self.metrics is not None:
                route = failure.request.route if failure.request is not None else "none"
                self.metrics.request_done(route, failure.status, sent, sendfile)
        self._log("-", "-", failure.status, 0, None)

    async def _respond(self, request: Request) -> bool:
        """Run the handler and send its reply; False if the connection must close."""
        started = time.perf_counter() if self.access_log_enabled else None
        metrics = self.metrics
        if metrics is not None:
            metrics.in_flight.inc()
        try:
            try:
                response = await self.handler(request)
            except SlipstreamError as error:
                response = self.errors(request)(error)
            except Exception as exc:
                context = f"{request.method} {request.path}"
                response = unexpected_error_response(exc, context, self.errors(request))
            if self.idle.draining:
                response.close_connection = True
            try:
                sent, sendfile = await self._write(response, head_only=request.method == "HEAD")
            finally:
                if isinstance(response.body, StreamedBody):
                    with trio.CancelScope(shield=True), trio.move_on_after(STREAMED_CLOSE_TIMEOUT):
                        await response.body.aclose()
                response.release()
            if metrics is not None:
                metrics.request_done(request.route, response.status, sent, sendfile)
        finally:
            if metrics is not None:
                metrics.in_flight.dec()  # after the count: a scrape seeing 0 sees every count
        self._log(request.method, request.target, response.status, sent, started)
        return not response.close_connection

    async def _write(self, response: Response, head_only: bool) -> tuple[int, int]:
        """Send head and body; returns the body bytes sent, and how many of them went by
        ``sendfile``."""
        status = response.status
        bodyless = head_only or status in (204, 304) or status < 200
        length = response.content_length
        if self.conn is None:  # the fast path: the head is written here
            close = response.close_connection or self._close_after
            framed = None if status in (204, 304) else length
            head = response_head(status, framed, close, response.headers)
        else:
            head = self._h11_head(self.conn, response)
        if bodyless or length == 0:
            if self.conn is not None:
                head += self.conn.send(h11.EndOfMessage()) or b""
            await self._send_bytes(head)
            return 0, 0
        if self.conn is not None:
            data = h11.Data(data=_Length(length))  # type: ignore[arg-type]
            self.conn.send_with_data_passthrough(data)
        sendfile = await send_body(
            self.stream, response.body, head=head, send_timeout=self.limits.send_timeout
        )
        if self.conn is not None:
            self.conn.send(h11.EndOfMessage())
        return length, sendfile

    @staticmethod
    def _h11_head(conn: h11.Connection, response: Response) -> bytes:
        """The head of a reply to a request h11 read.

        h11 sees only the framing fields (Content-Length, Connection) it needs for its
        state machine; the other header lines are checked and serialised here and
        spliced into h11's head.  h11 validates every field with regular expressions,
        which was the largest single cost of a small reply.
        """
        status = response.status
        framing: list[tuple[bytes, bytes]] = []
        if status not in (204, 304):
            framing.append((b"Content-Length", str(response.content_length).encode()))
        if response.close_connection:
            framing.append((b"Connection", b"close"))
        head = conn.send(
            h11.Response(status_code=status, headers=framing, reason=REASONS.get(status, b""))
        )
        assert head is not None
        return head[:-2] + header_block(response.headers) + b"\r\n"

    def _log(self, method: str, target: str, status: int, sent: int, started: float | None) -> None:
        if not self.access_log_enabled:
            return
        elapsed = (time.perf_counter() - started) * 1000 if started is not None else 0.0
        access_log.info(
            '%s "%s %s" %d %d %.1fms',
            self.client,
            method,
            redact_target(target),  # never write credentials to the log
            status,
            sent,
            elapsed,
        )


def _usual_shape(request: Request | None) -> ErrorRenderer:
    """Without a router's say, every error is ``{"error": ...}``."""
    return error_response


def _over_limit(declared: str, limit: int) -> bool:
    """Whether a ``Content-Length`` (digits, checked by h11) announces more than ``limit``."""
    try:
        return parse_uint(declared) > limit
    except InvalidNumber:  # beyond any size a body can have
        return True


def _wants_websocket(request: Request) -> bool:
    """A GET asking to switch to the websocket protocol."""
    return (
        request.method == "GET"
        and request.path == WEBSOCKET_PATH
        and request.headers.get("upgrade", "").lower() == "websocket"
        and "upgrade" in request.headers.get("connection", "").lower()
    )
