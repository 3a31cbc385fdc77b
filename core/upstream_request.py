"""The head of a plain upstream ``GET``, written from a bytes template instead of by h11
(sans-IO): :func:`request_head` gives byte for byte what h11 writes, or None for anything
outside the plain subset, which h11 then writes (tested equal on generated heads in
``tests/core/test_upstream_heads.py``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final, NamedTuple

__all__ = ["PlannedRequest", "RangeTemplate", "request_head"]

_TOKEN: Final = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
_VALUE: Final = re.compile(rb"(?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?")
_TARGET: Final = re.compile(rb"/[\x21-\x7e]*")
_OWN_FRAMING: Final = frozenset({b"content-length", b"transfer-encoding", b"expect", b"upgrade"})


class PlannedRequest(NamedTuple):
    """A plain ``GET`` ready to write: to ``host:port``, the bytes ``data``, for the
    checked ``url``; its answer awaited at most ``read_timeout`` seconds per wait."""

    host: str
    port: int
    data: bytes
    url: str
    read_timeout: float


def request_head(
    method: str, target: bytes, headers: Sequence[tuple[bytes, bytes]]
) -> bytes | None:
    """The head of a bodiless ``GET``, byte for byte as h11 writes it, or None when the
    request is outside the plain subset written here (another method, a target or a
    header h11 would refuse or treat specially, no Host or two): h11 writes that one.

    Header names must be tokens and values visible ASCII or obs-text with single runs of
    spaces or tabs inside (no CR, LF, NUL, no leading or trailing blanks).
    """
    if method != "GET" or _TARGET.fullmatch(target) is None:
        return None
    parts = [b"GET ", target, b" HTTP/1.1\r\n", b""]
    host = False
    for name, value in headers:
        if _TOKEN.fullmatch(name) is None or _VALUE.fullmatch(value) is None:
            return None
        lower = name.lower()
        if lower == b"host":  # h11 writes Host first
            if host:
                return None
            parts[3] = b"%s: %s\r\n" % (name, value)
            host = True
        elif lower in _OWN_FRAMING:
            return None
        else:
            parts += (name, b": ", value, b"\r\n")
    if not host:
        return None
    parts.append(b"\r\n")
    return b"".join(parts)


class RangeTemplate:
    """The heads of plain GET requests that differ only in their target and a last header
    ``Range: bytes=first-last``, from a template checked once (sans-IO): each head is
    what :func:`request_head` gives for ``headers`` followed by that ``Range``, at the
    cost of one format instead of a check of every header.  :meth:`of` is None where
    :func:`request_head` would be."""

    __slots__ = ("_fields",)

    _START: Final = b"GET / HTTP/1.1\r\n"

    def __init__(self, fields: bytes) -> None:
        self._fields = fields

    @classmethod
    def of(cls, headers: Sequence[tuple[bytes, bytes]]) -> RangeTemplate | None:
        """The template for ``headers`` (Host among them; no Range), or None."""
        names = {name.lower() for name, _ in headers}
        if b"range" in names:
            return None
        head = request_head("GET", b"/", headers)
        if head is None:
            return None
        return cls(head[len(cls._START) : -2])

    def head(self, target: bytes, first: int, last: int) -> bytes | None:
        """The head asking ``target`` for bytes ``first`` to ``last`` (None: a target
        :func:`request_head` refuses)."""
        if _TARGET.fullmatch(target) is None:
            return None
        return b"GET %s HTTP/1.1\r\n%sRange: bytes=%d-%d\r\n\r\n" % (
            target,
            self._fields,
            first,
            last,
        )
