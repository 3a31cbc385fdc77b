"""The websocket packet protocol at ``/ws``: Initialize, type 7 and type 20 (the server's side).

The packets, statuses and close codes are :mod:`slipstream.wsprotocol`'s.  A connection
must Initialize first (within :attr:`WsOptions.init_timeout`); type-7 requests run
concurrently (each in its own task, at most :attr:`WsOptions.max_in_flight` at once), so
their replies may come out of order; type 20 answers OK and from then on pushes
remote-download progress events (see :meth:`slipstream.jobs.Jobs.subscribe`).

Frames over 64 KiB are refused by trio-websocket itself (close code 1009).  The order
of checks for each packet is: rate limit (``RATE_LIMIT_HIT``, also for a new connection
from a blocked IP), binary frame (``UNSUPPORTED_DATA``), JSON object with an integer
``type``, initialized (``NOT_INITIALIZED``), then the packet's own fields
(``INVALID_REQUEST_BODY``).

Statuses: Initialize answers OK, or NOT_AUTHORIZED for a bad token or an unknown
application (a session that was not initialized stays so; one that was keeps its
earlier Initialize, token and application, so a failed re-Initialize never logs a
working session out).  Type 7 answers OK with the URL; NOT_AUTHORIZED if the token was
revoked since Initialize or the path is refused (escapes, unreadable); FILE_NOT_FOUND
for a missing file / directory / special file; FILE_INVALID_RESUME_OFFSET for
``resume_at`` outside ``[0, size)`` (so an empty file always gets it);
INTERNAL_SERVER_ERROR for anything else (logged).  Errors are values until the
surface's renderer, :func:`ws_status`, turns them into these statuses.

What the sessions share (and the tunables, :class:`~.ws_hub.WsOptions`) is the
server's :class:`~.ws_hub.WsHub`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio
import trio_websocket

from slipstream import wsprotocol
from slipstream.digests import FileChanged, OnChange, opened_file_digests
from slipstream.errors import (
    FileNotFound,
    FileNotReadable,
    IsADirectory,
    NotARegularFile,
    NotFound,
    PathNotAllowed,
    SlipstreamError,
)
from slipstream.wsprotocol import (
    CLOSE_REASONS,
    CloseCode,
    CreateDownloadUrl,
    Initialize,
    InvalidPacket,
    PacketType,
    Status,
    SubscribeDownloads,
    decode_packet,
    encode,
    parse_packet,
)

from .auth import token_is_valid
from .http import Request
from .http1 import worker_fields
from .ws_hub import WsHub
from .ws_limits import Blocked

if TYPE_CHECKING:
    from slipstream.jobs.runner import Jobs

__all__ = [
    "InvalidResumeOffset",
    "create_download_url",
    "serve_websocket",
    "ws_status",
]

log = logging.getLogger("slipstream.ws")


def rate_limited_reason(blocked: Blocked) -> str:
    """The ``RATE_LIMIT_HIT`` close reason for ``blocked``."""
    if blocked.new:
        return CLOSE_REASONS[CloseCode.RATE_LIMIT_HIT]
    return wsprotocol.rate_limited_reason(blocked.whole_seconds)


# --- type 7 --------------------------------------------------------------------------

_NOT_FOUND_ERRORS = (NotFound, FileNotFound, IsADirectory, NotARegularFile)
_FORBIDDEN_ERRORS = (PathNotAllowed, FileNotReadable)


class InvalidResumeOffset(SlipstreamError):
    """A type-7 ``resume_at`` outside ``[0, size)`` (FILE_INVALID_RESUME_OFFSET)."""

    code, status, default_message = "invalid_resume_offset", 416, "resume offset outside the file"


def ws_status(error: SlipstreamError) -> Status:
    """The websocket surface's renderer: the type-7 status of an error value.

    NOT_AUTHORIZED for a path the space refuses (escapes, hidden, unreadable);
    FILE_NOT_FOUND for a missing file, a directory or a special file;
    FILE_INVALID_RESUME_OFFSET; INTERNAL_SERVER_ERROR for any other.
    """
    if isinstance(error, _FORBIDDEN_ERRORS):
        return Status.NOT_AUTHORIZED
    if isinstance(error, _NOT_FOUND_ERRORS):
        return Status.FILE_NOT_FOUND
    if isinstance(error, InvalidResumeOffset):
        return Status.FILE_INVALID_RESUME_OFFSET
    return Status.INTERNAL_SERVER_ERROR


async def create_download_url(
    hub: WsHub, space: str, filename: str, resume_at: int, *, expires_in: int
) -> dict[str, Any]:
    """The type-7 reply fields (without ``id``) for ``filename`` in ``hub.spaces[space]``.

    Raises the storage's error for a file it refuses or cannot find, and
    :class:`InvalidResumeOffset` when ``resume_at`` is negative or not below the size
    (:func:`ws_status` renders them); other failures propagate too (the caller answers
    INTERNAL_SERVER_ERROR).
    """
    opened = hub.spaces[space].open(filename)
    with opened:
        size = opened.stat.size
        if resume_at < 0 or resume_at >= size:
            raise InvalidResumeOffset()
        # a file that changes while it is hashed raises FileChanged: status 6 (the caller)
        _, digests = await opened_file_digests(hub.digests, opened, on_change=OnChange.FAIL)
        url, _ = hub.urls.issue(space, opened, expires_in=expires_in)
    return {
        "presigned_url": url,
        "file_size": size,
        "file_checksum": digests.hex("sha256"),
        "status": Status.OK,
    }


# --- connections ---------------------------------------------------------------------


def client_ip(request: Request) -> str:
    """The peer address without its port (``request.client`` is ``HOST:PORT``)."""
    host, sep, _ = request.client.rpartition(":")
    return host if sep else request.client


async def serve_websocket(
    hub: WsHub, stream: trio.abc.HalfCloseableStream, request: Request
) -> None:
    """Run the websocket protocol on ``stream`` (which replays the upgrade request).

    Returns when the connection has closed; the caller closes the socket.
    """
    options = hub.options
    async with trio.open_nursery() as nursery:
        ws: trio_websocket.WebSocketConnection | None = None
        with trio.move_on_after(options.handshake_timeout):
            try:
                proposal = await trio_websocket.wrap_server_stream(
                    nursery,
                    stream,
                    message_queue_size=options.message_queue_size,
                    max_message_size=options.max_message_size,
                )
                ws = await proposal.accept(extra_headers=worker_fields())
            except (trio_websocket.ConnectionClosed, trio.BrokenResourceError):
                ws = None
        if ws is None:
            nursery.cancel_scope.cancel()
            return
        hub.connections += 1
        session = Session(hub, ws, stream, client_ip(request))
        hub.sessions.add(session)
        try:
            blocked = hub.limiter.blocked(session.ip, hub.clock())
            if blocked is not None:
                await session.close(CloseCode.RATE_LIMIT_HIT, rate_limited_reason(blocked))
            else:
                await session.run()
        finally:
            hub.connections -= 1
            hub.sessions.discard(session)
            if ws.closed is None:  # stopped or cancelled (the server is draining): say goodbye
                with trio.CancelScope(shield=True):
                    # our reader is cancelled too: the client's answer cannot arrive
                    await session.close(CloseCode.GOING_AWAY, "server shutting down", wait=0.05)
            nursery.cancel_scope.cancel()


class Session:
    """One websocket connection after the handshake.

    Nothing is raised across the task nursery: a task that finds the connection
    unusable cancels the whole session (:meth:`stop`).
    """

    def __init__(
        self,
        hub: WsHub,
        ws: trio_websocket.WebSocketConnection,
        stream: trio.abc.HalfCloseableStream,
        ip: str,
    ) -> None:
        self.hub = hub
        self.options = hub.options
        self.ws = ws
        self.stream = stream
        self.ip = ip
        self.token: str | None = None
        self.space: str | None = None
        """The initialized application's space key; None until Initialize succeeds."""
        self.in_flight = trio.Semaphore(self.options.max_in_flight)
        self.subscribed = False
        """Whether download events are pushed here (such a session is never idle)."""
        self._scope = trio.CancelScope()

    def stop(self) -> None:
        """End the session now (reader loop and in-flight requests)."""
        self._scope.cancel()

    async def run(self) -> None:
        """Read packets until the connection closes; in-flight requests end with it."""
        with self._scope:
            async with trio.open_nursery() as tasks:
                await self._read_loop(tasks)
                tasks.cancel_scope.cancel()

    async def _read_loop(self, tasks: trio.Nursery) -> None:
        options = self.options
        init_deadline = trio.current_time() + options.init_timeout
        while True:
            initialized = self.space is not None
            idle_deadline = trio.current_time() + options.idle_timeout
            deadline = idle_deadline if initialized else init_deadline
            with trio.move_on_at(deadline) as idle:
                try:
                    message = await self.ws.get_message()
                except trio_websocket.ConnectionClosed:
                    return
            if idle.cancelled_caught:
                if not initialized:
                    await self._close_with(CloseCode.NOT_INITIALIZED)
                    return
                if self.in_flight.value < options.max_in_flight or self.subscribed:
                    continue  # requests still running or events subscribed: not idle
                await self.close(CloseCode.NORMAL, "idle timeout")
                return
            if not await self._on_message(message, tasks):
                return

    async def _on_message(self, message: str | bytes, tasks: trio.Nursery) -> bool:
        """Handle one frame; False once the connection is closed."""
        blocked = self.hub.limiter.hit(self.ip, self.hub.clock())
        if blocked is not None:
            await self.close(CloseCode.RATE_LIMIT_HIT, rate_limited_reason(blocked))
            return False
        if not isinstance(message, str):
            await self._close_with(CloseCode.UNSUPPORTED_DATA)
            return False
        try:
            raw = decode_packet(message)
            if self.space is None and raw["type"] != PacketType.INITIALIZE:
                await self._close_with(CloseCode.NOT_INITIALIZED)
                return False
            packet = parse_packet(raw)
        except InvalidPacket:
            await self._close_with(CloseCode.INVALID_REQUEST_BODY)
            return False
        if isinstance(packet, Initialize):
            return await self._initialize(packet)
        if isinstance(packet, SubscribeDownloads):
            return await self._subscribe_downloads(packet, tasks)
        await self.in_flight.acquire()
        tasks.start_soon(self._create_download_url, packet, self.space, self.token)
        return True

    async def _initialize(self, packet: Initialize) -> bool:
        """Check the token and the application.  A failed Initialize changes nothing: an
        uninitialized session stays so (only another Initialize is accepted), an
        initialized one keeps the token and application of its last good Initialize."""
        space = "root" if packet.application is None else f"app-{packet.application}"
        valid = token_is_valid(packet.token, self.hub.config.tokens)
        if not valid or space not in self.hub.spaces:
            return await self.send({"id": packet.id, "status": Status.NOT_AUTHORIZED})
        self.token, self.space = packet.token, space
        return await self.send({"id": packet.id, "status": Status.OK})

    async def _subscribe_downloads(self, packet: SubscribeDownloads, tasks: trio.Nursery) -> bool:
        """Answer type 20 and forward download events until the connection ends."""
        if not self.subscribed:
            self.subscribed = True
            tasks.start_soon(self._forward_download_events, self.hub.jobs)
        return await self.send({"id": packet.id, "status": Status.OK})

    async def _forward_download_events(self, jobs: Jobs) -> None:
        with jobs.subscribe() as events:
            async for event in events:
                if not await self.send(event):
                    self.stop()
                    return

    async def _create_download_url(
        self, packet: CreateDownloadUrl, space: str | None, token: str | None
    ) -> None:
        try:
            reply: dict[str, Any] = {"status": Status.INTERNAL_SERVER_ERROR}
            if space is None or not token_is_valid(token, self.hub.config.tokens):
                reply = {"status": Status.NOT_AUTHORIZED}  # e.g. the token was revoked
            else:
                with trio.move_on_after(self.options.request_timeout):
                    try:
                        reply = await create_download_url(
                            self.hub,
                            space,
                            packet.filename,
                            packet.resume_at,
                            expires_in=self.options.url_ttl,
                        )
                    except SlipstreamError as error:
                        status = ws_status(error)
                        if status is Status.INTERNAL_SERVER_ERROR:
                            log.exception("type 7 request for %r failed", packet.filename)
                        reply = {"status": status}
                    except FileChanged:
                        log.info("%s: %r changed while hashing", self.ip, packet.filename)
                    except Exception:
                        log.exception("type 7 request for %r failed", packet.filename)
        finally:
            self.in_flight.release()
        if not await self.send({"id": packet.id, **reply}):
            self.stop()

    async def send(self, reply: dict[str, Any]) -> bool:
        """Send one reply; False (and the socket dropped) if that is no longer possible.

        A client that leaves a reply unread for ``send_timeout`` is dropped without a
        close handshake (it would not read that either).
        """
        with trio.move_on_after(self.options.send_timeout):
            try:
                await self.ws.send_message(encode(reply))
                return True
            except trio_websocket.ConnectionClosed:
                return False
        log.debug("%s: websocket send timed out, dropping client", self.ip)
        await self._drop()
        return False

    async def close(self, code: int, reason: str, *, wait: float | None = None) -> None:
        """Close with ``code`` and ``reason``, waiting up to ``wait`` (default
        ``close_timeout``) for the client's answer; the socket is closed either way."""
        timeout = self.options.close_timeout if wait is None else wait
        with trio.move_on_after(timeout) as scope:
            await self.ws.aclose(code, reason)
        if scope.cancelled_caught:
            await self._drop()

    async def _close_with(self, code: CloseCode) -> None:
        """Close with a protocol ``code`` and its reason."""
        await self.close(code, CLOSE_REASONS[code])

    async def _drop(self) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await self.stream.aclose()
