"""``slipstream.zip.ranges``: the seed-004 ``Range`` rules of ``GET /stream/<id>``."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slipstream.http.contentrange import content_range
from slipstream.http.reply import Reply, decide_reply
from slipstream.http.representation import Representation
from slipstream.http.validators import Validators
from slipstream.zip.errors import ZipError, render_error
from slipstream.zip.ranges import ZipStreamRanges, parse_zip_range
from tests.helpers.streamed import Part, RecordingSource

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


# --- the rules as the reply function's policy ----------------------------------------


ZIP_ETAG = '"zip-1"'
ZIP_MTIME = 784111777


def zip_reply(
    headers: dict[str, str],
    possible: Callable[[int, int], bool] | None = None,
    size: int = SIZE,
) -> Reply | ZipError:
    rep = Representation(
        body=RecordingSource(size),
        validators=Validators(ZIP_ETAG, ZIP_MTIME),
        policy=ZipStreamRanges(possible),
        content_type="application/zip",
        headers=[("Cache-Control", "private, no-transform")],
    )
    return decide_reply("GET", headers, rep)


def test_policy_whole_zip_and_one_range() -> None:
    common = [
        ("ETag", ZIP_ETAG),
        ("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ("Accept-Ranges", "bytes"),
        ("Cache-Control", "private, no-transform"),
    ]
    whole = zip_reply({})
    assert isinstance(whole, Reply) and whole.status == 200 and whole.body == Part(0, SIZE)
    assert whole.headers == [("Content-Type", "application/zip"), *common]
    ranged = zip_reply({"range": "bytes=-100"})
    assert isinstance(ranged, Reply) and ranged.status == 206 and ranged.body == Part(900, SIZE)
    assert ranged.headers == [
        ("Content-Type", "application/zip"),
        ("Content-Range", f"bytes 900-999/{SIZE}"),
        *common,
    ]


@pytest.mark.parametrize(("header", "size", "key", "status"), ERROR_CASES)
def test_policy_refusals_are_the_seeds_errors(
    header: str, size: int, key: str, status: int
) -> None:
    error = zip_reply({"range": header}, size=size)
    assert isinstance(error, ZipError)
    assert (error.key, error.status) == (key, status)
    assert error.size == (size if status == 416 else None)


@pytest.mark.parametrize(
    "headers",
    [
        {"if-none-match": ZIP_ETAG},
        {"if-match": '"other"'},
        {"if-modified-since": "Sun, 06 Nov 1994 08:49:37 GMT"},
        {"if-unmodified-since": "Sat, 05 Nov 1994 08:49:37 GMT"},
    ],
)
def test_policy_evaluates_no_preconditions(headers: dict[str, str]) -> None:
    reply = zip_reply({**headers, "range": "bytes=0-9"})
    assert isinstance(reply, Reply) and reply.status == 206 and reply.body == Part(0, 10)


@pytest.mark.parametrize(("if_range", "status"), [(ZIP_ETAG, 206), ('"old"', 200)])
def test_policy_if_range(if_range: str, status: int) -> None:
    # A failed If-Range drops even a header the seed's rules would refuse.
    header = "bytes=0-9" if status == 206 else "items=0-1"
    reply = zip_reply({"range": header, "if-range": if_range})
    assert isinstance(reply, Reply) and reply.status == status


def test_policy_serves_the_whole_zip_when_a_range_is_not_possible() -> None:
    asked: list[tuple[int, int]] = []

    def possible(start: int, stop: int) -> bool:
        asked.append((start, stop))
        return start < 500

    near = zip_reply({"range": "bytes=100-"}, possible)
    deep = zip_reply({"range": "bytes=600-"}, possible)
    assert isinstance(near, Reply) and near.status == 206 and near.body == Part(100, SIZE)
    assert isinstance(deep, Reply) and deep.status == 200 and deep.body == Part(0, SIZE)
    assert asked == [(100, SIZE), (600, SIZE)]
