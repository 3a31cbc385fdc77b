"""Response bodies as segment maps (see ARCHITECTURE.md: "every download is a segment map").

Re-exports the segment kinds and the SegmentMap chosen by :mod:`slipstream.ext`
(compiled twin when available), plus small helpers to build common maps.
"""

from __future__ import annotations

from slipstream.ext import FileSlice, Literal, Segment, SegmentMap, UpstreamSlice

__all__ = ["FileSlice", "Literal", "Segment", "SegmentMap", "UpstreamSlice", "literal_map"]


def literal_map(data: bytes) -> SegmentMap:
    """A SegmentMap holding one literal (an in-memory body)."""
    return SegmentMap([Literal(data)])
