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
    """``attachment; filename="..."`` with an RFC 6266 ``filename*`` when needed.

    The plain ``filename`` is an ASCII fallback (non-ASCII, quotes, backslashes and
    control characters become ``_``); ``filename*`` carries the exact UTF-8 name.
    """
    fallback = "".join(ch if 0x20 <= ord(ch) < 0x7F and ch not in '"\\' else "_" for ch in filename)
    value = f'{disposition}; filename="{fallback}"'
    if fallback != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value
