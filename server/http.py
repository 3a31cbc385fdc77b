"""Request and response values passed between the connection loop and the routes."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from slipstream.segments import SegmentMap
from slipstream.send import StreamedBody

REASONS: Mapping[int, bytes] = {
    100: b"Continue",
    200: b"OK",
    202: b"Accepted",
    204: b"No Content",
    206: b"Partial Content",
    303: b"See Other",
    304: b"Not Modified",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    411: b"Length Required",
    412: b"Precondition Failed",
    413: b"Content Too Large",
    414: b"URI Too Long",
    416: b"Range Not Satisfiable",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
}


@dataclass(slots=True)
class Request:
    """One parsed HTTP request.

    ``headers`` has lower-case names; repeated fields are joined with ", ".
    ``query`` maps each parameter to all its values (blank values kept).
    """

    method: str
    target: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    client: str = ""
    body: bytes = b""
    route: str = "none"
    """The pattern of the route that took the request (set by the router: ``/api/download``,
    ``/s/*`` for a prefix, ``/{dir}?download`` for a query route); ``none`` until one does."""

    def arg(self, name: str) -> str | None:
        """The first value of query parameter ``name``, or None when absent."""
        values = self.query.get(name)
        return values[0] if values else None


@dataclass(slots=True)
class Response:
    """A reply: status, headers and a body (bytes, a SegmentMap streamed from files, or a
    :class:`~slipstream.send.StreamedBody` produced while it is sent).

    ``on_done`` is called exactly once after the body was sent (or the send failed), to
    release open files.  ``close_connection`` sends ``Connection: close`` and ends the
    connection after this reply.
    """

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: SegmentMap | StreamedBody | bytes = b""
    on_done: Callable[[], None] | None = None
    close_connection: bool = False

    @property
    def content_length(self) -> int:
        """Length of the body in bytes."""
        return len(self.body) if isinstance(self.body, bytes) else self.body.total

    def release(self) -> None:
        """Run ``on_done`` once (idempotent)."""
        on_done, self.on_done = self.on_done, None
        if on_done is not None:
            on_done()


def json_response(
    status: int, payload: Any, headers: list[tuple[str, str]] | None = None
) -> Response:
    """A JSON reply with the right Content-Type.

    Text is sent as UTF-8; a lone surrogate (which a client can send as a JSON
    ``\\ud800`` escape, and an error message may echo) goes out as that same escape.
    """
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    body = text.encode("utf-8", "backslashreplace")
    return Response(
        status,
        [("Content-Type", "application/json"), *(headers or [])],
        body,
    )
