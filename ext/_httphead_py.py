"""A strict HTTP/1.1 request-head parser for the fast path (pure-Python twin of
``_httphead_c``).

:func:`parse_request_head` accepts only a plain subset of what h11 accepts, and for
that subset gives exactly what h11 gives (method, target, version, lower-case header
names with their values, body length).  Anything else it *declines*, and the caller
hands the same bytes, unchanged, to h11, which stays the protocol engine for every
unusual request and every error reply.  Two parsers that disagree are how request
smuggling happens: ``tests/ext/test_httphead.py`` feeds the same bytes to both.

The subset: ``METHOD SP origin-form-target SP HTTP/1.1`` (or ``HTTP/1.0``) and header
lines, every line ending in CRLF (no bare CR nor LF); a method of :data:`METHODS`; a
target of visible ASCII starting with ``/``; header names that are tokens; values of
visible ASCII, obs-text, and spaces or tabs between them; no obs-fold; no
``Transfer-Encoding``, ``Expect`` nor ``Upgrade``; at most one ``Content-Length``, of at
most 18 plain digits; exactly one ``Host`` for HTTP/1.1 (at most one for 1.0); within
the head's byte and field limits.

:func:`parse_response_head` does the same for an upstream's response head (h11's client
side stays the engine for everything else).  Its subset: ``HTTP/1.1 SP status SP
reason`` with a status from 200 to 599 other than 204 and 304 (those, and 1xx, are
h11's), a reason of visible ASCII, obs-text, spaces and tabs; header lines as for
requests; exactly one ``Content-Length`` (the body is framed by it) and no
``Transfer-Encoding``.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

__all__ = [
    "DECLINE",
    "METHODS",
    "NEED_MORE",
    "RequestHead",
    "ResponseHead",
    "header_lines",
    "parse_request_head",
    "parse_response_head",
]

NEED_MORE: Final = 0
"""The head is not complete yet (and not over the limit): read more, ask again."""
DECLINE: Final = -1
"""Not in the fast path's subset: hand the bytes to h11."""
METHODS: Final = frozenset({b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS"})
"""The methods the fast path takes (those the routes serve)."""


class RequestHead(NamedTuple):
    """A request head the fast path accepted."""

    method: bytes
    target: bytes
    version: bytes
    """``b"1.1"`` or ``b"1.0"``, as h11 gives it."""
    headers: list[tuple[bytes, bytes]]
    """``(lower-case name, value)`` in order, the value without surrounding spaces/tabs."""
    content_length: int
    """The body's length (0 without ``Content-Length``)."""
    end: int
    """The offset just past the head's blank line (where the body, or the next
    pipelined request, starts)."""


class ResponseHead(NamedTuple):
    """A response head the fast path accepted (always framed by ``Content-Length``)."""

    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    """``(lower-case name, value)`` in order, the value without surrounding spaces/tabs."""
    content_length: int
    end: int
    """The offset just past the head's blank line (where the body starts)."""


_HEAD_END: Final = re.compile(rb"\n\r?\n")  # where h11 ends a head
_TOKEN: Final = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
_TARGET_BYTES: Final = bytes(range(0x21, 0x7F))
_VALUE_BYTES: Final = b" \t" + bytes(range(0x21, 0x7F)) + bytes(range(0x80, 0x100))
_DECLINED: Final = frozenset({b"transfer-encoding", b"expect", b"upgrade"})
_VERSIONS: Final = {b"HTTP/1.1": b"1.1", b"HTTP/1.0": b"1.0"}
MAX_LENGTH_DIGITS: Final = 18


def parse_request_head(
    data: bytes | bytearray, start: int, max_head: int, max_fields: int
) -> RequestHead | int:
    """The request head at ``data[start:]``, :data:`NEED_MORE` or :data:`DECLINE`.

    ``max_head`` bounds the head's bytes (from ``start`` to the end of its blank line)
    and ``max_fields`` its header fields: beyond either, or without a blank line within
    ``max_head`` bytes, it declines (and h11 gives the error reply).
    """
    lines = _head_lines(data, start, max_head)
    if isinstance(lines, int):
        return lines
    end = start + sum(len(line) + 2 for line in lines) + 2
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        return DECLINE
    method, target, version_text = parts
    version = _VERSIONS.get(version_text)
    if method not in METHODS or version is None:
        return DECLINE
    if target[:1] != b"/" or target.translate(None, _TARGET_BYTES):
        return DECLINE
    fields = _fields(lines, max_fields, _DECLINED)
    if fields is None:
        return DECLINE
    headers, hosts, length = fields
    if hosts > 1 or (hosts == 0 and version == b"1.1"):
        return DECLINE
    return RequestHead(method, target, version, headers, max(length, 0), end)


def _head_lines(data: bytes | bytearray, start: int, max_head: int) -> list[bytes] | int:
    """The lines of the head at ``data[start:]`` (CRLF-terminated each, blank line
    dropped), or NEED_MORE / DECLINE; the head's end is ``start`` + their length + 2."""
    if start < 0:
        raise ValueError("start must not be negative")
    if start >= len(data):
        return NEED_MORE
    if data[start] < 0x21:  # a leading empty line, or worse: h11's to judge
        return DECLINE
    found = _HEAD_END.search(data, start)
    if found is None:
        return DECLINE if len(data) - start > max_head else NEED_MORE
    end = found.end()
    if end - start > max_head:
        return DECLINE
    head = bytes(data[start:end])
    crlf = head.count(b"\r\n")
    if head.count(b"\n") != crlf or head.count(b"\r") != crlf:
        return DECLINE  # a bare LF or CR
    return head[:-4].split(b"\r\n")


def _fields(
    lines: list[bytes], max_fields: int, declined: frozenset[bytes]
) -> tuple[list[tuple[bytes, bytes]], int, int] | None:
    """The header lines after the first: ``(headers, Host count, Content-Length or -1)``,
    or None when one is outside the subset."""
    if len(lines) - 1 > max_fields:
        return None
    headers: list[tuple[bytes, bytes]] = []
    hosts = 0
    length = -1
    for line in lines[1:]:
        colon = line.find(b":")
        if colon <= 0 or _TOKEN.fullmatch(line, 0, colon) is None:
            return None
        name = line[:colon].lower()
        value = line[colon + 1 :].strip(b" \t")
        if value.translate(None, _VALUE_BYTES):
            return None
        if name in declined:
            return None
        if name == b"host":
            hosts += 1
        elif name == b"content-length":
            if length >= 0 or not value.isdigit() or len(value) > MAX_LENGTH_DIGITS:
                return None
            length = int(value)
        headers.append((name, value))
    return headers, hosts, length


_STATUS_LINE: Final = re.compile(rb"HTTP/1\.1 ([2-5][0-9][0-9]) ([\t \x21-\x7e\x80-\xff]*)")
_RESPONSE_DECLINED: Final = frozenset({b"transfer-encoding"})


def parse_response_head(
    data: bytes | bytearray, start: int, max_head: int, max_fields: int
) -> ResponseHead | int:
    """The response head at ``data[start:]``, :data:`NEED_MORE` or :data:`DECLINE`
    (limits as for :func:`parse_request_head`; beyond them h11 gives the error)."""
    lines = _head_lines(data, start, max_head)
    if isinstance(lines, int):
        return lines
    status_line = _STATUS_LINE.fullmatch(lines[0])
    if status_line is None:
        return DECLINE
    status = int(status_line[1])
    if status in (204, 304):
        return DECLINE
    fields = _fields(lines, max_fields, _RESPONSE_DECLINED)
    if fields is None:
        return DECLINE
    headers, _hosts, length = fields
    if length < 0:
        return DECLINE  # close-delimited: h11 frames it
    end = start + sum(len(line) + 2 for line in lines) + 2
    return ResponseHead(status, status_line[2], headers, length, end)


_FIELD_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FRAMING_FIELDS: Final = frozenset({"content-length", "transfer-encoding", "connection"})
_UNSAFE_VALUE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def header_lines(date: str, headers: list[tuple[str, str]]) -> bytes:
    """``Date: <date>\\r\\n`` and a ``Name: value\\r\\n`` line per header, in UTF-8 (RFC
    9110 5.5 lets values carry such octets as opaque data).

    ``ValueError`` for a name that is not a token or is a framing field (the connection
    writes ``Content-Length`` and ``Connection`` itself), checked for every name first;
    then for a value with a control character other than tab (CR/LF injection), naming
    the first such header; ``UnicodeEncodeError`` for a lone surrogate in a value.
    """
    for name, _ in headers:
        if not _FIELD_NAME.fullmatch(name) or name.lower() in _FRAMING_FIELDS:
            raise ValueError(f"refusing response header name {name!r}")
    for name, value in headers:
        if _UNSAFE_VALUE.search(value):
            raise ValueError(f"refusing control characters in header {name}")
    lines = [f"Date: {date}\r\n"]
    lines += [f"{name}: {value}\r\n" for name, value in headers]
    return "".join(lines).encode("utf-8")
