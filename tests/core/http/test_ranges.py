"""Range parsing and the nginx-style 200/206/416 decision."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slipstream.http.ranges import (
    ByteRange,
    MalformedRange,
    RangeDecision,
    RangeKind,
    RangeSpec,
    UnsupportedRangeUnit,
    decide_ranges,
    parse_range_header,
    resolve_ranges,
)

FULL = RangeDecision(RangeKind.FULL)
UNSATISFIABLE = RangeDecision(RangeKind.UNSATISFIABLE)


def partial(*pairs: tuple[int, int]) -> RangeDecision:
    return RangeDecision(RangeKind.PARTIAL, tuple(ByteRange(a, b) for a, b in pairs))


# --- ByteRange -----------------------------------------------------------------------


def test_byte_range_length_and_content_range() -> None:
    r = ByteRange(0, 500)
    assert r.length == 500
    assert r.content_range(1234) == "bytes 0-499/1234"
    assert ByteRange(1233, 1234).content_range(1234) == "bytes 1233-1233/1234"


@pytest.mark.parametrize(("start", "stop"), [(-1, 5), (5, 5), (6, 5)])
def test_byte_range_rejects_empty_or_negative(start: int, stop: int) -> None:
    with pytest.raises(ValueError):
        ByteRange(start, stop)


# --- parse_range_header --------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "specs"),
    [
        ("bytes=0-499", [(0, 499)]),
        ("bytes=-500", [(None, 500)]),
        ("bytes=9500-", [(9500, None)]),
        ("bytes=0-0,-1", [(0, 0), (None, 1)]),
        ("BYTES=1-2", [(1, 2)]),
        ("Bytes=1-2", [(1, 2)]),
        ("bytes=1-2 , 4-5", [(1, 2), (4, 5)]),
        ("bytes= 1-2,\t4-5 ", [(1, 2), (4, 5)]),
        ("  bytes=1-2", [(1, 2)]),
        ("bytes=1 - 2", [(1, 2)]),
        ("bytes=0-1,,2-3", [(0, 1), (2, 3)]),
        ("bytes=,0-1,", [(0, 1)]),
        ("bytes=5-5", [(5, 5)]),
        ("bytes=0-9999999999999999999", [(0, 9999999999999999999)]),
        ("bytes=-0", [(None, 0)]),
    ],
)
def test_parse_valid(header: str, specs: list[RangeSpec]) -> None:
    assert parse_range_header(header) == specs


@pytest.mark.parametrize(
    "header",
    ["items=0-1", "bytes 0-1", "bytes =0-1", "", "byte=0-1", "0-1", "none"],
)
def test_parse_unsupported_unit(header: str) -> None:
    with pytest.raises(UnsupportedRangeUnit):
        parse_range_header(header)


@pytest.mark.parametrize(
    "header",
    [
        "bytes=",
        "bytes=,",
        "bytes= , ,",
        "bytes=-",
        "bytes=abc",
        "bytes=1",
        "bytes=1-2-3",
        "bytes=--1",
        "bytes=1--2",
        "bytes=0x10-20",
        "bytes=+1-2",
        "bytes=1-2;3-4",
        "bytes=0-1,junk",
        "bytes=5-3",
        "bytes=0-1,5-3",
        "bytes=\u0661-\u0662",  # Arabic-Indic digits are not ASCII digits
        "bytes=0-10000000000000000000",  # 20 digits
        "bytes=-" + "9" * 20,
        "bytes=" + "1" * 1000 + "-",
    ],
)
def test_parse_malformed(header: str) -> None:
    with pytest.raises(MalformedRange):
        parse_range_header(header)


def test_parse_errors_are_value_errors() -> None:
    assert issubclass(MalformedRange, ValueError)
    assert issubclass(UnsupportedRangeUnit, ValueError)


# --- resolve_ranges ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("specs", "size", "expected"),
    [
        ([(0, 499)], 1000, [(0, 500)]),
        ([(None, 500)], 1000, [(500, 1000)]),
        ([(None, 1000)], 1000, [(0, 1000)]),
        ([(None, 5000)], 1000, [(0, 1000)]),
        ([(None, 0)], 1000, []),
        ([(900, None)], 1000, [(900, 1000)]),
        ([(900, 5000)], 1000, [(900, 1000)]),
        ([(1000, None)], 1000, []),
        ([(1000, 1001)], 1000, []),
        ([(999, 999)], 1000, [(999, 1000)]),
        ([(5, 9), (0, 1), (2000, 3000)], 1000, [(5, 10), (0, 2)]),
        ([(0, 0), (None, 1)], 0, []),
    ],
)
def test_resolve(specs: list[RangeSpec], size: int, expected: list[tuple[int, int]]) -> None:
    assert resolve_ranges(specs, size) == [ByteRange(a, b) for a, b in expected]


def test_resolve_rejects_empty_spec() -> None:
    with pytest.raises(ValueError):
        resolve_ranges([(None, None)], 10)


# --- decide_ranges -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "size", "decision"),
    [
        # No header, other units: serve the whole body.
        (None, 1000, FULL),
        ("items=0-1", 1000, FULL),
        ("bytes 0-1", 1000, FULL),
        # Single ranges.
        ("bytes=0-499", 1000, partial((0, 500))),
        ("bytes=0-", 1000, partial((0, 1000))),
        ("bytes=0-0", 1000, partial((0, 1))),
        ("bytes=-1", 1000, partial((999, 1000))),
        ("bytes=-500", 1000, partial((500, 1000))),
        ("bytes=-1000", 1000, partial((0, 1000))),
        ("bytes=-99999", 1000, partial((0, 1000))),
        ("bytes=500-", 1000, partial((500, 1000))),
        ("bytes=999-", 1000, partial((999, 1000))),
        ("bytes=500-99999", 1000, partial((500, 1000))),
        ("bytes=0-9999999999999999999", 1000, partial((0, 1000))),
        ("BYTES=1-2", 1000, partial((1, 3))),
        (" bytes= 1-2 ,\t", 1000, partial((1, 3))),
        # Unsatisfiable.
        ("bytes=1000-", 1000, UNSATISFIABLE),
        ("bytes=1000-2000", 1000, UNSATISFIABLE),
        ("bytes=-0", 1000, UNSATISFIABLE),
        ("bytes=-0,1000-", 1000, UNSATISFIABLE),
        ("bytes=0-0", 0, UNSATISFIABLE),
        ("bytes=-5", 0, UNSATISFIABLE),
        ("bytes=0-", 0, UNSATISFIABLE),
        # Malformed bytes= headers are answered with 416.
        ("bytes=", 1000, UNSATISFIABLE),
        ("bytes=5-3", 1000, UNSATISFIABLE),
        ("bytes=0-1,5-3", 1000, UNSATISFIABLE),
        ("bytes=garbage", 1000, UNSATISFIABLE),
        ("bytes=0-1,x", 1000, UNSATISFIABLE),
        ("bytes=0-" + "9" * 20, 1000, UNSATISFIABLE),
        # Unsatisfiable members are dropped when others remain.
        ("bytes=2000-3000,0-1", 1000, partial((0, 2))),
        ("bytes=-0,0-1", 1000, partial((0, 2))),
        # Multiple ranges: sorted and coalesced (overlapping or adjacent).
        ("bytes=0-1,5-6", 1000, partial((0, 2), (5, 7))),
        ("bytes=5-6,0-1", 1000, partial((0, 2), (5, 7))),
        ("bytes=0-4,5-9", 1000, partial((0, 10))),
        ("bytes=5-9,0-4", 1000, partial((0, 10))),
        ("bytes=0-4,3-9", 1000, partial((0, 10))),
        ("bytes=0-9,2-3", 1000, partial((0, 10))),
        ("bytes=0-1,3-4,2-2", 1000, partial((0, 5))),
        ("bytes=0-1,-2", 1000, partial((0, 2), (998, 1000))),
        ("bytes=0-1,0-1", 1000, partial((0, 2))),
        ("bytes=10-19,0-0,-1", 20, partial((0, 1), (10, 20))),
        # Ranges adding up to more than the body: the multi-range DoS rule.
        ("bytes=0-,0-", 1000, FULL),
        ("bytes=0-999,0-0", 1000, FULL),
        ("bytes=0-499,0-500", 1000, FULL),
        ("bytes=0-499,0-499", 1000, partial((0, 500))),
        ("bytes=0-5,3-8", 10, FULL),
        ("bytes=-1,-1,-1", 2, FULL),
    ],
)
def test_decide(header: str | None, size: int, decision: RangeDecision) -> None:
    assert decide_ranges(header, size) == decision


def test_decide_max_parts() -> None:
    sixteen = "bytes=" + ",".join(f"{i * 10}-{i * 10}" for i in range(16))
    seventeen = sixteen + ",200-200"
    assert decide_ranges(sixteen, 1000) == partial(*((i * 10, i * 10 + 1) for i in range(16)))
    assert decide_ranges(seventeen, 1000) == FULL
    assert decide_ranges("bytes=0-0,2-2,4-4", 1000, max_parts=2) == FULL
    assert decide_ranges("bytes=0-0,2-2", 1000, max_parts=2) == partial((0, 1), (2, 3))
    # Specs are counted, not satisfiable ranges, and empty list elements do not count.
    assert decide_ranges("bytes=0-0,5000-,6000-", 1000, max_parts=2) == FULL
    assert decide_ranges("bytes=0-0,,,2-2", 1000, max_parts=2) == partial((0, 1), (2, 3))


def test_decide_coalesced_single_range_is_single() -> None:
    decision = decide_ranges("bytes=0-1,2-3", 100)
    assert decision.kind is RangeKind.PARTIAL
    assert decision.ranges == (ByteRange(0, 4),)


# --- properties ----------------------------------------------------------------------


@st.composite
def sizes_and_specs(draw: st.DrawFn) -> tuple[int, list[RangeSpec], bytes]:
    size = draw(st.integers(min_value=1, max_value=300))
    bound = size + 20  # let some specs start or end past the body
    short = st.integers(0, max(size // 8, 1))  # short ranges, so several fit in the body
    closed_short = st.tuples(st.integers(0, bound), short).map(lambda t: (t[0], t[0] + t[1]))
    spec = st.one_of(
        closed_short,
        closed_short,
        closed_short,
        st.tuples(st.none(), short),
        st.tuples(st.integers(0, bound), st.integers(0, bound)).map(lambda t: (min(t), max(t))),
        st.tuples(st.integers(0, bound), st.none()),
        st.tuples(st.none(), short),
        st.tuples(st.none(), st.integers(0, bound)),
    )
    max_specs = draw(st.sampled_from([3, 8, 18]))
    specs = draw(st.lists(spec, min_size=1, max_size=max_specs))
    return size, specs, draw(st.binary(min_size=size, max_size=size))


def spec_text(spec: RangeSpec) -> str:
    first, last = spec
    return f"{'' if first is None else first}-{'' if last is None else last}"


def requested_offsets(specs: list[RangeSpec], size: int) -> set[int]:
    """The byte offsets the specs ask for, computed independently of the module."""
    wanted: set[int] = set()
    for first, last in specs:
        if first is None:
            assert last is not None
            wanted.update(range(max(size - last, 0), size) if last else ())
        else:
            wanted.update(range(first, size if last is None else min(last + 1, size)))
    return wanted


@settings(max_examples=200, deadline=None)
@given(sizes_and_specs())
def test_decided_ranges_cover_exactly_the_request(
    case: tuple[int, list[RangeSpec], bytes],
) -> None:
    size, specs, data = case
    header = "bytes=" + ",".join(spec_text(s) for s in specs)
    decision = decide_ranges(header, size)
    wanted = requested_offsets(specs, size)
    requested_total = sum(r.length for r in resolve_ranges(specs, size))

    if not wanted:
        assert decision == UNSATISFIABLE
        return
    if len(specs) > 16 or requested_total > size:
        assert decision == FULL
        return
    assert decision.kind is RangeKind.PARTIAL
    ranges = decision.ranges
    assert ranges
    # Sorted, disjoint, non-adjacent, within the body.
    for r in ranges:
        assert 0 <= r.start < r.stop <= size
    for before, after in itertools.pairwise(ranges):
        assert before.stop < after.start
    # The bytes of the decided ranges are the union of the requested slices.
    got = b"".join(data[r.start : r.stop] for r in ranges)
    assert got == bytes(data[i] for i in sorted(wanted))


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=40), st.integers(min_value=0, max_value=1000))
def test_decide_never_raises(header: str, size: int) -> None:
    decision = decide_ranges(header, size)
    assert isinstance(decision, RangeDecision)
    if decision.kind is RangeKind.PARTIAL:
        assert all(0 <= r.start < r.stop <= size for r in decision.ranges)
    else:
        assert decision.ranges == ()


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="bytes=0123456789-, \t", max_size=40), st.integers(0, 100))
def test_decide_never_raises_near_grammar(header: str, size: int) -> None:
    assert isinstance(decide_ranges(header, size), RangeDecision)
