# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""SegmentMap, compiled twin of ``_segmap_py`` (same API, same results, same errors).

The cumulative end offsets live in a C ``int64_t`` array, so a lookup is a typed
binary search with no Python objects touched until the result is built.
"""

from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.number cimport PyNumber_Index
from libc.stdint cimport INT64_MAX, int64_t
from libc.stdlib cimport free, malloc

from slipstream.ext._segtypes import Literal

MAX_TOTAL = 2**63 - 1
"""The largest total length a SegmentMap can hold."""

cdef object _Literal = Literal


cdef inline object _as_int(object value):
    """``operator.index(value)`` with a fast path for exact ints."""
    if type(value) is int:
        return value
    return PyNumber_Index(value)


cdef inline int64_t _to_int64(object value, int *overflow) except? -1:
    """An exact int as int64; if it does not fit, ``overflow[0]`` is +1/-1 (result -1)."""
    return PyLong_AsLongLongAndOverflow(value, overflow)


cdef int64_t _length_of(object segment) except -1:
    """A segment's length as a validated int64 (>= 0); raises like the Python twin."""
    cdef object value
    cdef int overflow = 0
    cdef int64_t length
    if type(segment) is _Literal:
        # skip the ``length`` property: an exact Literal's length is len(data)
        return len(segment.data)
    # FileSlice / UpstreamSlice keep ``length`` in a slot (a plain int); anything
    # else with a ``length`` works too, validated exactly as the Python twin does
    value = _as_int(segment.length)
    length = _to_int64(value, &overflow)
    if overflow > 0:
        raise OverflowError("SegmentMap total exceeds 2**63 - 1 bytes")
    if overflow < 0 or length < 0:
        raise ValueError("segment length must be >= 0")
    return length


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
        self._segments = ()

    def __init__(self, segments):
        """Build the map from ``segments`` (any iterable); empty segments are dropped."""
        # Always a private copy: a segment's ``length`` cannot resize what we index.
        cdef list seq = list(segments)
        cdef Py_ssize_t n = len(seq)
        cdef Py_ssize_t i, count = 0
        cdef int64_t length
        cdef int64_t total = 0
        cdef int64_t *ends = <int64_t *> malloc((n if n > 0 else 1) * sizeof(int64_t))
        cdef list kept = []
        cdef object segment
        if ends == NULL:
            raise MemoryError()
        try:
            for i in range(n):
                segment = seq[i]
                length = _length_of(segment)
                if length == 0:
                    continue
                if length > INT64_MAX - total:
                    raise OverflowError("SegmentMap total exceeds 2**63 - 1 bytes")
                total += length
                kept.append(segment)
                ends[count] = total
                count += 1
        except BaseException:
            free(ends)
            raise
        if self._ends != NULL:
            free(self._ends)
        self._ends = ends
        self._count = count
        self._total = total
        self._segments = tuple(kept)

    def __dealloc__(self):
        if self._ends != NULL:
            free(self._ends)
            self._ends = NULL

    def __len__(self):
        return self._total

    @property
    def total(self):
        """Total length in bytes (same as ``len()``, but safe beyond ``sys.maxsize``)."""
        return self._total

    @property
    def segments(self):
        """The non-empty segments, in order."""
        return self._segments

    cdef inline Py_ssize_t _index(self, int64_t offset) noexcept:
        """First index whose end is > ``offset`` (``bisect_right`` over the ends)."""
        cdef Py_ssize_t lo = 0, hi = self._count, mid
        cdef const int64_t *ends = self._ends
        while lo < hi:
            mid = (lo + hi) >> 1
            if ends[mid] <= offset:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def locate(self, offset):
        """Return ``(index, offset_within_segment)`` of the segment holding byte ``offset``."""
        cdef int overflow = 0
        cdef int64_t off
        cdef Py_ssize_t index
        offset = _as_int(offset)
        off = _to_int64(offset, &overflow)
        if overflow or off < 0 or off >= self._total:
            raise IndexError(f"offset {offset} outside 0..{self._total}")
        index = self._index(off)
        return index, off - (self._ends[index - 1] if index else 0)

    def slice(self, start, stop):
        """Sub-segments covering bytes ``[start, stop)``; literals stay views (no copy)."""
        cdef int over_a = 0, over_b = 0
        cdef int64_t a, b, seg_start, seg_end, inner
        cdef Py_ssize_t index
        cdef list out = []
        cdef object segment
        start = _as_int(start)
        stop = _as_int(stop)
        a = _to_int64(start, &over_a)
        b = _to_int64(stop, &over_b)
        if over_a or over_b or a < 0 or b > self._total or a > b:
            raise IndexError(f"range {start}..{stop} outside 0..{self._total}")
        if a == b:
            return out
        index = self._index(a)
        seg_start = self._ends[index - 1] if index else 0
        inner = a - seg_start
        while True:
            seg_end = self._ends[index]
            segment = self._segments[index]
            if b <= seg_end:
                if inner == 0 and b == seg_end:
                    out.append(segment)
                else:
                    out.append(segment.sub(inner, b - seg_start - inner))
                return out
            if inner == 0:
                out.append(segment)
            else:
                out.append(segment.sub(inner, seg_end - seg_start - inner))
                inner = 0
            seg_start = seg_end
            index += 1
