"""Conditional requests: preconditions and If-Range."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slipstream.http.conditional import Precondition, evaluate_preconditions, if_range_matches
from slipstream.http.dates import http_date
from slipstream.http.validators import Validators

LM = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT
V = Validators(etag='"abc-123"', last_modified=LM)
SAME = "Sun, 06 Nov 1994 08:49:37 GMT"
EARLIER = "Sun, 06 Nov 1994 08:49:36 GMT"
LATER = "Sun, 06 Nov 1994 08:49:38 GMT"

PROCEED = Precondition.PROCEED
NOT_MODIFIED = Precondition.NOT_MODIFIED
FAILED = Precondition.FAILED


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
