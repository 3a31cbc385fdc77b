"""Conditional requests: preconditions, If-Range, entity tags and HTTP dates."""

from __future__ import annotations

import email.utils
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slipstream.http.conditional import (
    Precondition,
    Validators,
    evaluate_preconditions,
    http_date,
    if_range_matches,
    parse_etag_list,
    parse_http_date,
    strong_match,
    weak_match,
)

LM = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT
V = Validators(etag='"abc-123"', last_modified=LM)
SAME = "Sun, 06 Nov 1994 08:49:37 GMT"
EARLIER = "Sun, 06 Nov 1994 08:49:36 GMT"
LATER = "Sun, 06 Nov 1994 08:49:38 GMT"

PROCEED = Precondition.PROCEED
NOT_MODIFIED = Precondition.NOT_MODIFIED
FAILED = Precondition.FAILED


# --- HTTP dates ----------------------------------------------------------------------


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


# --- entity tags ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("*", None),
        (" * ", None),
        ("*, *", None),
        ('"abc"', ['"abc"']),
        ('W/"abc"', ['W/"abc"']),
        ('"a", W/"b" ,"c"', ['"a"', 'W/"b"', '"c"']),
        ('"a,b", "c"', ['"a,b"', '"c"']),
        ('""', ['""']),
        ('"a",,"b",', ['"a"', '"b"']),
        ("", []),
        ("abc", []),
        ('abc, "x"', ['"x"']),
        ('"x", abc', ['"x"']),
        ('"unterminated', []),
        ('"x", "unterminated', ['"x"']),
        ('"a b", "c"', ['"c"']),
        ('"x" junk, "y"', ['"y"']),
        ('w/"x", "y"', ['"y"']),
        ('W/ "x", "y"', ['"y"']),
        ('"\x01", "y"', ['"y"']),
        ('"caf\xe9"', ['"caf\xe9"']),
    ],
)
def test_parse_etag_list(value: str, expected: list[str] | None) -> None:
    assert parse_etag_list(value) == expected


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=40))
def test_parse_etag_list_never_raises(text: str) -> None:
    tags = parse_etag_list(text)
    if tags is not None:
        for tag in tags:
            assert tag.startswith(('"', 'W/"')) and tag.endswith('"')


@pytest.mark.parametrize(
    ("a", "b", "strong", "weak"),
    [
        # The comparison table of RFC 9110 section 8.8.3.2.
        ('W/"1"', 'W/"1"', False, True),
        ('W/"1"', 'W/"2"', False, False),
        ('W/"1"', '"1"', False, True),
        ('"1"', '"1"', True, True),
        ('"1"', '"2"', False, False),
    ],
)
def test_etag_comparison(a: str, b: str, strong: bool, weak: bool) -> None:
    assert strong_match(a, b) is strong and strong_match(b, a) is strong
    assert weak_match(a, b) is weak and weak_match(b, a) is weak


# --- preconditions -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "headers", "expected"),
    [
        ("GET", {}, PROCEED),
        # If-Match: strong comparison, "*" matches the existing resource.
        ("GET", {"if-match": '"abc-123"'}, PROCEED),
        ("GET", {"if-match": '"x", "abc-123"'}, PROCEED),
        ("GET", {"if-match": "*"}, PROCEED),
        ("GET", {"if-match": '"other"'}, FAILED),
        ("GET", {"if-match": 'W/"abc-123"'}, FAILED),
        ("PUT", {"if-match": '"other"'}, FAILED),
        ("GET", {"if-match": "junk"}, FAILED),
        # If-Unmodified-Since, only without If-Match.
        ("GET", {"if-unmodified-since": SAME}, PROCEED),
        ("GET", {"if-unmodified-since": LATER}, PROCEED),
        ("GET", {"if-unmodified-since": EARLIER}, FAILED),
        ("DELETE", {"if-unmodified-since": EARLIER}, FAILED),
        ("GET", {"if-unmodified-since": "not a date"}, PROCEED),
        ("GET", {"if-match": '"abc-123"', "if-unmodified-since": EARLIER}, PROCEED),
        ("GET", {"if-match": "*", "if-unmodified-since": EARLIER}, PROCEED),
        # If-None-Match: weak comparison; 304 for GET/HEAD, 412 for other methods.
        ("GET", {"if-none-match": '"abc-123"'}, NOT_MODIFIED),
        ("HEAD", {"if-none-match": '"abc-123"'}, NOT_MODIFIED),
        ("GET", {"if-none-match": 'W/"abc-123"'}, NOT_MODIFIED),
        ("GET", {"if-none-match": '"x", W/"abc-123"'}, NOT_MODIFIED),
        ("GET", {"if-none-match": "*"}, NOT_MODIFIED),
        ("GET", {"if-none-match": '"other"'}, PROCEED),
        ("GET", {"if-none-match": "junk"}, PROCEED),
        ("GET", {"if-none-match": '"ABC-123"'}, PROCEED),
        ("POST", {"if-none-match": '"abc-123"'}, FAILED),
        ("PUT", {"if-none-match": "*"}, FAILED),
        ("POST", {"if-none-match": '"other"'}, PROCEED),
        # If-Modified-Since, only for GET/HEAD and only without If-None-Match.
        ("GET", {"if-modified-since": SAME}, NOT_MODIFIED),
        ("HEAD", {"if-modified-since": SAME}, NOT_MODIFIED),
        ("GET", {"if-modified-since": LATER}, NOT_MODIFIED),
        ("GET", {"if-modified-since": EARLIER}, PROCEED),
        ("GET", {"if-modified-since": "Sunday, 06-Nov-94 08:49:37 GMT"}, NOT_MODIFIED),
        ("GET", {"if-modified-since": "Sun Nov  6 08:49:37 1994"}, NOT_MODIFIED),
        ("GET", {"if-modified-since": "yesterday"}, PROCEED),
        ("GET", {"if-modified-since": f"{SAME}, {SAME}"}, PROCEED),
        ("POST", {"if-modified-since": SAME}, PROCEED),
        ("PUT", {"if-modified-since": LATER}, PROCEED),
        ("GET", {"if-none-match": '"other"', "if-modified-since": SAME}, PROCEED),
        ("GET", {"if-none-match": "junk", "if-modified-since": SAME}, PROCEED),
        ("GET", {"if-none-match": '"abc-123"', "if-modified-since": EARLIER}, NOT_MODIFIED),
        # Precedence: a failed If-Match / If-Unmodified-Since beats a 304.
        ("GET", {"if-match": '"other"', "if-none-match": '"abc-123"'}, FAILED),
        ("GET", {"if-match": '"other"', "if-modified-since": SAME}, FAILED),
        ("GET", {"if-unmodified-since": EARLIER, "if-none-match": '"abc-123"'}, FAILED),
        ("GET", {"if-unmodified-since": EARLIER, "if-modified-since": SAME}, FAILED),
        # Both sides pass: the 304 stands.
        ("GET", {"if-match": '"abc-123"', "if-none-match": '"abc-123"'}, NOT_MODIFIED),
        ("GET", {"if-unmodified-since": LATER, "if-modified-since": LATER}, NOT_MODIFIED),
    ],
)
def test_evaluate_preconditions(
    method: str, headers: dict[str, str], expected: Precondition
) -> None:
    assert evaluate_preconditions(method, headers, V) is expected


# --- If-Range ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, True),
        ({"if-range": '"abc-123"'}, True),
        ({"if-range": ' "abc-123" '}, True),
        ({"if-range": '"other"'}, False),
        ({"if-range": 'W/"abc-123"'}, False),
        ({"if-range": '"abc-123", "other"'}, False),
        ({"if-range": '"abc-123'}, False),
        ({"if-range": SAME}, True),
        ({"if-range": "Sunday, 06-Nov-94 08:49:37 GMT"}, True),
        ({"if-range": "Sun Nov  6 08:49:37 1994"}, True),
        ({"if-range": EARLIER}, False),
        ({"if-range": LATER}, False),
        ({"if-range": "*"}, False),
        ({"if-range": ""}, False),
        ({"if-range": "garbage"}, False),
    ],
)
def test_if_range(headers: dict[str, str], expected: bool) -> None:
    assert if_range_matches(headers, V) is expected


def test_if_range_with_weak_validator_never_matches() -> None:
    weak = Validators(etag='W/"abc-123"', last_modified=LM)
    assert if_range_matches({"if-range": 'W/"abc-123"'}, weak) is False
    assert evaluate_preconditions("GET", {"if-match": 'W/"abc-123"'}, weak) is FAILED
    assert evaluate_preconditions("GET", {"if-none-match": '"abc-123"'}, weak) is NOT_MODIFIED


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=2**33))
def test_if_range_date_equality_property(ts: int) -> None:
    v = Validators(etag='"t"', last_modified=ts)
    assert if_range_matches({"if-range": http_date(ts)}, v)
    assert not if_range_matches({"if-range": http_date(ts + 1)}, v)
