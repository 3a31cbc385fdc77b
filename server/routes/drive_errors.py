"""Drive-API errors, request-body parsing and parameter checks.

Errors in this API are ``{"code": "NotFound.File", "message": "..."}`` instead of the
server's usual ``{"error": ...}``.  :class:`DriveError` carries one; :func:`drive_error`
turns any :class:`~slipstream.errors.SlipstreamError` raised by storage or auth into
the matching drive code (the table is in :mod:`slipstream.server.routes.drive`), and
:func:`render_drive_error`, the surface's renderer, is the one place they become replies.

The ``param_*`` helpers read one field of a parsed JSON body: JSON ``null`` counts as
absent, and a wrong type or value raises ``400 InvalidParameter.<Field>``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

from slipstream.errors import (
    FileNotFound,
    FileNotReadable,
    IsADirectory,
    NotARegularFile,
    PathNotAllowed,
    SlipstreamError,
    Unauthorized,
)

from ..errors import error_headers
from ..http import REASONS, Response, json_response

__all__ = [
    "DriveError",
    "decode_marker",
    "drive_error",
    "encode_marker",
    "invalid",
    "param_content_type",
    "param_file_name",
    "param_int",
    "param_str",
    "parse_body",
    "render_drive_error",
]

MAX_TEXT_PARAM = 4096
"""Longest accepted string parameter, in characters (paths are limited again by storage)."""

_CONTENT_TYPE = re.compile(
    r"[!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+(?:[ \t]*;[ \t]*[\x20-\x7e]*)?"
)


class DriveError(SlipstreamError):
    """A drive-style error: HTTP ``status``, a dotted ``code`` and a ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, code=code, status=status)

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


def invalid(field: str, message: str) -> DriveError:
    """``400 InvalidParameter.<Field>`` (``file_id`` -> ``FileId``)."""
    camel = "".join(part.capitalize() for part in field.split("_"))
    return DriveError(400, f"InvalidParameter.{camel}", message)


def drive_error(error: SlipstreamError, *, not_found: str = "NotFound.File") -> DriveError:
    """The drive error for a storage / auth error; ``not_found`` names the missing thing.

    A :class:`DriveError` is itself."""
    if isinstance(error, DriveError):
        return error
    if isinstance(error, Unauthorized):
        return DriveError(401, "AccessTokenInvalid", "missing or invalid access token")
    if isinstance(error, PathNotAllowed):
        return DriveError(403, "Forbidden.PathNotAllowed", error.message)
    if isinstance(error, IsADirectory):
        return DriveError(403, "Forbidden.IsFolder", error.message)
    if isinstance(error, NotARegularFile):
        return DriveError(403, "Forbidden.NotRegularFile", error.message)
    if isinstance(error, FileNotReadable):
        return DriveError(403, "Forbidden.FileNotReadable", error.message)
    if isinstance(error, FileNotFound):
        return DriveError(404, not_found, error.message)
    return DriveError(error.status, generic_code(error.status), error.message)


def generic_code(status: int) -> str:
    """The drive code of an error known only by its status.

    ``InvalidParameter`` (400), ``AccessTokenInvalid`` (401), ``Forbidden`` (403),
    ``NotFound`` (404), ``InternalError`` (500 and unknown statuses), else the
    status's reason phrase in CamelCase: ``MethodNotAllowed``, ``RequestTimeout``,
    ``ContentTooLarge``, ``RequestHeaderFieldsTooLarge``, ``ServiceUnavailable``...
    """
    named = {400: "InvalidParameter", 401: "AccessTokenInvalid", 403: "Forbidden", 404: "NotFound"}
    if status in named:
        return named[status]
    reason = REASONS.get(status)
    if status == 500 or reason is None:
        return "InternalError"
    return "".join(word.capitalize() for word in reason.decode("ascii").split())


def render_drive_error(error: SlipstreamError) -> Response:
    """Any error as a drive reply ``{"code", "message"}`` (the ``/v2/`` error shape).

    Header fields the status implies (``Allow``, ``WWW-Authenticate`` with a 401,
    ``Content-Range``) come with it, as in every other shape.
    """
    drive = drive_error(error)
    body = {"code": drive.code, "message": drive.message}
    return json_response(drive.status, body, error_headers(error))


def parse_body(body: bytes) -> Mapping[str, Any]:
    """The JSON object in a request body (an empty body is ``{}``)."""
    if not body.strip():
        return {}
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):  # JSONDecodeError, bad UTF-8, too deep
        raise DriveError(400, "InvalidParameter.Body", "request body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise DriveError(400, "InvalidParameter.Body", "request body must be a JSON object")
    return parsed


def param_str(
    params: Mapping[str, Any], name: str, *, required: bool = False, default: str | None = None
) -> str | None:
    """A string field (non-empty, at most :data:`MAX_TEXT_PARAM` characters, no NUL)."""
    value = params.get(name)
    if value is None:
        if required:
            raise invalid(name, f"{name} is required")
        return default
    if not isinstance(value, str):
        raise invalid(name, f"{name} must be a string")
    if not value:
        raise invalid(name, f"{name} must not be empty")
    if len(value) > MAX_TEXT_PARAM or "\x00" in value:
        raise invalid(name, f"{name} is not a valid value")
    return value


def param_int(params: Mapping[str, Any], name: str, *, default: int, low: int, high: int) -> int:
    """An integer field in ``low..high`` (JSON booleans and floats are refused)."""
    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(name, f"{name} must be an integer")
    if not low <= value <= high:
        raise invalid(name, f"{name} must be between {low} and {high}")
    return value


def param_content_type(params: Mapping[str, Any], name: str) -> str | None:
    """A media type usable as a ``Content-Type`` header (``type/subtype[; params]``)."""
    value = param_str(params, name)
    if value is not None and (len(value) > 256 or not _CONTENT_TYPE.fullmatch(value)):
        raise invalid(name, f"{name} is not a valid media type")
    return value


def param_file_name(params: Mapping[str, Any], name: str) -> str | None:
    """A download file name: at most 255 characters, no control characters or slashes."""
    value = param_str(params, name)
    if value is not None and (
        len(value) > 255 or any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in value)
    ):
        raise invalid(name, f"{name} is not a valid file name")
    if value is not None and ("/" in value or "\\" in value):
        raise invalid(name, f"{name} must not contain a path separator")
    return value


def encode_marker(name: str) -> str:
    """The opaque ``next_marker`` for a page that ended at ``name``."""
    return base64.urlsafe_b64encode(name.encode("utf-8")).decode("ascii").rstrip("=")


def decode_marker(marker: str) -> str:
    """The entry name a marker stands for; ``400 InvalidParameter.Marker`` if malformed."""
    try:
        raw = base64.urlsafe_b64decode(marker + "=" * (-len(marker) % 4))
        if encode_marker(raw.decode("utf-8")) != marker:
            raise ValueError("not canonical")
        return raw.decode("utf-8")
    except (ValueError, binascii.Error):
        raise invalid("marker", "marker is not one this server issued") from None
