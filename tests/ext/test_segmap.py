"""SegmentMap: both twins against the spec, against each other, and against bytes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slipstream.ext._segtypes import FileSlice, Literal, Segment, UpstreamSlice
from tests.helpers.twins import load_twin

pytestmark = pytest.mark.twins
"""Each twin is loaded by name, whatever twin the environment selected: run once, in the
first pass of ``make pytest`` (see the README, "The compiled extension and its twins")."""

MapFactory = Callable[[Any], Any]

# Deterministic contents for the sources the FileSlices and UpstreamSlices point at.
FILES = {name: bytes((i * 7 + seed) % 251 for i in range(256)) for seed, name in enumerate("abc")}
UPSTREAMS = {
    f"https://example.test/{name}": bytes((i * 13 + seed) % 241 for i in range(256))
    for seed, name in enumerate("xy")
}

FIVE_GB = 5 * 2**30
MAX_TOTAL = 2**63 - 1

# The fixture is a plain string: sharing it across hypothesis examples is safe.
PROPERTY = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def SegmentMap(twin_kind: str) -> MapFactory:
    """The SegmentMap class of the twin under test."""
    cls: MapFactory = load_twin("segmap", twin_kind).SegmentMap
    return cls


def both_twins() -> tuple[MapFactory, MapFactory]:
    return load_twin("segmap", "py").SegmentMap, load_twin("segmap", "c").SegmentMap


def materialise(segment: Segment) -> bytes:
    """The bytes a segment stands for, read from the deterministic sources above."""
    if isinstance(segment, Literal):
        return bytes(segment.data)
    data = FILES[segment.source] if isinstance(segment, FileSlice) else UPSTREAMS[segment.uri]
    assert segment.offset + segment.length <= len(data), "slice ran past its source"
    return data[segment.offset : segment.offset + segment.length]


def describe(segment: Segment) -> tuple[object, ...]:
    """A value that pins down a segment completely (kind, source, offset, length, bytes)."""
    if isinstance(segment, Literal):
        return ("L", bytes(segment.data))
    if isinstance(segment, FileSlice):
        return ("F", segment.source, segment.offset, segment.length)
    return ("U", segment.uri, segment.offset, segment.length)


class Duck:
    """A segment-like object with an arbitrary ``length`` (no validation)."""

    def __init__(self, length: object) -> None:
        self.length = length

    def sub(self, offset: int, length: int) -> Duck:
        return Duck(length)


class Index:
    """An integer-like object (like NumPy integers): only ``__index__``."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


# --------------------------------------------------------------------------- construction


def test_empty_map(SegmentMap: MapFactory) -> None:
    m = SegmentMap([])
    assert len(m) == 0
    assert m.total == 0
    assert m.segments == ()
    assert m.slice(0, 0) == []
    with pytest.raises(IndexError):
        m.locate(0)
    with pytest.raises(IndexError):
        m.slice(0, 1)


def test_zero_length_segments_are_dropped(SegmentMap: MapFactory) -> None:
    a, b = Literal(b"abc"), FileSlice("a", 5, 4)
    m = SegmentMap([Literal(b""), a, FileSlice("b", 9, 0), UpstreamSlice("u", 3, 0), b])
    assert m.segments == (a, b)
    assert m.segments[0] is a and m.segments[1] is b
    assert m.total == 7
    assert m.locate(3) == (1, 0)
    assert SegmentMap([Literal(b""), FileSlice("a", 0, 0)]).segments == ()


def test_accepts_any_iterable(SegmentMap: MapFactory) -> None:
    parts = [Literal(b"ab"), FileSlice("a", 0, 3)]
    for source in (parts, tuple(parts), iter(parts), (p for p in parts)):
        m = SegmentMap(source)
        assert m.total == 5
        assert m.segments == tuple(parts)


def test_negative_length_is_value_error(SegmentMap: MapFactory) -> None:
    with pytest.raises(ValueError, match=">= 0"):
        SegmentMap([Literal(b"x"), Duck(-1)])
    with pytest.raises(ValueError, match=">= 0"):
        SegmentMap([Duck(-(2**70))])


@pytest.mark.parametrize("bad", [1.0, 2.5, "3", None, b"1"])
def test_non_integer_length_is_type_error(SegmentMap: MapFactory, bad: object) -> None:
    with pytest.raises(TypeError):
        SegmentMap([Duck(bad)])


def test_integer_like_lengths(SegmentMap: MapFactory) -> None:
    m = SegmentMap([Duck(True), Duck(False), Duck(Index(4))])
    assert m.total == 5
    assert type(m.total) is int
    assert len(m.segments) == 2
    assert m.locate(1) == (1, 0)


def test_missing_length_attribute(SegmentMap: MapFactory) -> None:
    with pytest.raises(AttributeError):
        SegmentMap([object()])


def test_lengths_are_read_once(SegmentMap: MapFactory) -> None:
    moving = FileSlice("a", 0, 10)
    m = SegmentMap([Literal(b"xy"), moving])
    moving.length = 50
    assert m.total == 12
    assert sum(s.length for s in m.slice(1, 11)) == 10
    assert m.slice(2, 12) == [moving]  # the object itself, as it is now


def test_reinit_replaces_contents(SegmentMap: MapFactory) -> None:
    m = SegmentMap([Literal(b"abc")])
    m.__init__([FileSlice("a", 0, 10), FileSlice("b", 0, 10)])
    assert m.total == 20
    assert m.locate(15) == (1, 5)
    with pytest.raises(ValueError):
        m.__init__([Duck(-1)])
    assert m.total == 20  # a failed rebuild leaves the map as it was
    assert m.locate(19) == (1, 9)


# --------------------------------------------------------------------------- locate


def test_locate_at_boundaries(SegmentMap: MapFactory) -> None:
    m = SegmentMap([Literal(b"abc"), FileSlice("a", 10, 5), UpstreamSlice("u", 0, 2)])
    expected = {0: (0, 0), 2: (0, 2), 3: (1, 0), 7: (1, 4), 8: (2, 0), 9: (2, 1)}
    for offset, where in expected.items():
        assert m.locate(offset) == where
        assert all(type(x) is int for x in m.locate(offset))
    for bad in (-1, 10, 11, 2**64, -(2**64)):
        with pytest.raises(IndexError, match=r"outside 0\.\.10$"):
            m.locate(bad)


def test_locate_argument_types(SegmentMap: MapFactory) -> None:
    m = SegmentMap([Literal(b"abc"), Literal(b"de")])
    assert m.locate(True) == (0, 1)
    assert m.locate(False) == (0, 0)
    assert m.locate(Index(3)) == (1, 0)
    for bad in (1.0, 1.5, "1", None, [1]):
        with pytest.raises(TypeError):
            m.locate(bad)


# --------------------------------------------------------------------------- slice


def test_slice_empty_ranges(SegmentMap: MapFactory) -> None:
    m = SegmentMap([Literal(b"abc"), FileSlice("a", 0, 4)])
    for at in range(8):
        assert m.slice(at, at) == []


@pytest.mark.parametrize(
    ("start", "stop"), [(-1, 2), (0, 8), (5, 4), (2**64, 2**64), (-(2**64), 0), (0, 2**64)]
)
def test_slice_out_of_range(SegmentMap: MapFactory, start: int, stop: int) -> None:
    m = SegmentMap([Literal(b"abc"), FileSlice("a", 0, 4)])
    with pytest.raises(IndexError, match=r"outside 0\.\.7$"):
        m.slice(start, stop)


def test_slice_argument_types(SegmentMap: MapFactory) -> None:
    m = SegmentMap([Literal(b"abc"), FileSlice("a", 0, 4)])
    assert [describe(s) for s in m.slice(True, Index(5))] == [("L", b"bc"), ("F", "a", 0, 2)]
    for bad in ((0.0, 2), (0, 2.0), ("0", 2), (0, None)):
        with pytest.raises(TypeError):
            m.slice(*bad)


def test_slice_adjusts_offsets_and_keeps_whole_segments(SegmentMap: MapFactory) -> None:
    lit, fs, us = Literal(b"0123456789"), FileSlice("a", 100, 50), UpstreamSlice("u", 7, 20)
    m = SegmentMap([lit, fs, us])
    whole = m.slice(0, m.total)
    assert len(whole) == 3 and all(a is b for a, b in zip(whole, (lit, fs, us), strict=True))
    parts = m.slice(4, 65)
    assert [describe(s) for s in parts] == [
        ("L", b"456789"),
        ("F", "a", 100, 50),
        ("U", "u", 7, 5),
    ]
    assert parts[1] is fs
    assert [describe(s) for s in m.slice(12, 13)] == [("F", "a", 102, 1)]
    assert [describe(s) for s in m.slice(10, 60)] == [("F", "a", 100, 50)]


def test_literal_slices_share_memory(SegmentMap: MapFactory) -> None:
    backing = bytearray(b"abcdefgh")
    lit = Literal(backing)
    m = SegmentMap([FileSlice("a", 0, 2), lit])
    (part,) = m.slice(4, 7)
    assert isinstance(part.data, memoryview)
    assert part.data.obj is backing
    backing[3] = ord("Z")
    assert bytes(part.data) == b"cZe"  # a view: the change shows through

    raw = b"0123456789"
    (view,) = SegmentMap([Literal(raw)]).slice(2, 5)
    assert view.data.obj is raw


# --------------------------------------------------------------------------- big totals


def test_totals_beyond_32_bits(SegmentMap: MapFactory) -> None:
    header = Literal(b"H" * 30)
    files = [FileSlice(f"f{i}", 0, FIVE_GB) for i in range(10)]
    m = SegmentMap([header, *files, Literal(b"end")])
    total = 30 + 10 * FIVE_GB + 3
    assert m.total == total > 2**32
    assert len(m) == total
    assert m.locate(2**32) == (1, 2**32 - 30)
    assert m.locate(30 + 3 * FIVE_GB) == (4, 0)
    assert m.locate(total - 1) == (11, 2)
    cut = 30 + 7 * FIVE_GB
    parts = m.slice(cut - 10, cut + 2**33)
    assert [describe(s) for s in parts] == [
        ("F", "f6", FIVE_GB - 10, 10),
        ("F", "f7", 0, FIVE_GB),
        ("F", "f8", 0, 2**33 - FIVE_GB),
    ]
    assert parts[1] is files[7]
    tail = m.slice(total - 4, total)
    assert [describe(s) for s in tail] == [("F", "f9", FIVE_GB - 1, 1), ("L", b"end")]


def test_total_limit(SegmentMap: MapFactory) -> None:
    m = SegmentMap([FileSlice("a", 0, MAX_TOTAL - 1), Literal(b"x")])
    assert m.total == MAX_TOTAL
    assert m.locate(MAX_TOTAL - 1) == (1, 0)
    assert [describe(s) for s in m.slice(MAX_TOTAL - 2, MAX_TOTAL)] == [
        ("F", "a", MAX_TOTAL - 2, 1),
        ("L", b"x"),
    ]
    for segments in (
        [FileSlice("a", 0, MAX_TOTAL), Literal(b"x")],
        [FileSlice("a", 0, 2**63)],
        [Duck(2**80)],
        [FileSlice("a", 0, 2**62), FileSlice("a", 0, 2**62), FileSlice("a", 0, 2**62)],
    ):
        with pytest.raises(OverflowError):
            SegmentMap(segments)


# --------------------------------------------------------------------------- properties


def segment_strategy() -> st.SearchStrategy[Segment]:
    literal = st.binary(max_size=24).map(Literal)
    file_slice = st.builds(
        lambda name, offset, length: FileSlice(name, offset, length),
        st.sampled_from(sorted(FILES)),
        st.integers(0, 128),
        st.integers(0, 64),
    )
    upstream = st.builds(
        lambda uri, offset, length: UpstreamSlice(uri, offset, length),
        st.sampled_from(sorted(UPSTREAMS)),
        st.integers(0, 128),
        st.integers(0, 64),
    )
    return st.one_of(literal, file_slice, upstream)


segment_lists = st.lists(segment_strategy(), max_size=30)


def linear_locate(segments: Sequence[Segment], offset: int) -> tuple[int, int]:
    """The obvious O(n) lookup the bisecting one must agree with."""
    position = 0
    for index, segment in enumerate(s for s in segments if s.length):
        if offset < position + segment.length:
            return index, offset - position
        position += segment.length
    raise IndexError(offset)


@PROPERTY
@given(segments=segment_lists, data=st.data())
def test_slice_matches_materialised_whole(
    SegmentMap: MapFactory, segments: list[Segment], data: st.DataObject
) -> None:
    m = SegmentMap(segments)
    whole = b"".join(materialise(s) for s in segments)
    assert m.total == len(whole)
    assert m.segments == tuple(s for s in segments if s.length)
    start = data.draw(st.integers(0, m.total), label="start")
    stop = data.draw(st.integers(start, m.total), label="stop")
    parts = m.slice(start, stop)
    assert sum(p.length for p in parts) == stop - start
    assert all(p.length > 0 for p in parts)
    assert b"".join(materialise(p) for p in parts) == whole[start:stop]
    if parts:
        first, _ = m.locate(start)
        for i, part in enumerate(parts):
            original = m.segments[first + i]
            assert type(part) is type(original)
            if isinstance(part, Literal) and part is not original:
                # a cut literal is a view onto the original buffer, never a copy
                assert isinstance(part.data, memoryview)
                assert part.data.obj is original.data
            if 0 < i < len(parts) - 1:
                assert part is original  # inner segments are passed through untouched


@PROPERTY
@given(segments=segment_lists, data=st.data())
def test_locate_matches_linear_scan(
    SegmentMap: MapFactory, segments: list[Segment], data: st.DataObject
) -> None:
    m = SegmentMap(segments)
    offsets = data.draw(st.lists(st.integers(-3, m.total + 3), max_size=10), label="offsets")
    for offset in offsets:
        if 0 <= offset < m.total:
            assert m.locate(offset) == linear_locate(segments, offset)
        else:
            with pytest.raises(IndexError):
                m.locate(offset)


def outcome(call: Callable[..., Any], *args: object) -> tuple[object, ...]:
    """A comparable record of what ``call(*args)`` did: its result, or its error and message."""
    try:
        result = call(*args)
    except Exception as exc:
        return ("raised", type(exc), str(exc))
    return ("returned", result)


@settings(max_examples=150, deadline=None)
@given(segments=segment_lists, data=st.data())
def test_twins_agree_exactly(segments: list[Segment], data: st.DataObject) -> None:
    py_map, c_map = (cls(segments) for cls in both_twins())
    assert (len(py_map), py_map.total) == (len(c_map), c_map.total)
    assert py_map.segments == c_map.segments
    assert all(a is b for a, b in zip(py_map.segments, c_map.segments, strict=True))
    bound = py_map.total + 2
    numbers = st.integers(-2, bound) | st.sampled_from([2**64, True, 1.5, "x"])
    for _ in range(3):
        offset = data.draw(numbers, label="offset")
        assert outcome(py_map.locate, offset) == outcome(c_map.locate, offset)
        start, stop = data.draw(numbers, label="start"), data.draw(numbers, label="stop")
        assert outcome(py_map.slice, start, stop) == outcome(c_map.slice, start, stop)
        # and always one valid range, compared in full detail
        start = data.draw(st.integers(0, py_map.total), label="valid start")
        stop = data.draw(st.integers(start, py_map.total), label="valid stop")
        py_parts, c_parts = py_map.slice(start, stop), c_map.slice(start, stop)
        assert [describe(s) for s in py_parts] == [describe(s) for s in c_parts]
        kept = py_map.segments
        assert [any(p is s for s in kept) for p in py_parts] == [
            any(p is s for s in kept) for p in c_parts
        ]
