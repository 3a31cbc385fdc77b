"""``multipart/byteranges`` bodies (RFC 9110 §14.6) as segment maps, without copying.

Each part is a generated header literal followed by the sub-segments of the original body
that cover the range, so a multi-range reply over files or remote objects still goes out
with ``sendfile``/upstream ranges, and ``len(map)`` is its ``Content-Length``.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from slipstream.segments import Literal, Segment, SegmentMap

from .ranges import ByteRange

__all__ = ["build_multipart", "multipart_content_type", "new_boundary"]


def new_boundary() -> str:
    """A random boundary of 20 hex digits (80 bits: it will not occur in the body)."""
    return secrets.token_hex(10)


def multipart_content_type(boundary: str) -> str:
    """The ``Content-Type`` of the whole reply: ``multipart/byteranges; boundary=...``."""
    return f"multipart/byteranges; boundary={boundary}"


def build_multipart(
    body: SegmentMap, ranges: Sequence[ByteRange], content_type: str, boundary: str
) -> SegmentMap:
    """The ``multipart/byteranges`` body holding ``ranges`` of ``body``.

    Layout, per part: ``--BOUNDARY`` CRLF, ``Content-Type`` (omitted when ``content_type``
    is empty) and ``Content-Range`` header lines, an empty line, the range's bytes; parts
    are separated by CRLF and the body ends with CRLF ``--BOUNDARY--`` CRLF.  Raises
    ``ValueError`` for no ranges and ``IndexError`` for a range outside ``body``.
    """
    if not ranges:
        raise ValueError("a multipart/byteranges body needs at least one range")
    size = body.total
    type_line = f"Content-Type: {content_type}\r\n" if content_type else ""
    segments: list[Segment] = []
    delimiter = f"--{boundary}\r\n"
    for byte_range in ranges:
        part = body.slice(byte_range.start, byte_range.stop)  # IndexError outside the body
        head = f"{delimiter}{type_line}Content-Range: {byte_range.content_range(size)}\r\n\r\n"
        segments.append(Literal(head.encode("latin-1")))
        segments.extend(part)
        delimiter = f"\r\n--{boundary}\r\n"
    segments.append(Literal(f"\r\n--{boundary}--\r\n".encode("latin-1")))
    return SegmentMap(segments)
