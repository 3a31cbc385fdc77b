"""What every route hands to the file-reply logic: a body plus its metadata."""

from __future__ import annotations

import functools
import mimetypes
from collections.abc import Callable
from dataclasses import dataclass, field

from slipstream.segments import SegmentMap

DEFAULT_CONTENT_TYPE = "application/octet-stream"


@dataclass(slots=True)
class Representation:
    """A representation ready to be served with Range and conditional-request support.

    ``body`` is the full representation as a SegmentMap; ``etag`` is strong and quoted;
    ``last_modified`` is in unix seconds.  ``on_done`` releases what the body refers to
    (open files) and is called exactly once by whoever sends it.
    """

    body: SegmentMap
    etag: str
    last_modified: int
    content_type: str = DEFAULT_CONTENT_TYPE
    headers: list[tuple[str, str]] = field(default_factory=list)
    on_done: Callable[[], None] | None = None

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
