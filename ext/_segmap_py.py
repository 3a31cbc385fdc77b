"""SegmentMap, pure-Python reference twin (the spec for ``_segmap_c``).

A SegmentMap is an immutable ordered list of segments with cumulative offsets, so
any byte range maps to the sub-segments covering it in O(log n + k) without copying.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable

from slipstream.ext._segtypes import Segment


class SegmentMap:
    """Ordered body segments; ``len(map)`` is the total number of bytes."""

    __slots__ = ("_ends", "_segments", "_total")

    def __init__(self, segments: Iterable[Segment]) -> None:
        kept: list[Segment] = []
        ends: list[int] = []
        total = 0
        for segment in segments:
            length = segment.length
            if length < 0:
                raise ValueError("segment length must be >= 0")
            if length == 0:
                continue
            total += length
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
        if offset < 0 or offset >= self._total:
            raise IndexError(f"offset {offset} outside 0..{self._total}")
        index = bisect_right(self._ends, offset)
        start = self._ends[index - 1] if index else 0
        return index, offset - start

    def slice(self, start: int, stop: int) -> list[Segment]:
        """Sub-segments covering bytes ``[start, stop)``; literals stay views (no copy)."""
        if start < 0 or stop > self._total or start > stop:
            raise IndexError(f"range {start}..{stop} outside 0..{self._total}")
        if start == stop:
            return []
        index, inner = self.locate(start)
        out: list[Segment] = []
        remaining = stop - start
        segments = self._segments
        while remaining > 0:
            segment = segments[index]
            take = min(segment.length - inner, remaining)
            out.append(segment.sub(inner, take))
            remaining -= take
            inner = 0
            index += 1
        return out
