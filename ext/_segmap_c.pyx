# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""SegmentMap, compiled twin of ``_segmap_py`` (same API, same results)."""

from libc.stdlib cimport malloc, free
from libc.stdint cimport int64_t

from slipstream.ext._segtypes import Literal, FileSlice, UpstreamSlice


cdef class SegmentMap:
    """Ordered body segments; ``len(map)`` is the total number of bytes."""

    cdef int64_t *_ends
    cdef Py_ssize_t _count
    cdef int64_t _total
    cdef tuple _segments

    def __cinit__(self):
        self._ends = NULL
        self._count = 0
        self._total = 0

    def __init__(self, segments):
        cdef list kept = []
        cdef Py_ssize_t capacity = 0
        cdef object seq = segments if isinstance(segments, (list, tuple)) else list(segments)
        cdef Py_ssize_t n = len(seq)
        cdef int64_t length
        cdef int64_t total = 0
        cdef Py_ssize_t i = 0
        self._ends = <int64_t *> malloc(max(n, 1) * sizeof(int64_t))
        if self._ends == NULL:
            raise MemoryError()
        for segment in seq:
            length = segment.length
            if length < 0:
                raise ValueError("segment length must be >= 0")
            if length == 0:
                continue
            total += length
            kept.append(segment)
            self._ends[i] = total
            i += 1
        self._count = i
        self._total = total
        self._segments = tuple(kept)

    def __dealloc__(self):
        if self._ends != NULL:
            free(self._ends)

    def __len__(self):
        return self._total

    @property
    def total(self):
        """Total length in bytes."""
        return self._total

    @property
    def segments(self):
        """The non-empty segments, in order."""
        return self._segments

    cdef Py_ssize_t _index(self, int64_t offset) noexcept:
        # first index whose end > offset (bisect_right over ends)
        cdef Py_ssize_t lo = 0, hi = self._count, mid
        while lo < hi:
            mid = (lo + hi) >> 1
            if self._ends[mid] <= offset:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def locate(self, offset):
        """Return ``(index, offset_within_segment)`` of the segment holding byte ``offset``."""
        if offset < 0 or offset >= self._total:
            raise IndexError(f"offset {offset} outside 0..{self._total}")
        cdef int64_t off = offset
        cdef Py_ssize_t index = self._index(off)
        cdef int64_t start = self._ends[index - 1] if index else 0
        return index, off - start

    def slice(self, start, stop):
        """Sub-segments covering bytes ``[start, stop)``; literals stay views (no copy)."""
        if start < 0 or stop > self._total or start > stop:
            raise IndexError(f"range {start}..{stop} outside 0..{self._total}")
        cdef list out = []
        if start == stop:
            return out
        cdef int64_t a = start
        cdef int64_t remaining = stop - start
        cdef Py_ssize_t index = self._index(a)
        cdef int64_t seg_start = self._ends[index - 1] if index else 0
        cdef int64_t inner = a - seg_start
        cdef int64_t seg_len, take
        while remaining > 0:
            seg_len = self._ends[index] - (self._ends[index - 1] if index else 0)
            take = seg_len - inner
            if take > remaining:
                take = remaining
            segment = self._segments[index]
            if inner == 0 and take == seg_len:
                out.append(segment)
            else:
                out.append(segment.sub(inner, take))
            remaining -= take
            inner = 0
            index += 1
        return out
