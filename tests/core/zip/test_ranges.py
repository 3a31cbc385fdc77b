"""``slipstream.zip.ranges``: the seed-004 ``Range`` rules of ``GET /stream/<id>``."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slipstream.http.contentrange import content_range
from slipstream.zip.errors import ZipError, render_error
from slipstream.zip.ranges import parse_zip_range

SIZE = 1000

OK_CASES: list[tuple[str | None, int, tuple[int, int] | None]] = [
    (None, SIZE, None),
    (None, 0, None),
    ("bytes=0-", SIZE, (0, SIZE)),
    ("bytes=0-0", SIZE, (0, 1)),
    ("bytes=0-499", SIZE, (0, 500)),
    ("bytes=500-", SIZE, (500, SIZE)),
    ("bytes=999-", SIZE, (999, SIZE)),
    ("bytes=999-999", SIZE, (999, SIZE)),
    ("bytes=10-5000", SIZE, (10, SIZE)),  # end clamped to the last byte
    ("bytes=10-99999999999999999", SIZE, (10, SIZE)),
    ("bytes=-1", SIZE, (999, SIZE)),
    ("bytes=-100", SIZE, (900, SIZE)),
    ("bytes=-1000", SIZE, (0, SIZE)),
    ("bytes=-5000", SIZE, (0, SIZE)),  # a suffix longer than the zip is all of it
    ("Bytes=1-2", SIZE, (1, 3)),  # the unit is case-insensitive
    ("BYTES=1-2", SIZE, (1, 3)),
    ("  bytes=3-4\t", SIZE, (3, 5)),
    ("bytes= 3-4 ", SIZE, (3, 5)),
    ("bytes=0-0", 1, (0, 1)),
    ("bytes=-3", 1, (0, 1)),
]


@pytest.mark.parametrize(("header", "size", "expected"), OK_CASES)
def test_accepted_ranges(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert parse_zip_range(header, size) == expected


ERROR_CASES: list[tuple[str, int, str, int]] = [
    # A unit other than "bytes=": 400, not ignored as RFC 9110 would.
    ("items=0-1", SIZE, "INVALID_RANGE_HEADER", 400),
    ("bytes 0-1", SIZE, "INVALID_RANGE_HEADER", 400),
    ("bytes", SIZE, "INVALID_RANGE_HEADER", 400),
    ("byte=0-1", SIZE, "INVALID_RANGE_HEADER", 400),
    ("bytes =0-1", SIZE, "INVALID_RANGE_HEADER", 400),
    ("0-1", SIZE, "INVALID_RANGE_HEADER", 400),
    ("items=0-1,2-3", SIZE, "INVALID_RANGE_HEADER", 400),
    # Several ranges: 416, not multipart/byteranges.
    ("bytes=0-1,5-6", SIZE, "MULTIPART_UNSUPPORTED", 416),
    ("bytes=0-1, 5-6", SIZE, "MULTIPART_UNSUPPORTED", 416),
    ("bytes=0-1,", SIZE, "MULTIPART_UNSUPPORTED", 416),
    ("bytes=abc,0-1", SIZE, "MULTIPART_UNSUPPORTED", 416),
    ("bytes=5000-,6000-", SIZE, "MULTIPART_UNSUPPORTED", 416),
    # Unparsable.
    ("bytes=abc", SIZE, "MALFORMED_RANGE", 416),
    ("bytes=5-2", SIZE, "MALFORMED_RANGE", 416),
    ("bytes=-", SIZE, "MALFORMED_RANGE", 416),
    ("bytes=", SIZE, "MALFORMED_RANGE", 416),
    ("bytes=  ", SIZE, "MALFORMED_RANGE", 416),
    ("", SIZE, "MALFORMED_RANGE", 416),
    ("  ", SIZE, "MALFORMED_RANGE", 416),
    ("bytes=1", SIZE, "MALFORMED_RANGE", 416),
    ("bytes=1-2-3", SIZE, "MALFORMED_RANGE", 416),
    ("bytes=-1-2", SIZE, "MALFORMED_RANGE", 416),
    ("bytes=+1-2", SIZE, "MALFORMED_RANGE", 416),
    ("bytes=0x10-", SIZE, "MALFORMED_RANGE", 416),
    ("bytes=\u0663-5", SIZE, "MALFORMED_RANGE", 416),  # a non-ASCII digit
    ("bytes=" + "1" * 20 + "-", SIZE, "MALFORMED_RANGE", 416),
    # Not satisfiable.
    ("bytes=1000-", SIZE, "RANGE_NOT_SATISFIABLE", 416),
    ("bytes=1000-2000", SIZE, "RANGE_NOT_SATISFIABLE", 416),
    ("bytes=5000-6000", SIZE, "RANGE_NOT_SATISFIABLE", 416),
    ("bytes=-0", SIZE, "RANGE_NOT_SATISFIABLE", 416),
    ("bytes=0-", 0, "RANGE_NOT_SATISFIABLE", 416),
    ("bytes=-5", 0, "RANGE_NOT_SATISFIABLE", 416),
]


@pytest.mark.parametrize(("header", "size", "key", "status"), ERROR_CASES)
def test_refused_ranges(header: str, size: int, key: str, status: int) -> None:
    with pytest.raises(ZipError) as caught:
        parse_zip_range(header, size)
    error = caught.value
    assert (error.key, error.status) == (key, status)
    _, headers, _ = render_error(error, "json", None)
    content_ranges = [value for name, value in headers if name == "Content-Range"]
    if status == 416:
        assert error.size == size
        assert content_ranges == [f"bytes */{size}"]
    else:
        assert content_ranges == []


def test_negative_size_is_a_bug() -> None:
    with pytest.raises(ValueError):
        parse_zip_range("bytes=0-", -1)


# --- agreement with a simple model --------------------------------------------------

_SPEC_MODEL = re.compile(r"([0-9]*)[ \t]*-[ \t]*([0-9]*)")


def model(header: str | None, size: int) -> tuple[int, int] | str | None:
    """The seed's rules, written as directly as possible: which bytes does the spec pick?"""
    if header is None:
        return None
    value = header.strip(" \t")
    if value == "":
        return "MALFORMED_RANGE"
    if not value.lower().startswith("bytes="):
        return "INVALID_RANGE_HEADER"
    if "," in value:
        return "MULTIPART_UNSUPPORTED"
    match = _SPEC_MODEL.fullmatch(value[len("bytes=") :].strip(" \t"))
    if match is None:
        return "MALFORMED_RANGE"
    first, last = match.groups()
    if (not first and not last) or len(first) > 19 or len(last) > 19:
        return "MALFORMED_RANGE"
    if first and last and int(first) > int(last):
        return "MALFORMED_RANGE"
    offsets = range(size)
    if first:
        picked = offsets[int(first) : int(last) + 1] if last else offsets[int(first) :]
    else:
        picked = offsets[size - int(last) :] if int(last) > 0 else offsets[:0]
        picked = offsets if int(last) >= size else picked
    if len(picked) == 0:
        return "RANGE_NOT_SATISFIABLE"
    return picked[0], picked[-1] + 1


def run(header: str | None, size: int) -> tuple[int, int] | str | None:
    try:
        return parse_zip_range(header, size)
    except ZipError as error:
        return error.key


numbers = st.one_of(
    st.integers(0, 80).map(str),
    st.integers(0, 10**25).map(str),
    st.just("0007"),
    st.just(""),
)
blanks = st.sampled_from(["", " ", "\t", "  "])


@st.composite
def specs(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(alphabet="0123456789-ab, \t=", max_size=8))
    return draw(blanks) + draw(numbers) + draw(blanks) + "-" + draw(blanks) + draw(numbers)


@st.composite
def headers(draw: st.DrawFn) -> str | None:
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return None
    if choice == 1:
        return draw(st.text(max_size=12))
    unit = draw(st.sampled_from(["bytes=", "Bytes=", "BYTES=", "items=", "bytes", "bytes =", ""]))
    parts = draw(st.lists(specs(), min_size=1, max_size=3))
    return draw(blanks) + unit + ",".join(parts) + draw(blanks)


@settings(max_examples=400, deadline=None)
@given(header=headers(), size=st.integers(0, 70))
def test_agrees_with_model(header: str | None, size: int) -> None:
    expected = model(header, size)
    got = run(header, size)
    assert got == expected
    if isinstance(got, tuple):
        start, stop = got
        assert 0 <= start < stop <= size
        assert content_range(start, stop, size) == f"bytes {start}-{stop - 1}/{size}"
