"""A Trio client for slipstream's websocket protocol and its resumable, verified downloads.

``SlipstreamClient`` speaks the packet protocol at ``ws://HOST:PORT/ws`` (Initialize,
type 7 "create file download URL") and downloads the presigned URL it gets back over
HTTP with httpx::

    async with SlipstreamClient("ws://127.0.0.1:8000/ws", token) as client:
        path = await client.download("builds/client.dll", Path("client.dll"))

A download is written to ``DEST.part`` with the reply's ETag beside it in
``DEST.part.etag``.  Run again after an interruption and it asks for the rest only
(``Range: bytes=N-`` with ``If-Range: ETAG``); if the file changed meanwhile the server
answers 200 and the download restarts from zero.  The whole file's SHA-256 is checked
against the ``file_checksum`` of the type 7 reply (the prefix already on disk and the
new bytes hashed in one pass) before ``DEST.part`` is renamed to ``DEST``; on a mismatch
:class:`FileChecksumMismatch` is raised and the ``.part`` file is kept for inspection.

Every wait has a deadline: websocket replies (``timeout``), connecting and closing, and
each HTTP read (a stalled transfer fails instead of hanging).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Self

import httpx
import trio
import trio_websocket

from slipstream.http.validators import is_strong_etag
from slipstream.wsprotocol import PacketType

from .errors import (
    ClientError,
    ConnectError,
    DownloadFailed,
    FileChecksumMismatch,
    FileInvalidResumeOffset,
    FileNotFound,
    InvalidReply,
    NotAuthorized,
    RequestTimeout,
    closed_error,
)
from .files import (
    discard,
    etag_path_for,
    hash_prefix,
    part_path_for,
    resume_state,
    sync_file,
    write_chunk,
    write_etag,
)
from .replies import check_partial, check_status, http_error, one_line

__all__ = ["DEFAULT_TIMEOUT", "DownloadTicket", "SlipstreamClient", "download_file"]

DEFAULT_TIMEOUT = 30.0
"""Seconds to wait for a websocket reply, a connection, or the next bytes of a download."""
WRITE_CHUNK = 1024 * 1024
"""Received bytes are buffered up to this size, then written and hashed in a thread."""
MAX_ATTEMPTS = 3
"""Fresh URLs fetched when the file changes between issuing a URL and using it (412)."""

Progress = Callable[[int, int], None]
"""``progress(done, total)`` as bytes reach the disk (``done`` counts a resumed prefix)."""


# --- protocol values -----------------------------------------------------------------


@dataclass(frozen=True)
class DownloadTicket:
    """The reply to a type 7 packet: where and what to download."""

    presigned_url: str
    file_size: int
    file_checksum: str
    """SHA-256 of the whole stored file, lower-case hex."""


_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass
class _Pending:
    """A request waiting for its reply (or for the connection's end)."""

    event: trio.Event
    reply: dict[str, Any] | None = None
    error: ClientError | None = None


# --- the client ----------------------------------------------------------------------


class SlipstreamClient:
    """A websocket session (Initialize done on entry) plus an HTTP client for downloads.

    ``http`` may be an ``httpx.AsyncClient`` of the caller's (not closed here); by default
    the client makes its own.  Requests may run concurrently from several tasks: replies
    are matched by ``id``.
    """

    def __init__(
        self,
        ws_url: str,
        token: str,
        application: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.ws_url = ws_url
        self.token = token
        self.application = application
        self.timeout = timeout
        self._http = http
        self._own_http = http is None
        self._ws: trio_websocket.WebSocketConnection | None = None
        self._ws_cm: Any = None
        self._nursery_cm: Any = None
        self._nursery: trio.Nursery | None = None
        self._pending: dict[int, _Pending] = {}
        self._next_id = 0
        self._closed: ClientError | None = None

    # -- lifecycle --

    async def __aenter__(self) -> Self:
        try:
            ws_cm = trio_websocket.open_websocket_url(
                self.ws_url, connect_timeout=self.timeout, disconnect_timeout=self.timeout
            )
            self._ws = await ws_cm.__aenter__()
            self._ws_cm = ws_cm
        except trio_websocket.ConnectionRejected as exc:
            raise ConnectError(
                f"{self.ws_url} refused the websocket (HTTP {exc.status_code})"
            ) from None
        except trio_websocket.ConnectionTimeout:
            raise ConnectError(f"timed out connecting to {self.ws_url}") from None
        except trio_websocket.HandshakeError as exc:
            cause = exc.__cause__ or exc
            detail = getattr(cause, "strerror", None) or str(cause) or type(cause).__name__
            raise ConnectError(f"cannot connect to {self.ws_url}: {one_line(detail)}") from None
        except (ValueError, OSError) as exc:
            raise ConnectError(f"cannot connect to {self.ws_url}: {one_line(str(exc))}") from None
        try:
            self._nursery_cm = trio.open_nursery()
            self._nursery = await self._nursery_cm.__aenter__()
            self._nursery.start_soon(self._reader)
            if self._own_http:
                self._http = httpx.AsyncClient(
                    timeout=httpx.Timeout(self.timeout), follow_redirects=True, verify=True
                )
            await self._initialize()
        except BaseException as exc:
            await self._shutdown(exc)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._shutdown(exc)

    async def _shutdown(self, exc: BaseException | None) -> None:
        """Stop the reader, close the HTTP client (if ours) and the websocket."""
        try:
            if self._nursery is not None:
                self._nursery.cancel_scope.cancel()
            if self._nursery_cm is not None:
                # Only the reader runs there; the body's exception is not the nursery's.
                await self._nursery_cm.__aexit__(None, None, None)
            if self._own_http and self._http is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(self.timeout):
                    await self._http.aclose()
        finally:
            self._nursery_cm = self._nursery = self._ws = None
            if self._own_http:
                self._http = None
            ws_cm, self._ws_cm = self._ws_cm, None
            if ws_cm is not None:
                try:
                    await ws_cm.__aexit__(None, None, None)
                except trio_websocket.HandshakeError:
                    if exc is None:
                        raise ConnectError(f"timed out closing {self.ws_url}") from None

    @trio.lowlevel.enable_ki_protection
    async def _reader(self) -> None:
        """Route each reply to the request with its ``id``; on close, fail every waiter.

        Protected from KeyboardInterrupt: a Ctrl-C that arrives while this background
        task runs is delivered to the caller's task instead, so it reaches the caller
        as a plain KeyboardInterrupt (raised here, the nursery would wrap it in an
        exception group).
        """
        assert self._ws is not None
        error: ClientError
        try:
            while True:
                message = await self._ws.get_message()
                try:
                    reply = json.loads(message)
                    ident = reply["id"]
                except (ValueError, TypeError, KeyError):
                    error = InvalidReply(f"not a JSON reply with an id: {one_line(repr(message))}")
                    break
                pending = self._pending.get(ident) if isinstance(ident, int) else None
                if pending is not None and pending.reply is None:
                    pending.reply = reply
                    pending.event.set()
        except trio_websocket.ConnectionClosed as exc:
            error = closed_error(exc.reason)
        self._closed = error
        for pending in self._pending.values():
            if pending.reply is None:
                pending.error = error
                pending.event.set()

    # -- requests --

    async def request(self, packet: dict[str, Any]) -> dict[str, Any]:
        """Send ``packet`` (an ``id`` is added) and return its reply, whatever its status."""
        if self._ws is None:
            raise ClientError("the client is not connected (use it as `async with`)")
        if self._closed is not None:
            raise self._closed
        self._next_id += 1
        ident = self._next_id
        pending = _Pending(trio.Event())
        self._pending[ident] = pending
        try:
            with trio.fail_after(self.timeout):
                try:
                    await self._ws.send_message(json.dumps({**packet, "id": ident}))
                except trio_websocket.ConnectionClosed as exc:
                    raise self._closed or closed_error(exc.reason) from None
                await pending.event.wait()
        except trio.TooSlowError:
            raise RequestTimeout(
                f"no reply to packet type {packet.get('type')} within {self.timeout:g} s"
            ) from None
        finally:
            del self._pending[ident]
        if pending.reply is None:
            assert pending.error is not None
            raise pending.error
        return pending.reply

    async def _initialize(self) -> None:
        packet: dict[str, Any] = {"type": PacketType.INITIALIZE, "token": self.token}
        if self.application is not None:
            packet["application"] = self.application
        reply = await self.request(packet)
        check_status(
            reply,
            "Initialize refused",
            {NotAuthorized.status: "Initialize refused: invalid token or unknown application"},
        )

    async def create_download_url(self, filename: str, resume_at: int = 0) -> DownloadTicket:
        """Packet type 7: a presigned URL for ``filename``, its size and SHA-256.

        Raises :class:`FileNotFound`, :class:`FileInvalidResumeOffset`,
        :class:`NotAuthorized`, :class:`InternalServerError` for those statuses.
        """
        reply = await self.request(
            {"type": PacketType.CREATE_DOWNLOAD_URL, "filename": filename, "resume_at": resume_at}
        )
        check_status(
            reply,
            f"cannot download {filename}",
            {
                FileNotFound.status: f"file not found: {filename}",
                FileInvalidResumeOffset.status: f"cannot resume {filename} at byte {resume_at}",
            },
        )
        url = reply.get("presigned_url")
        size = reply.get("file_size")
        checksum = reply.get("file_checksum")
        if (
            not isinstance(url, str)
            or not url.startswith(("http://", "https://"))
            or not isinstance(size, int)
            or isinstance(size, bool)
            or size < 0
            or not isinstance(checksum, str)
            or not _SHA256_HEX.fullmatch(checksum)
        ):
            raise InvalidReply(f"malformed type 7 reply: {one_line(json.dumps(reply))}")
        return DownloadTicket(url, size, checksum)

    # -- downloads --

    async def download(
        self,
        filename: str,
        dest: Path,
        progress: Progress | None = None,
        *,
        resume: bool = True,
    ) -> Path:
        """Download ``filename`` to ``dest``, resuming ``dest.part``; return ``dest``.

        With ``resume=False`` any ``.part`` file is discarded first.  The final name
        appears only once the whole file's SHA-256 matches.
        """
        dest = Path(dest)
        part, etag_path = part_path_for(dest), etag_path_for(dest)
        offset, etag = resume_state(part, etag_path) if resume else (0, None)
        if offset == 0:
            discard(part, etag_path)
        for _attempt in range(MAX_ATTEMPTS):
            ticket, offset = await self._ticket(filename, offset, part, etag_path)
            if ticket is None:
                discard(part, etag_path)
                dest.write_bytes(b"")
                if progress is not None:
                    progress(0, 0)
                return dest
            if offset == 0:
                etag = None
            done = await self._fetch(ticket, part, etag_path, offset, etag, progress)
            if done is not None:
                os.replace(part, dest)
                etag_path.unlink(missing_ok=True)
                return dest
            # 412: the file changed after the URL was issued; the .part state is intact.
            offset, etag = resume_state(part, etag_path)
        raise DownloadFailed(
            f"{filename} kept changing while it was being downloaded; try again later", 412
        )

    async def _ticket(
        self, filename: str, offset: int, part: Path, etag_path: Path
    ) -> tuple[DownloadTicket | None, int]:
        """A type 7 ticket and the offset to resume from (adjusted to the file's size).

        No ticket means the file is empty: the server answers 303 to ``resume_at`` 0
        only when 0 is not below the size.
        """
        try:
            return await self.create_download_url(filename, offset), offset
        except FileInvalidResumeOffset:
            if offset == 0:
                return None, 0
        try:
            ticket = await self.create_download_url(filename, 0)
        except FileInvalidResumeOffset:
            ticket = None
        if ticket is not None and offset == ticket.file_size:
            # The .part is complete but unverified: ask for its last byte again, so that
            # If-Range tells whether it still belongs to the same version of the file.
            with part.open("r+b") as handle:
                handle.truncate(offset - 1)
            return ticket, offset - 1
        discard(part, etag_path)
        return ticket, 0

    async def _fetch(
        self,
        ticket: DownloadTicket,
        part: Path,
        etag_path: Path,
        offset: int,
        etag: str | None,
        progress: Progress | None,
    ) -> int | None:
        """GET the ticket's URL into ``part`` from ``offset``; the size, or None on a 412."""
        assert self._http is not None
        headers = {"Accept-Encoding": "identity"}
        if offset and etag:
            headers["Range"] = f"bytes={offset}-"
            headers["If-Range"] = etag
        size = ticket.file_size
        try:
            async with self._http.stream("GET", ticket.presigned_url, headers=headers) as reply:
                if reply.status_code == 412:
                    return None
                if reply.status_code == 206 and "Range" in headers:
                    check_partial(reply, offset, size, etag)
                elif reply.status_code == 200:
                    offset = 0
                    new_etag = reply.headers.get("etag")
                    discard(part, etag_path)
                    if is_strong_etag(new_etag):
                        write_etag(etag_path, new_etag)
                else:
                    await reply.aread()
                    raise DownloadFailed(http_error(reply), reply.status_code)
                encoding = reply.headers.get("content-encoding", "identity").lower()
                if encoding != "identity":
                    raise DownloadFailed(
                        f"server sent a {encoding}-encoded body", reply.status_code
                    )
                return await self._receive(reply, ticket, part, offset, progress)
        except httpx.TimeoutException:
            raise DownloadFailed(
                f"download stalled for {self.timeout:g} s; run again to resume"
            ) from None
        except httpx.HTTPError as exc:
            raise DownloadFailed(
                f"download interrupted: {one_line(str(exc) or type(exc).__name__)}; "
                "run again to resume"
            ) from None

    async def _receive(
        self,
        reply: httpx.Response,
        ticket: DownloadTicket,
        part: Path,
        offset: int,
        progress: Progress | None,
    ) -> int:
        """Append the body to ``part`` at ``offset``, hash prefix + body, verify, return size."""
        size = ticket.file_size
        hasher = hashlib.sha256()
        handle: BinaryIO = part.open("r+b" if offset else "wb")
        try:
            await hash_prefix(handle, offset, hasher)
            handle.seek(offset)
            handle.truncate(offset)
            done = offset
            if progress is not None:
                progress(done, size)
            buffer = bytearray()
            async for chunk in reply.aiter_raw():
                buffer += chunk
                if done + len(buffer) > size:
                    raise DownloadFailed(
                        f"server sent more than the announced {size} bytes", reply.status_code
                    )
                if len(buffer) >= WRITE_CHUNK:
                    done += await write_chunk(handle, hasher, buffer)
                    buffer.clear()
                    if progress is not None:
                        progress(done, size)
            if buffer:
                done += await write_chunk(handle, hasher, buffer)
                if progress is not None:
                    progress(done, size)
            await trio.to_thread.run_sync(sync_file, handle)
        finally:
            handle.close()
        if done != size:
            raise DownloadFailed(
                f"connection ended after {done} of {size} bytes; run again to resume"
            )
        actual = hasher.hexdigest()
        if actual != ticket.file_checksum:
            raise FileChecksumMismatch(ticket.file_checksum, actual, part)
        return done


async def download_file(
    ws_url: str,
    token: str,
    filename: str,
    dest: Path,
    *,
    application: str | None = None,
    progress: Progress | None = None,
    resume: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """Connect, download ``filename`` to ``dest`` (resuming, verified), disconnect."""
    async with SlipstreamClient(ws_url, token, application, timeout=timeout) as client:
        return await client.download(filename, dest, progress, resume=resume)
