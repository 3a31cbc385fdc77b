"""One job's transfer: how it reads the upstream's header fields."""

from __future__ import annotations

import httpx
import pytest

from slipstream.fetch import Fetched
from slipstream.jobs.transfer import _int_header


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1234", 1234), ("0", 0), ("²", None), ("١٢", None), ("+5", None), (" 5", None), ("", None)],
)
def test_a_length_is_ascii_digits_or_unknown(value: str, expected: int | None) -> None:
    fetched = Fetched.from_response(
        httpx.Response(200, headers=[(b"content-length", value.encode())]), "http://x/"
    )
    assert _int_header(fetched, "content-length") == expected


def test_an_absent_length_is_unknown() -> None:
    fetched = Fetched.from_response(httpx.Response(200), "http://x/")
    assert _int_header(fetched, "content-length") is None
