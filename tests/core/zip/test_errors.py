"""``slipstream.zip.errors``: the seed-004 table and the html / json / redirect replies."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import pytest

from slipstream.zip.errors import ALWAYS_HTML, ZIP_ERRORS, ZipError, render_error
from tests.helpers.zip import SEED_TABLE

EXTENSIONS = {"MALFORMED_UUID": 400, "MALFORMED_HEADER": 400, "STATE_UNAVAILABLE": 503}
RECORDS = ("https://a.example/x?k=1&s=2", "https://b.example/<script>alert(1)</script>")
REDIRECT = "https://mycompany.com/landing/fileslide-error"


def test_table_matches_the_seed() -> None:
    for key, entry in SEED_TABLE.items():
        assert ZIP_ERRORS[key] == entry
    assert set(ZIP_ERRORS) == set(SEED_TABLE) | set(EXTENSIONS)
    for key, status in EXTENSIONS.items():
        assert ZIP_ERRORS[key][0] == status and ZIP_ERRORS[key][1]


def test_error_value() -> None:
    error = ZipError("UNAUTHORIZED_URIS", iter(RECORDS), fmt="json")
    assert (error.key, error.status, error.records, error.fmt) == (
        "UNAUTHORIZED_URIS",
        403,
        RECORDS,
        "json",
    )
    assert error.message == SEED_TABLE["UNAUTHORIZED_URIS"][1]
    assert error.redirect_uri is None and error.size is None
    other = error.with_format("redirect", REDIRECT)
    assert (other.key, other.records, other.fmt, other.redirect_uri) == (
        "UNAUTHORIZED_URIS",
        RECORDS,
        "redirect",
        REDIRECT,
    )
    with pytest.raises(ValueError):
        ZipError("NOT_A_KEY")


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.items = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.items += tag == "li"

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    found = [v for n, v in headers if n.lower() == name.lower()]
    assert len(found) <= 1
    return found[0] if found else None


@pytest.mark.parametrize("key", sorted(ZIP_ERRORS))
def test_html(key: str) -> None:
    error = ZipError(key, RECORDS)
    status, headers, body = render_error(error, "html", None)
    assert status == ZIP_ERRORS[key][0]
    assert _header(headers, "Content-Type") == "text/html; charset=utf-8"
    assert _header(headers, "Cache-Control") == "no-store"
    page = body.decode("utf-8")
    assert "<script>" not in page  # records are escaped
    parser = _Text()
    parser.feed(page)
    text = "".join(parser.text)
    assert key in text and ZIP_ERRORS[key][1] in text
    assert all(r in text for r in RECORDS)
    assert parser.items == len(RECORDS)


@pytest.mark.parametrize("key", sorted(ZIP_ERRORS.keys() - ALWAYS_HTML))
def test_json(key: str) -> None:
    status, headers, body = render_error(ZipError(key, RECORDS), "json", REDIRECT)
    assert status == ZIP_ERRORS[key][0]
    assert _header(headers, "Content-Type") == "application/json"
    assert _header(headers, "Cache-Control") == "no-store"
    assert json.loads(body) == {
        "fs_error_key": key,
        "fs_error_message": ZIP_ERRORS[key][1],
        "fs_error_records": list(RECORDS),
    }


def test_json_without_records() -> None:
    _, _, body = render_error(ZipError("EMPTY_URI_LIST"), "json", None)
    assert json.loads(body)["fs_error_records"] == []


@pytest.mark.parametrize("key", sorted(ZIP_ERRORS.keys() - ALWAYS_HTML))
def test_redirect(key: str) -> None:
    status, headers, body = render_error(ZipError(key, RECORDS), "redirect", REDIRECT)
    assert (status, body) == (303, b"")
    assert _header(headers, "Cache-Control") == "no-store"
    location = _header(headers, "Location")
    assert location is not None
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == REDIRECT
    assert parse_qs(parts.query) == {"fs_error_key": [key], "fs_error_records": [";".join(RECORDS)]}


def test_redirect_matches_the_seed_example() -> None:
    records = [
        "https://mycompany.com/private/data/file1.pdf?presigned_key=ABC123",
        "https://backup.mycompany.com/private/2020/file2.mov?presigned_key=ABC123",
    ]
    _, headers, _ = render_error(ZipError("UNAUTHORIZED_URIS", records), "redirect", REDIRECT)
    assert _header(headers, "Location") == (
        "https://mycompany.com/landing/fileslide-error?fs_error_key=UNAUTHORIZED_URIS"
        "&fs_error_records=https%3A%2F%2Fmycompany.com%2Fprivate%2Fdata%2Ffile1.pdf%3F"
        "presigned_key%3DABC123%3Bhttps%3A%2F%2Fbackup.mycompany.com%2Fprivate%2F2020%2F"
        "file2.mov%3Fpresigned_key%3DABC123"
    )


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("https://x.example/err?lang=en", "https://x.example/err?lang=en&fs_error_key=UNKNOWN"),
        ("https://x.example/err?", "https://x.example/err?fs_error_key=UNKNOWN"),
        ("https://x.example/err#top", "https://x.example/err?fs_error_key=UNKNOWN#top"),
        ("https://x.example/é r", "https://x.example/%C3%A9%20r?fs_error_key=UNKNOWN"),
    ],
)
def test_redirect_uri_forms(uri: str, expected: str) -> None:
    _, headers, _ = render_error(ZipError("UNKNOWN"), "redirect", uri)
    assert _header(headers, "Location") == expected  # no records: no fs_error_records


@pytest.mark.parametrize("key", sorted(ALWAYS_HTML))
@pytest.mark.parametrize("fmt", ["json", "redirect"])
def test_always_html(key: str, fmt: str) -> None:
    status, headers, _ = render_error(ZipError(key), fmt, REDIRECT)
    assert status == ZIP_ERRORS[key][0]
    assert _header(headers, "Content-Type") == "text/html; charset=utf-8"
    assert _header(headers, "Location") is None


@pytest.mark.parametrize(("fmt", "uri"), [("redirect", None), ("redirect", ""), ("xml", None)])
def test_fallback_to_html(fmt: str, uri: str | None) -> None:
    status, headers, _ = render_error(ZipError("INVALID_URIS", ["x"]), fmt, uri)
    assert status == 400
    assert _header(headers, "Content-Type") == "text/html; charset=utf-8"


@pytest.mark.parametrize("fmt", ["html", "json"])
def test_416_carries_content_range(fmt: str) -> None:
    error = ZipError("RANGE_NOT_SATISFIABLE", size=12345)
    status, headers, _ = render_error(error, fmt, None)
    assert status == 416
    assert _header(headers, "Content-Range") == "bytes */12345"
    _, headers, _ = render_error(ZipError("MALFORMED_RANGE"), fmt, None)
    assert _header(headers, "Content-Range") is None  # size unknown
    _, headers, _ = error.with_format("redirect", REDIRECT).render()
    assert _header(headers, "Content-Range") is None


def test_unencodable_records_do_not_crash() -> None:
    error = ZipError("INVALID_URIS", ["https://x/\ud800"])
    for fmt in ("html", "json", "redirect"):
        status, headers, body = render_error(error, fmt, REDIRECT)
        assert status in (400, 303)
        for _, value in headers:
            assert re.fullmatch(r"[\x20-\x7e]*", value)
        if fmt == "json":
            assert json.loads(body)["fs_error_records"] == ["https://x/\ud800"]


def test_a_posts_download_expired_keeps_its_format() -> None:
    """DOWNLOAD_EXPIRED is HTML on the stream URL, but a POST that reuses a request id gets
    it in the format that POST asked for."""
    stream = ZipError("DOWNLOAD_EXPIRED", fmt="json")
    assert render_error(stream, "json", None)[1][0] == ("Content-Type", "text/html; charset=utf-8")
    post = ZipError("DOWNLOAD_EXPIRED", ["id-1"], fmt="json", html_only=False)
    status, headers, body = post.render()
    assert status == 404 and ("Content-Type", "application/json") in headers
    assert json.loads(body)["fs_error_records"] == ["id-1"]
    assert post.with_format("redirect", "https://e.example/x").render()[0] == 303
