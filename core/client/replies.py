"""What the server sends back, checked: websocket reply statuses and HTTP download replies.

Each failure becomes the one-line :class:`~slipstream.client.errors.ClientError` the
``slipstream get`` command prints.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from slipstream.http.contentrange import content_range
from slipstream.wsprotocol import Status

from .errors import DownloadFailed, InvalidReply, ProtocolError, status_error

__all__ = ["check_partial", "check_status", "http_error", "one_line"]


def one_line(text: str, limit: int = 300) -> str:
    """``text`` with whitespace runs collapsed, cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def check_status(reply: dict[str, Any], detail: str, details: dict[int, str] | None = None) -> None:
    """Raise the :class:`ProtocolError` for a reply whose status is not 1.

    The message is ``details[status]`` when given, else ``detail``; a reason the server
    adds (``error`` or ``message``) is appended.
    """
    status = reply.get("status")
    if status == Status.OK:
        return
    if not isinstance(status, int) or isinstance(status, bool):
        raise InvalidReply(f"reply without a status: {one_line(json.dumps(reply))}")
    text = (details or {}).get(status, detail)
    reason = reply.get("error") or reply.get("message")
    if isinstance(reason, str) and reason:
        text = f"{text}: {one_line(reason, 200)}"
    cls = status_error(status)
    if cls is None:
        raise ProtocolError(text, status)
    raise cls(text)


def check_partial(reply: httpx.Response, offset: int, size: int, etag: str | None) -> None:
    """A 206 must carry exactly ``offset``..end of the same version of the file."""
    # compared as text: no number in the header needs parsing
    expected = content_range(offset, size, size) if 0 <= offset < size else None
    if expected is None or reply.headers.get("content-range") != expected:
        raise DownloadFailed(
            f"server sent Content-Range {reply.headers.get('content-range')!r} "
            f"for bytes={offset}- of a {size}-byte file",
            206,
        )
    if reply.headers.get("etag") != etag:
        raise DownloadFailed("server sent a 206 for a different version of the file", 206)


def http_error(reply: httpx.Response) -> str:
    """One line for an HTTP error reply (its JSON ``error`` when there is one)."""
    message = ""
    try:
        body = reply.json()
        if isinstance(body, dict):
            message = str(body.get("error") or body.get("message") or "")
    except ValueError:
        message = reply.text[:200]
    detail = f": {one_line(message)}" if message else ""
    return f"download refused with HTTP {reply.status_code}{detail}"
