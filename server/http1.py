"""HTTP/1.1 heads, both ways, for the connection loop (sans-IO: no Trio, no socket).

A request comes from h11's event or, on the fast path, from the extension's strict
parser (:func:`slipstream.ext.parse_request_head`, proven equal to h11 on everything it
takes); either way :func:`request_of` makes the same :class:`Request` of it.  A response
head is written here for both paths: the status line and the framing fields
(``Content-Length``, ``Connection: close``), then the other fields, checked.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from urllib.parse import parse_qs, unquote, urlsplit

from slipstream.ext import RequestHead, header_lines
from slipstream.http.dates import http_date

from .errors import StatusError
from .http import REASONS, Request

__all__ = [
    "WORKER_HEADER",
    "WORKER_HEADER_ENV",
    "ProtocolFailure",
    "asks_to_close",
    "header_block",
    "merged_headers",
    "parse_query",
    "request_of",
    "response_head",
    "reveal_worker",
    "worker_fields",
]


class ProtocolFailure(StatusError):
    """The request cannot be served; reply with ``status`` and close the connection.

    ``request`` is set once the request line parsed, so the reply can take the shape of
    the API surface the request was for.
    """

    def __init__(self, status: int, message: str, request: Request | None = None) -> None:
        super().__init__(status, message)
        self.request = request


def merged_headers(fields: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Lower-case names to values (latin-1), repeated fields joined with ``", "``."""
    merged: dict[str, str] = {}
    for name, value in fields:
        key = name.decode("latin-1")
        text = value.decode("latin-1")
        merged[key] = f"{merged[key]}, {text}" if key in merged else text
    return merged


def request_of(method: bytes, target: bytes, headers: dict[str, str], client: str) -> Request:
    """The request of a parsed head: path percent-decoded once (strict UTF-8), query parsed.

    Raises :class:`ProtocolFailure` (400) for a target that is not valid UTF-8 once
    decoded, or not an absolute path.
    """
    text = target.decode("ascii")
    if text.startswith(("http://", "https://")):
        # absolute-form (RFC 9112 3.2.2): servers must accept it; keep path and query
        parts = urlsplit(text)
        text = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    path_part, _, query_string = text.partition("?")
    try:
        path = unquote(path_part, errors="strict") if "%" in path_part else path_part
        query = parse_query(query_string) if query_string else {}
    except UnicodeDecodeError as exc:
        raise ProtocolFailure(400, "request target is not valid UTF-8") from exc
    if not path.startswith("/"):
        raise ProtocolFailure(400, "request target must be an absolute path")
    return Request(
        method=method.decode("ascii"),
        target=text,
        path=path,
        query=query,
        headers=headers,
        client=client,
    )


def parse_query(query_string: str) -> dict[str, list[str]]:
    """``parse_qs(query_string, keep_blank_values=True, errors="strict")``, with a fast
    path for a query that has nothing to decode (no ``%``, no ``+``): then it is only
    split at ``&`` and the first ``=`` (a property test holds the two equal)."""
    if "%" in query_string or "+" in query_string:
        return parse_qs(query_string, keep_blank_values=True, errors="strict")
    query: dict[str, list[str]] = {}
    for pair in query_string.split("&"):
        if pair:
            name, _, value = pair.partition("=")
            values = query.get(name)
            if values is None:
                query[name] = [value]
            else:
                values.append(value)
    return query


def asks_to_close(head: RequestHead) -> bool:
    """Whether the client wants the connection closed after this request, as h11 decides
    it: HTTP/1.0, or ``close`` among the ``Connection`` options."""
    if head.version != b"1.1":
        return True
    return any(
        option.strip().lower() == b"close"
        for name, value in head.headers
        if name == b"connection"
        for option in value.split(b",")
    )


def response_head(
    status: int, length: int | None, close: bool, headers: list[tuple[str, str]]
) -> bytes:
    """The head of a response: what h11 writes for the status line and framing fields
    (``length`` None: no ``Content-Length``, as for 204 and 304), then
    :func:`header_block`."""
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b""))]
    if length is not None:
        lines.append(b"Content-Length: %d\r\n" % length)
    if close:
        lines.append(b"Connection: close\r\n")
    lines.append(header_block(headers))
    lines.append(b"\r\n")
    return b"".join(lines)


WORKER_HEADER_ENV = "SLIPSTREAM_TEST_WORKER_HEADER"
"""Set to ``1`` in a worker's environment, every reply says which worker made it (tests)."""
WORKER_HEADER = "X-Slipstream-Worker"
_worker_line = b""


def reveal_worker(worker: str) -> None:
    """Add ``X-Slipstream-Worker: worker`` to every reply of this process (test mode:
    ``slipstream serve --workers`` calls it when ``$SLIPSTREAM_TEST_WORKER_HEADER`` is 1)."""
    global _worker_line
    _worker_line = f"{WORKER_HEADER}: {worker}\r\n".encode("ascii")


def worker_fields() -> list[tuple[bytes, bytes]]:
    """The worker header as a field list (the websocket handshake's), empty unless
    :func:`reveal_worker` was called."""
    if not _worker_line:
        return []
    name, _, value = _worker_line.rstrip(b"\r\n").partition(b": ")
    return [(name, value)]


def header_block(headers: list[tuple[str, str]]) -> bytes:
    """``Date`` and the reply's other header lines, checked (no framing field, no CR/LF
    injection) and written by the extension (:func:`slipstream.ext.header_lines`)."""
    if _worker_line:
        return header_lines(_http_date_now(), headers) + _worker_line
    return header_lines(_http_date_now(), headers)


def _http_date_now() -> str:
    """The ``Date`` header value (``http_date`` memoises, so one format a second)."""
    return http_date(int(time.time()))
