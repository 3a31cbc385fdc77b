"""``Content-Range``: the values this server writes and the upstream values it reads."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slipstream.http.contentrange import (
    ContentRange,
    UnsatisfiedRange,
    content_range,
    parse_content_range,
    unsatisfied_range,
)

# --- writing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "stop", "size", "expected"),
    [
        (0, 1, 1, "bytes 0-0/1"),
        (0, 1000, 1000, "bytes 0-999/1000"),
        (900, 1000, 1000, "bytes 900-999/1000"),
        (5, 6, 1 << 40, f"bytes 5-5/{1 << 40}"),
    ],
)
def test_content_range(start: int, stop: int, size: int, expected: str) -> None:
    assert content_range(start, stop, size) == expected


@pytest.mark.parametrize(("start", "stop", "size"), [(0, 0, 5), (3, 2, 5), (-1, 2, 5), (0, 6, 5)])
def test_content_range_refuses_empty_or_outside(start: int, stop: int, size: int) -> None:
    with pytest.raises(ValueError):
        content_range(start, stop, size)


def test_unsatisfied_range() -> None:
    assert unsatisfied_range(1234) == "bytes */1234"
    assert unsatisfied_range(0) == "bytes */0"


# --- reading --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes 0-0/1", ContentRange(0, 0, 1)),
        ("bytes 5-9/10", ContentRange(5, 9, 10)),
        ("bytes 000-0/07", ContentRange(0, 0, 7)),
        ("bytes 5-9/*", ContentRange(5, 9, None)),
        (f"bytes 0-0/{2**63 - 1}", ContentRange(0, 0, 2**63 - 1)),
        ("bytes */0", UnsatisfiedRange(0)),
        ("bytes */1234", UnsatisfiedRange(1234)),
        ("bytes */007", UnsatisfiedRange(7)),
    ],
)
def test_parse_content_range(value: str, expected: ContentRange | UnsatisfiedRange) -> None:
    assert parse_content_range(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "bytes 0-0/\u0661",  # other scripts' digits
        "bytes \u0660-0/5",
        "bytes 0-0/10 ",  # blanks
        " bytes 0-0/10",
        "bytes  0-0/10",
        "bytes 0 -0/10",
        "bytes=0-0/5",
        "Bytes 0-0/5",  # the unit as every peer writes it, and nothing else
        "items 0-0/5",
        "bytes 0-0/0",  # last >= size
        "bytes 0-1/1",
        "bytes 1-0/5",  # first > last
        "bytes 0-0/+5",
        "bytes 0-0/5_0",
        "bytes 0-0/5x",
        "bytes */*",
        "bytes */",
        "bytes -0/5",
        "bytes 0-/5",
        f"bytes 0-0/{2**63}",  # beyond what a Content-Length carries
        "bytes 0-0/" + "9" * 5000,
        f"bytes */{2**63}",
    ],
)
def test_unusable_content_ranges(value: str | None) -> None:
    assert parse_content_range(value) is None


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**63 - 2), st.integers(0, 2**40), st.integers(1, 2**40))
def test_what_is_written_reads_back(start: int, length: int, extra: int) -> None:
    stop = start + length + 1
    size = min(stop + extra - 1, 2**63 - 1)
    if stop > size:
        return
    assert parse_content_range(content_range(start, stop, size)) == ContentRange(
        start, stop - 1, size
    )
    assert parse_content_range(unsatisfied_range(size)) == UnsatisfiedRange(size)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_parse_content_range_never_raises(text: str) -> None:
    result = parse_content_range(text)
    if isinstance(result, ContentRange):
        assert 0 <= result.first <= result.last
        assert result.size is None or result.last < result.size
