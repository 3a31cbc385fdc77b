"""Errors of :mod:`slipstream.client`: one class per protocol status and close code.

Every class derives from :class:`ClientError`, whose ``str()`` is one line fit to show
a user (the ``slipstream get`` command prints exactly that).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slipstream.wsprotocol import CloseCode, Status

__all__ = [
    "ClientError",
    "ConnectError",
    "DownloadFailed",
    "FileChecksumMismatch",
    "FileInvalidResumeOffset",
    "FileNotFound",
    "InternalServerError",
    "InvalidReply",
    "InvalidRequestBody",
    "NotAuthorized",
    "NotInitialized",
    "ProtocolError",
    "RateLimited",
    "RequestTimeout",
    "ServerClosedConnection",
    "UnsupportedData",
    "closed_error",
    "status_error",
]


# --- errors --------------------------------------------------------------------------


class ClientError(Exception):
    """Base of every error this client raises; ``str()`` is one line, fit to show a user."""


class ConnectError(ClientError):
    """The websocket connection could not be opened (refused, rejected, timed out, bad URL)."""


class RequestTimeout(ClientError):
    """No reply to a websocket request within the timeout."""


class InvalidReply(ClientError):
    """The server sent something that is not a well-formed reply."""


class ProtocolError(ClientError):
    """A reply with a status other than 1 (Ok); ``status`` is the protocol's number."""

    status: int = 0

    def __init__(self, detail: str, status: int | None = None) -> None:
        if status is not None:
            self.status = status
        super().__init__(f"{detail} (status {self.status} {self.constant})")

    @property
    def constant(self) -> str:
        """The protocol's name of :attr:`status` (``Unknown`` for one it does not define)."""
        try:
            return Status(self.status).constant
        except ValueError:
            return "Unknown"


class NotAuthorized(ProtocolError):
    """Status 3: bad token, unknown application, or an operation not allowed."""

    status = Status.NOT_AUTHORIZED


class InternalServerError(ProtocolError):
    """Status 6: the server failed."""

    status = Status.INTERNAL_SERVER_ERROR


class FileNotFound(ProtocolError):
    """Status 300: no such file in the application."""

    status = Status.FILE_NOT_FOUND


class FileInvalidResumeOffset(ProtocolError):
    """Status 303: ``resume_at`` is negative or not below the file size."""

    status = Status.FILE_INVALID_RESUME_OFFSET


_STATUS_ERRORS: dict[int, type[ProtocolError]] = {
    cls.status: cls
    for cls in (NotAuthorized, InternalServerError, FileNotFound, FileInvalidResumeOffset)
}


def status_error(status: int) -> type[ProtocolError] | None:
    """The error class of protocol status ``status`` (None for 1 and unknown statuses)."""
    return _STATUS_ERRORS.get(status)


class ServerClosedConnection(ClientError):
    """The server closed the websocket; ``code`` and ``reason`` are its close frame's."""

    def __init__(self, code: int | None, reason: str | None) -> None:
        self.code = code
        self.reason = reason or ""
        shown = f": {self.reason}" if self.reason else ""
        super().__init__(f"server closed the connection (code {code}){shown}")


class NotInitialized(ServerClosedConnection):
    """Close code 4200: a packet was sent before a successful Initialize."""


class RateLimited(ServerClosedConnection):
    """Close code 4201: this IP sent too many packets (``reason`` says how long to wait)."""


class InvalidRequestBody(ServerClosedConnection):
    """Close code 4302: a packet did not match the protocol's schema."""


class UnsupportedData(ServerClosedConnection):
    """Close code 4304: a binary frame was sent."""


_CLOSE_ERRORS: dict[int, type[ServerClosedConnection]] = {
    CloseCode.NOT_INITIALIZED: NotInitialized,
    CloseCode.RATE_LIMIT_HIT: RateLimited,
    CloseCode.INVALID_REQUEST_BODY: InvalidRequestBody,
    CloseCode.UNSUPPORTED_DATA: UnsupportedData,
}


class DownloadFailed(ClientError):
    """The HTTP download failed; ``status`` is the HTTP status when there was a reply.

    The ``.part`` file (if any) is kept: run the download again to resume.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class FileChecksumMismatch(ClientError):
    """The downloaded file's SHA-256 is not the ``file_checksum`` the server announced.

    The final name is not written; the bytes stay in ``part`` for inspection.
    """

    def __init__(self, expected: str, actual: str, part: Path) -> None:
        self.expected = expected
        self.actual = actual
        self.part = part
        super().__init__(
            f"SHA-256 mismatch: expected {expected}, got {actual}; the bytes are kept in "
            f"{part} (delete it, or download again without resuming)"
        )


def closed_error(reason: Any) -> ServerClosedConnection:
    """The error for a close frame: ``reason`` is a trio_websocket ``CloseReason`` or None."""
    code = getattr(reason, "code", None)
    text = getattr(reason, "reason", None)
    cls = _CLOSE_ERRORS.get(code, ServerClosedConnection) if code is not None else None
    return (cls or ServerClosedConnection)(code, text)
