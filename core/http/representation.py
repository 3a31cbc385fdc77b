"""What every route hands to the file-reply logic: a body plus its metadata."""

from __future__ import annotations

import functools
import mimetypes
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

from slipstream.segments import SegmentMap

DEFAULT_CONTENT_TYPE = "application/octet-stream"


@dataclass(slots=True)
class Download:
    """A representation ready to be served with Range and conditional-request support.

    ``body`` is the full representation as a SegmentMap; ``etag`` is strong and quoted;
    ``last_modified`` is in unix seconds.  ``close`` releases what the body refers to
    (open files) and is called exactly once by whoever sends it.
    """

    body: SegmentMap
    etag: str
    last_modified: int
    content_type: str = DEFAULT_CONTENT_TYPE
    headers: list[tuple[str, str]] = field(default_factory=list)
    close: Callable[[], None] | None = None

    @property
    def size(self) -> int:
        """Total length of the representation in bytes."""
        return self.body.total


@functools.lru_cache(maxsize=4096)
def guess_content_type(name: str) -> str:
    """MIME type from the file extension, ``application/octet-stream`` when unknown."""
    kind, encoding = mimetypes.guess_type(name, strict=False)
    if kind is None or encoding is not None:
        return DEFAULT_CONTENT_TYPE
    return kind


def content_disposition(filename: str, disposition: str = "attachment") -> str:
    """``attachment; filename="<name>"``, plus ``filename*=UTF-8''...`` when needed.

    The quoted ``filename`` is the real name, sent as UTF-8 (the header writer encodes
    every value as UTF-8): that is the form ``curl -O -J``, wget and older clients read,
    and they ignore ``filename*``.  Only what a quoted string cannot carry safely is
    replaced with ``_``: ``"`` and ``\\`` (curl does not undo backslash escapes) and
    control characters (C0, DEL, C1); a lone surrogate (an undecodable byte of an OS
    file name) becomes U+FFFD in both forms.  ``filename*`` (RFC 8187, percent-encoded
    UTF-8) carries the exact name and is added whenever the name is not plain ASCII or
    something was replaced, for clients that prefer it (browsers).
    """
    name = "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in filename)
    quoted = "".join("_" if ch in '"\\' or _is_control(ch) else ch for ch in name)
    value = f'{disposition}; filename="{quoted}"'
    if quoted != name or not name.isascii():
        value += f"; filename*=UTF-8''{quote(name, safe='')}"
    return value


def _is_control(ch: str) -> bool:
    """C0 controls, DEL and C1 controls (never valid inside a header value)."""
    code = ord(ch)
    return code < 0x20 or 0x7F <= code < 0xA0
