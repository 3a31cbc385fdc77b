"""SegmentMap, pure-Python reference twin (the spec for ``_segmap_c``).

A SegmentMap is an immutable ordered list of segments with cumulative offsets, so
any byte range maps to the sub-segments covering it in O(log n + k) without copying.

Behaviour both twins share (the tests hold them to it):

* zero-length segments are dropped; a negative length is a ``ValueError``;
* lengths and offsets are integers in the sense of ``operator.index`` (``bool`` and
  NumPy integers pass, ``float`` and ``str`` are a ``TypeError``);
* the total is capped at ``2**63 - 1`` bytes (``OverflowError`` beyond);
* an offset or range outside the map is an ``IndexError``;
* the lengths are read once, when the map is built;
* a segment that lies wholly inside a slice is returned as is (the same object);
  only the partial first and last ones are cut with ``segment.sub()``.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from operator import index as _index

from slipstream.ext._segtypes import Segment

MAX_TOTAL = 2**63 - 1
"""The largest total length a SegmentMap can hold (the compiled twin uses int64)."""


class SegmentMap:
    """Ordered body segments; ``len(map)`` is the total number of bytes."""

    __slots__ = ("_ends", "_segments", "_total")

    def __init__(self, segments: Iterable[Segment]) -> None:
        """Build the map from ``segments`` (any iterable); empty segments are dropped."""
        kept: list[Segment] = []
        ends: list[int] = []
        total = 0
        for segment in segments:
            length = segment.length
            if type(length) is not int:
                length = _index(length)
            if length <= 0:
                if length < 0:
                    raise ValueError("segment length must be >= 0")
                continue
            total += length
            if total > MAX_TOTAL:
                raise OverflowError("SegmentMap total exceeds 2**63 - 1 bytes")
            kept.append(segment)
            ends.append(total)
        self._segments: tuple[Segment, ...] = tuple(kept)
        self._ends: list[int] = ends
        self._total = total

    def __len__(self) -> int:
        return self._total

    @property
    def total(self) -> int:
        """Total length in bytes (same as ``len()``, but safe beyond ``sys.maxsize``)."""
        return self._total

    @property
    def segments(self) -> tuple[Segment, ...]:
        """The non-empty segments, in order."""
        return self._segments

    def locate(self, offset: int) -> tuple[int, int]:
        """Return ``(index, offset_within_segment)`` of the segment holding byte ``offset``."""
        if type(offset) is not int:
            offset = _index(offset)
        if offset < 0 or offset >= self._total:
            raise IndexError(f"offset {offset} outside 0..{self._total}")
        ends = self._ends
        index = bisect_right(ends, offset)
        return index, offset - (ends[index - 1] if index else 0)

    def slice(self, start: int, stop: int) -> list[Segment]:
        """Sub-segments covering bytes ``[start, stop)``; literals stay views (no copy)."""
        if type(start) is not int:
            start = _index(start)
        if type(stop) is not int:
            stop = _index(stop)
        if start < 0 or stop > self._total or start > stop:
            raise IndexError(f"range {start}..{stop} outside 0..{self._total}")
        out: list[Segment] = []
        if start == stop:
            return out
        ends = self._ends
        segments = self._segments
        index = bisect_right(ends, start)
        seg_start = ends[index - 1] if index else 0
        inner = start - seg_start
        while True:
            seg_end = ends[index]
            if stop <= seg_end:
                if inner == 0 and stop == seg_end:
                    out.append(segments[index])
                else:
                    out.append(segments[index].sub(inner, stop - seg_start - inner))
                return out
            if inner == 0:
                out.append(segments[index])
            else:
                out.append(segments[index].sub(inner, seg_end - seg_start - inner))
                inner = 0
            seg_start = seg_end
            index += 1
