"""HTTP dates: the IMF-fixdate writer and the three-form reader."""

from __future__ import annotations

import email.utils
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slipstream.http.dates import http_date, parse_http_date

LM = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT
SAME = "Sun, 06 Nov 1994 08:49:37 GMT"


def test_http_date_known_values() -> None:
    assert http_date(LM) == SAME
    assert http_date(LM + 0.999) == SAME
    assert http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert http_date(951782400) == "Tue, 29 Feb 2000 00:00:00 GMT"


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=253402300799))  # up to 9999-12-31 23:59:59
def test_http_date_round_trip_and_matches_stdlib(ts: int) -> None:
    text = http_date(ts)
    assert text == email.utils.formatdate(ts, usegmt=True)
    assert parse_http_date(text) == ts


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (SAME, LM),
        ("Sunday, 06-Nov-94 08:49:37 GMT", LM),
        ("Sun Nov  6 08:49:37 1994", LM),
        ("Sun Nov 06 08:49:37 1994", LM),
        (" Sun, 06 Nov 1994 08:49:37 GMT\t", LM),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0),
        ("Wed, 31 Dec 1969 23:59:59 GMT", -1),
        ("Tue, 29 Feb 2000 00:00:00 GMT", 951782400),
        # The day name is checked for spelling only, as nginx does.
        ("Mon, 06 Nov 1994 08:49:37 GMT", LM),
        # A leap second rolls over into the next minute.
        ("Sat, 31 Dec 2016 23:59:60 GMT", 1483228800),
    ],
)
def test_parse_http_date_valid(text: str, expected: int) -> None:
    assert parse_http_date(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "784111777",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 08:49:37 +0000",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 06 nov 1994 08:49:37 GMT",
        "Sun, 06 November 1994 08:49:37 GMT",
        "Sun 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 94 08:49:37 GMT",
        "Sun, 06 Nov 1994 8:49:37 GMT",
        "Sun, 06 Nov 1994 08:49 GMT",
        "Foo, 06 Nov 1994 08:49:37 GMT",
        "Sun, 30 Feb 2000 08:49:37 GMT",
        "Sun, 29 Feb 1900 08:49:37 GMT",
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 32 Jan 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 06 Nov 0000 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT; length=1234",
        "Sun, 06 Nov 1994 08:49:37 GMT, Sun, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06-Nov-94 08:49:37 GMT",  # RFC 850 needs the long day name
        "Sunday, 06-Nov-1994 08:49:37 GMT",
        "Sun Nov 6 08:49:37 1994",
        "Sun Nov  6 08:49:37 94",
        "Sun, \u0660\u0666 Nov 1994 08:49:37 GMT",  # non-ASCII digits
    ],
)
def test_parse_http_date_invalid(text: str) -> None:
    assert parse_http_date(text) is None


def test_rfc850_two_digit_year_window() -> None:
    this_year = time.gmtime().tm_year
    # A two-digit year more than 50 years ahead is the most recent past year instead.
    ahead = (this_year + 51) % 100
    parsed = parse_http_date(f"Monday, 01-Jan-{ahead:02d} 00:00:00 GMT")
    assert parsed is not None
    assert time.gmtime(parsed).tm_year == this_year + 51 - 100
    near = (this_year + 1) % 100
    parsed = parse_http_date(f"Monday, 01-Jan-{near:02d} 00:00:00 GMT")
    assert parsed is not None
    assert time.gmtime(parsed).tm_year == this_year + 1


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=40))
def test_parse_http_date_never_raises(text: str) -> None:
    result = parse_http_date(text)
    assert result is None or isinstance(result, int)
