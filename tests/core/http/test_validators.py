"""Entity tags and the choice of a strong validator."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slipstream.http.validators import (
    is_strong_etag,
    parse_etag_list,
    strong_match,
    strong_validator,
    weak_match,
)


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


@pytest.mark.parametrize(
    ("etag", "strong"),
    [('"a"', True), ('""', True), ('W/"a"', False), ("", False), (None, False)],
)
def test_is_strong_etag(etag: str | None, strong: bool) -> None:
    assert is_strong_etag(etag) is strong


@pytest.mark.parametrize(
    ("etag", "last_modified", "expected"),
    [
        ('"a"', "Sun, 06 Nov 1994 08:49:37 GMT", '"a"'),
        ('W/"a"', "Sun, 06 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 08:49:37 GMT"),
        (None, "Sun, 06 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ("", None, None),
        ('W/"a"', None, None),
    ],
)
def test_strong_validator_prefers_a_strong_etag(
    etag: str | None, last_modified: str | None, expected: str | None
) -> None:
    assert strong_validator(etag, last_modified) == expected
