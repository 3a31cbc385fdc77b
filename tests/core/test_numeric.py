"""The strict ASCII number parser every route and upstream header goes through."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slipstream.numeric import INT64_MAX, InvalidNumber, parse_uint, parse_uint_or_none


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0), ("7", 7), ("007", 7), ("000", 0), (str(INT64_MAX), INT64_MAX), (b"42", 42)],
)
def test_plain_digits(text: str | bytes, value: int) -> None:
    assert parse_uint(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\u00b2",  # superscript two: str.isdigit() says yes, int() says no
        "\u0663",  # Arabic-Indic three: int() says 3
        "\uff17",  # full-width seven
        " 7",
        "7 ",
        "+7",
        "-7",
        "1_000",
        "7.0",
        "1e3",
        "0x10",
        str(INT64_MAX + 1),
        "9" * 5000,  # longer than int()'s default digit limit
        b"\xff",
    ],
)
def test_refused(text: str | bytes) -> None:
    with pytest.raises(InvalidNumber):
        parse_uint(text)
    assert parse_uint_or_none(text) is None


def test_maximum() -> None:
    assert parse_uint("300", maximum=300) == 300
    with pytest.raises(InvalidNumber):
        parse_uint("301", maximum=300)
    assert parse_uint("0000000000000000000000000300", maximum=300) == 300


@given(st.text())
def test_agrees_with_a_plain_ascii_reading(text: str) -> None:
    ascii_digits = text != "" and all("0" <= ch <= "9" for ch in text)
    if ascii_digits and int(text) <= INT64_MAX:
        assert parse_uint(text) == int(text)
    else:
        assert parse_uint_or_none(text) is None


@given(st.integers(min_value=0, max_value=2**70))
def test_round_trip(value: int) -> None:
    if value <= INT64_MAX:
        assert parse_uint(str(value)) == value
    else:
        assert parse_uint_or_none(str(value)) is None
