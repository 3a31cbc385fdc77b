"""The websocket packet protocol at ``/ws``: packet types, statuses, close codes (sans-IO).

One table for both ends: the server (``slipstream.server.ws``) and the client
(``slipstream.client``) name every number through this module, so none is written twice.

Each text frame carries one JSON object.  A request has an integer ``type`` and an
integer ``id`` that its reply echoes:

- :attr:`PacketType.INITIALIZE` ``{"type": 1, "id", "token", "application"?}``: must come
  first; answered with :attr:`Status.OK` or :attr:`Status.NOT_AUTHORIZED`;
- :attr:`PacketType.CREATE_DOWNLOAD_URL` ``{"type": 7, "id", "filename", "resume_at"}``:
  answered with ``presigned_url``, ``file_size``, ``file_checksum`` and a status;
- :attr:`PacketType.SUBSCRIBE_DOWNLOADS` ``{"type": 20, "id"}``: answered with a status,
  then remote-download progress events ``{"event": "download", ...}`` are pushed.

A violation closes the connection with a :class:`CloseCode` and its reason
(:data:`CLOSE_REASONS`).  The enums are ``IntEnum``: they compare equal to, format as,
and JSON-encode as their plain numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

__all__ = [
    "CLOSE_REASONS",
    "CloseCode",
    "CreateDownloadUrl",
    "Initialize",
    "InvalidPacket",
    "PacketType",
    "Status",
    "SubscribeDownloads",
    "decode_packet",
    "encode",
    "parse_packet",
    "rate_limited_reason",
]


class PacketType(IntEnum):
    """The ``type`` of a request packet."""

    INITIALIZE = 1
    CREATE_DOWNLOAD_URL = 7
    SUBSCRIBE_DOWNLOADS = 20


class Status(IntEnum):
    """The ``status`` of a reply; :attr:`constant` is the protocol's name for it."""

    OK = 1
    NOT_AUTHORIZED = 3
    INTERNAL_SERVER_ERROR = 6
    FILE_NOT_FOUND = 300
    FILE_INVALID_RESUME_OFFSET = 303

    @property
    def constant(self) -> str:
        """``Ok``, ``NotAuthorized``, ``InternalServerError``, ``FileNotFound``, ..."""
        return "".join(word.capitalize() for word in self.name.split("_"))


class CloseCode(IntEnum):
    """Close codes: the protocol's (4xxx) and the two RFC 6455 ones the server sends."""

    NORMAL = 1000
    """The connection stayed idle too long."""
    GOING_AWAY = 1001
    """The server is shutting down."""
    NOT_INITIALIZED = 4200
    """A packet before a successful Initialize, or no Initialize in time."""
    RATE_LIMIT_HIT = 4201
    """The client IP sent too many packets, or is still blocked."""
    INVALID_REQUEST_BODY = 4302
    """Not JSON, not an object, an unknown type, a missing or mistyped field."""
    UNSUPPORTED_DATA = 4304
    """A binary frame."""


CLOSE_REASONS: dict[CloseCode, str] = {
    CloseCode.NOT_INITIALIZED: "connection is not initialized",
    CloseCode.RATE_LIMIT_HIT: "rate limit hit",
    CloseCode.INVALID_REQUEST_BODY: "invalid request body",
    CloseCode.UNSUPPORTED_DATA: "received unsupported data",
}
"""The reason sent with each protocol close code (4201 also has :func:`rate_limited_reason`)."""


def rate_limited_reason(seconds_left: int) -> str:
    """The 4201 reason for a client IP that is still blocked for ``seconds_left``."""
    return f"rate limited, {seconds_left} seconds left"


# --- request packets -----------------------------------------------------------------


class InvalidPacket(Exception):
    """The packet does not match its schema (close with 4302)."""


@dataclass(frozen=True, slots=True)
class Initialize:
    """Type 1."""

    id: int
    token: str
    application: str | None


@dataclass(frozen=True, slots=True)
class CreateDownloadUrl:
    """Type 7."""

    id: int
    filename: str
    resume_at: int


@dataclass(frozen=True, slots=True)
class SubscribeDownloads:
    """Type 20: push remote-download progress events to this connection."""

    id: int


def decode_packet(text: str) -> dict[str, Any]:
    """The JSON object in ``text`` with an integer ``type``, or :class:`InvalidPacket`."""
    try:
        packet = json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidPacket("not JSON") from None
    if not isinstance(packet, dict) or not _is_int(packet.get("type")):
        raise InvalidPacket("not a packet")
    return packet


def parse_packet(packet: dict[str, Any]) -> Initialize | CreateDownloadUrl | SubscribeDownloads:
    """Validate a decoded packet's fields for its type (unknown types are invalid).

    ``id`` and ``resume_at`` must be integers (not booleans); extra fields are ignored.
    """
    kind = packet["type"]
    ident = _field(packet, "id", int)
    if kind == PacketType.INITIALIZE:
        application = packet.get("application")
        if application is not None and not isinstance(application, str):
            raise InvalidPacket("application")
        return Initialize(ident, _field(packet, "token", str), application)
    if kind == PacketType.CREATE_DOWNLOAD_URL:
        return CreateDownloadUrl(
            ident, _field(packet, "filename", str), _field(packet, "resume_at", int)
        )
    if kind == PacketType.SUBSCRIBE_DOWNLOADS:
        return SubscribeDownloads(ident)
    raise InvalidPacket(f"unknown packet type {kind}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _field(packet: dict[str, Any], name: str, kind: type[Any]) -> Any:
    value = packet.get(name)
    if (kind is int and not _is_int(value)) or not isinstance(value, kind):
        raise InvalidPacket(name)
    return value


def encode(reply: dict[str, Any]) -> str:
    """One reply packet as compact JSON text."""
    return json.dumps(reply, separators=(",", ":"))
