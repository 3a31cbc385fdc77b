"""What every route hands to the one reply function (:func:`slipstream.http.reply.decide_reply`).

A :class:`Representation` is a body, its validators, its representation header fields
and the :class:`RangePolicy` of the API surface that serves it.  The body is either a
:class:`~slipstream.segments.SegmentMap` (files, a local zip: any byte range is a slice
of it) or a :class:`StreamedSource` (a zip of remote objects: the body of one range is
produced while it is sent).
"""

from __future__ import annotations

import functools
import mimetypes
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from slipstream.segments import SegmentMap

from .conditional import Precondition
from .ranges import RangeDecision
from .validators import Validators

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "RangePolicy",
    "Representation",
    "SizedBody",
    "StreamedSource",
    "guess_content_type",
]

DEFAULT_CONTENT_TYPE = "application/octet-stream"

E = TypeVar("E", bound=Exception)
E_co = TypeVar("E_co", bound=Exception, covariant=True)


class SizedBody(Protocol):
    """A reply body of known length (a :class:`~slipstream.send.StreamedBody`)."""

    @property
    def total(self) -> int:
        """Length in bytes."""
        ...


class StreamedSource(Protocol):
    """A representation whose bytes are produced while they are sent.

    ``total`` is its length; ``part(start, stop)`` is the body carrying bytes
    ``[start, stop)`` (made without I/O: the I/O happens when it is sent).
    """

    @property
    def total(self) -> int:
        """Length of the whole representation in bytes."""
        ...

    def part(self, start: int, stop: int) -> SizedBody:
        """The body of bytes ``[start, stop)``."""
        ...


class RangePolicy(Protocol[E_co]):
    """How one API surface answers conditional and ``Range`` requests.

    Two exist: :data:`slipstream.http.reply.RFC9110` (every file reply; nginx's rules)
    and the zip service's seed rules (:class:`slipstream.zip.ranges.ZipStreamRanges`).
    A refusal is an error value of the surface (``E_co``), rendered at its edge.
    ``If-Range`` is not the policy's business: a ``Range`` whose ``If-Range`` does not
    match reaches :meth:`ranges` as no header at all.
    """

    def preconditions(
        self, method: str, headers: Mapping[str, str], validators: Validators
    ) -> Precondition | E_co:
        """``PROCEED``, ``NOT_MODIFIED`` (a 304), or the error for a failed precondition."""
        ...

    def ranges(self, header: str | None, size: int) -> RangeDecision | E_co:
        """``FULL`` (200) or ``PARTIAL`` (206) for ``Range: header``, or the refusal."""
        ...


@dataclass(slots=True)
class Representation(Generic[E]):
    """A representation ready to be served with Range and conditional-request support.

    ``body`` is the whole representation; ``validators`` hold its strong ETag (quoted)
    and its last modification (unix seconds); ``headers`` are its representation header
    fields (``Content-Disposition``, checksums, ``Cache-Control``), sent with every 200
    and 206 after the ones the reply function writes.  ``on_done`` releases what the
    body refers to (open files) and is called exactly once by whoever sends it.
    """

    body: SegmentMap | StreamedSource
    validators: Validators
    policy: RangePolicy[E]
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
