"""HTTP/1.1 heads, both ways, for the connection loop (sans-IO: no Trio, no socket).

A request comes from h11's event or, on the fast path, from the extension's strict
parser (:func:`slipstream.ext.parse_request_head`, proven equal to h11 on everything it
takes); either way :func:`request_of` makes the same :class:`Request` of it.  A response
head is written here for both paths: the status line and the framing fields
(``Content-Length``, ``Connection: close``), then the other fields, checked.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Final
from urllib.parse import parse_qs, unquote, urlsplit

from slipstream.ext import RequestHead
from slipstream.http.dates import http_date

from .errors import StatusError
from .http import REASONS, Request

__all__ = [
    "ProtocolFailure",
    "asks_to_close",
    "header_block",
    "merged_headers",
    "request_of",
    "response_head",
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
        query = (
            parse_qs(query_string, keep_blank_values=True, errors="strict") if query_string else {}
        )
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


_FRAMING_FIELDS: Final = frozenset({"content-length", "transfer-encoding", "connection"})
_UNSAFE_VALUE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def header_block(headers: list[tuple[str, str]]) -> bytes:
    """``Name: value\r\n`` lines plus ``Date``; refuses CR/LF injection and framing fields.

    Values are sent as UTF-8 (RFC 9110 5.5 lets field values carry such octets as
    opaque data), which is how clients read a quoted ``Content-Disposition`` file name.
    A name is checked once per process (replies use a few names over and over); the
    values of a reply are checked with one search over them all, joined by a tab (which
    a value may hold).
    """
    lines = [f"Date: {_http_date_now()}\r\n"]
    for name, value in headers:
        if name not in _NAMES_SEEN:
            _check_name(name)
        lines.append(f"{name}: {value}\r\n")
    if headers and _UNSAFE_VALUE.search("\t".join(value for _, value in headers)):
        bad = next(name for name, value in headers if _UNSAFE_VALUE.search(value))
        raise ValueError(f"refusing control characters in header {bad}")
    return "".join(lines).encode("utf-8")


_NAMES_SEEN: Final[set[str]] = set()
"""Response header names found valid (at most :data:`_NAMES_KEPT`)."""
_NAMES_KEPT: Final = 1024


def _check_name(name: str) -> None:
    """``ValueError`` unless ``name`` is a token and not a framing field (which the
    connection writes itself); a valid one is remembered."""
    if not _TOKEN.fullmatch(name) or name.lower() in _FRAMING_FIELDS:
        raise ValueError(f"refusing response header name {name!r}")
    if len(_NAMES_SEEN) < _NAMES_KEPT:
        _NAMES_SEEN.add(name)


def _http_date_now() -> str:
    """The ``Date`` header value (``http_date`` memoises, so one format a second)."""
    return http_date(int(time.time()))
