"""``slipstream.zip.form``: the three encodings of ``POST /download``, errors, forwarding."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest

from slipstream.zip.errors import ZipError
from slipstream.zip.form import ZipRequest, forwarded_headers, parse_zip_request

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
URIS = [
    "https://mycompany.com/private/data/file1.pdf?presigned_key=ABC123",
    "https://backup.mycompany.com/private/2020/file2.mov?presigned_key=ABC123",
]
REDIRECT = "https://mycompany.com/landing/fileslide-error"

Encoder = Callable[[dict[str, Any]], tuple[str, bytes]]


def _form_fields(params: dict[str, Any]) -> list[tuple[str, str]]:
    fields: list[tuple[str, str]] = []
    for key, value in params.items():
        if key == "fs_uri_list":
            continue
        values = value if isinstance(value, list) else [value]
        fields += [(key, v if isinstance(v, str) else json.dumps(v)) for v in values]
    return fields


def form_list(params: dict[str, Any]) -> tuple[str, bytes]:
    """Encoding 1: repeated ``fs_uri_list[]``."""
    uris = [("fs_uri_list[]", u) for u in params.get("fs_uri_list", [])]
    return FORM, urlencode(uris + _form_fields(params)).encode()


def form_json(params: dict[str, Any]) -> tuple[str, bytes]:
    """Encoding 2: one ``fs_uri_list`` holding a JSON array."""
    fields = _form_fields(params)
    if "fs_uri_list" in params:
        fields.insert(0, ("fs_uri_list", json.dumps(params["fs_uri_list"])))
    return FORM + "; charset=UTF-8", urlencode(fields).encode()


def json_body(params: dict[str, Any]) -> tuple[str, bytes]:
    """Encoding 3: a JSON object."""
    return JSON, json.dumps(params).encode()


ENCODERS: dict[str, Encoder] = {"form_list": form_list, "form_json": form_json, "json": json_body}
DEFAULT_FORMAT = {"form_list": "html", "form_json": "html", "json": "json"}


@pytest.fixture(params=sorted(ENCODERS))
def encoding(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def parse(encoding: str, params: dict[str, Any]) -> ZipRequest:
    content_type, body = ENCODERS[encoding](params)
    return parse_zip_request(content_type, body)


def fails(encoding: str, params: dict[str, Any], key: str) -> ZipError:
    with pytest.raises(ZipError) as info:
        parse(encoding, params)
    assert info.value.key == key
    return info.value


# --- success --------------------------------------------------------------------------


def test_defaults(encoding: str) -> None:
    request = parse(encoding, {"fs_uri_list": URIS})
    assert request.uris == tuple(URIS)
    assert str(uuid.UUID(request.request_id)) == request.request_id
    assert uuid.UUID(request.request_id).version == 4
    assert request.file_name == "download.zip"
    assert request.forward_all_headers is False
    assert request.add_headers == ()
    assert request.response_format == DEFAULT_FORMAT[encoding]
    assert request.error_redirect_uri is None
    assert parse(encoding, {"fs_uri_list": URIS}).request_id != request.request_id


def test_every_parameter(encoding: str) -> None:
    request_id = "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE"
    request = parse(
        encoding,
        {
            "fs_uri_list": URIS,
            "fs_request_id": request_id,
            "fs_file_name": "demo_download.zip",
            "fs_forward_all_headers": "true",
            "fs_add_header-Authorization": "Bearer ABC123",
            "fs_add_header-X-Trace": " t1 ",
            "fs_response_format": "redirect",
            "fs_error_redirect_uri": REDIRECT,
        },
    )
    assert request == ZipRequest(
        uris=tuple(URIS),
        request_id=request_id.lower(),
        file_name="demo_download.zip",
        forward_all_headers=True,
        add_headers=(("Authorization", "Bearer ABC123"), ("X-Trace", "t1")),
        response_format="redirect",
        error_redirect_uri=REDIRECT,
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("on", True),
        ("yes", True),
        ("false", False),
        ("0", False),
        ("off", False),
        ("", False),
        ("maybe", False),
    ],
)
def test_forward_all_headers_is_lenient(encoding: str, raw: str, expected: bool) -> None:
    request = parse(encoding, {"fs_uri_list": URIS, "fs_forward_all_headers": raw})
    assert request.forward_all_headers is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(True, True), (False, False), (1, True), (0, False), (2.5, True), (None, False), ([], False)],
)
def test_forward_all_headers_json_values(raw: object, expected: bool) -> None:
    request = parse("json", {"fs_uri_list": URIS, "fs_forward_all_headers": raw})
    assert request.forward_all_headers is expected


@pytest.mark.parametrize("fmt", ["html", "json", "redirect", "HTML", " Json "])
def test_response_formats(encoding: str, fmt: str) -> None:
    request = parse(
        encoding,
        {"fs_uri_list": URIS, "fs_response_format": fmt, "fs_error_redirect_uri": REDIRECT},
    )
    assert request.response_format == fmt.strip().lower()
    assert request.error_redirect_uri == (
        REDIRECT if request.response_format == "redirect" else None
    )


def test_unknown_format_is_the_default(encoding: str) -> None:
    request = parse(encoding, {"fs_uri_list": URIS, "fs_response_format": "xml"})
    assert request.response_format == DEFAULT_FORMAT[encoding]
    # a bad redirect URI is not checked when the format is not redirect
    request = parse(
        encoding,
        {"fs_uri_list": URIS, "fs_response_format": "json", "fs_error_redirect_uri": "ftp://x"},
    )
    assert request.error_redirect_uri is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("", "download.zip"),
        ("../../etc/x.zip", ".._.._etc_x.zip"),
        ("C:\\x.zip", "C__x.zip"),
        ("résumé.zip", "résumé.zip"),
    ],
)
def test_file_name_is_made_safe(encoding: str, name: str, expected: str) -> None:
    assert parse(encoding, {"fs_uri_list": URIS, "fs_file_name": name}).file_name == expected


@pytest.mark.parametrize(
    "request_id",
    ["", "  ", "a8098c1a-f86e-11da-bd1a-00112444be1e", "{A8098C1A-F86E-11DA-BD1A-00112444BE1E}"],
)
def test_request_id_forms(encoding: str, request_id: str) -> None:
    got = parse(encoding, {"fs_uri_list": URIS, "fs_request_id": request_id}).request_id
    assert str(uuid.UUID(got)) == got
    if request_id.strip():
        assert got == "a8098c1a-f86e-11da-bd1a-00112444be1e"


def test_uris_are_stripped(encoding: str) -> None:
    assert parse(encoding, {"fs_uri_list": [f" {URIS[0]}\n"]}).uris == (URIS[0],)


def test_repeated_add_headers_in_a_form() -> None:
    body = urlencode(
        [
            ("fs_uri_list[]", URIS[0]),
            ("fs_add_header-X-A", "1"),
            ("fs_add_header-X-A", "2"),
            ("fs_file_name", "first.zip"),
            ("fs_file_name", "last.zip"),
        ]
    ).encode()
    request = parse_zip_request(FORM, body)
    assert request.add_headers == (("X-A", "1"), ("X-A", "2"))
    assert request.file_name == "last.zip"


def test_json_header_lists_and_wrong_types() -> None:
    body = {
        "fs_uri_list": URIS,
        "fs_add_header-X-A": ["1", "2"],
        "fs_file_name": 3,
        "fs_response_format": ["redirect"],
    }
    request = parse_zip_request(JSON, json.dumps(body).encode())
    assert request.add_headers == (("X-A", "1"), ("X-A", "2"))
    assert request.file_name == "download.zip"
    assert request.response_format == "json"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (None, urlencode({"fs_uri_list[]": URIS[0]}).encode()),
        ("text/plain", urlencode({"fs_uri_list[]": URIS[0]}).encode()),
        ("Application/JSON; charset=utf-8", json.dumps({"fs_uri_list": URIS[:1]}).encode()),
        ("application/vnd.api+json", json.dumps({"fs_uri_list": URIS[:1]}).encode()),
    ],
)
def test_content_types(content_type: str | None, body: bytes) -> None:
    assert parse_zip_request(content_type, body).uris == (URIS[0],)


# --- errors, in every encoding ---------------------------------------------------------


def test_malformed_json_body() -> None:
    for body in [b"{", b"[1, 2]", b'"fs_uri_list"', b"\xff\xfe{", b"", b"[" * 100_000]:
        with pytest.raises(ZipError) as info:
            parse_zip_request(JSON, body)
        assert info.value.key == "MALFORMED_JSON_BODY"
        assert (info.value.status, info.value.fmt) == (400, "json")


@pytest.mark.parametrize("raw", ["https://x.example/a", {"a": 1}, [1, 2], [URIS[0], None], 7])
def test_malformed_uri_list_json(raw: object) -> None:
    error = fails("json", {"fs_uri_list": raw, "fs_response_format": "html"}, "MALFORMED_URI_LIST")
    assert error.fmt == "html"


@pytest.mark.parametrize(
    "fields",
    [
        [("fs_uri_list", "not json")],
        [("fs_uri_list", URIS[0])],
        [("fs_uri_list", '{"a": 1}')],
        [("fs_uri_list", "[1, 2]")],
        [("fs_uri_list", "[" * 100_000)],
        [("fs_uri_list", json.dumps(URIS)), ("fs_uri_list[]", URIS[0])],
        [("fs_uri_list", json.dumps(URIS[:1])), ("fs_uri_list", json.dumps(URIS[1:]))],
    ],
)
def test_malformed_uri_list_form(fields: list[tuple[str, str]]) -> None:
    with pytest.raises(ZipError) as info:
        parse_zip_request(FORM, urlencode([*fields, ("fs_response_format", "json")]).encode())
    assert info.value.key == "MALFORMED_URI_LIST"
    assert (info.value.status, info.value.fmt) == (400, "json")


@pytest.mark.parametrize("params", [{}, {"fs_uri_list": []}, {"fs_file_name": "x.zip"}])
def test_empty_uri_list(encoding: str, params: dict[str, Any]) -> None:
    error = fails(encoding, params, "EMPTY_URI_LIST")
    assert error.fmt == DEFAULT_FORMAT[encoding] and error.records == ()


def test_duplicate_uris(encoding: str) -> None:
    uris = [URIS[0], URIS[1], URIS[0], " " + URIS[1], URIS[0], "not a uri"]
    error = fails(encoding, {"fs_uri_list": uris}, "DUPLICATE_URIS")
    assert error.records == (URIS[0], URIS[1])


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "ftp://x.example/file",
        "file:///etc/passwd",
        "/relative/path",
        "x.example/file",
        "https://",
        "https://x.example:99999/",
        "https://x .example/",
        "https://x.example\\@evil/",
        "javascript:alert(1)",
    ],
)
def test_invalid_uris(encoding: str, bad: str) -> None:
    error = fails(
        encoding,
        {
            "fs_uri_list": [URIS[0], bad, URIS[1]],
            "fs_response_format": "redirect",
            "fs_error_redirect_uri": REDIRECT,
        },
        "INVALID_URIS",
    )
    assert error.records == (bad.strip(),)
    assert (error.fmt, error.redirect_uri) == ("redirect", REDIRECT)


@pytest.mark.parametrize("uri", [None, "", "   "])
def test_empty_error_redirect_uri(encoding: str, uri: str | None) -> None:
    params: dict[str, Any] = {"fs_uri_list": URIS, "fs_response_format": "redirect"}
    if uri is not None:
        params["fs_error_redirect_uri"] = uri
    error = fails(encoding, params, "EMPTY_ERROR_REDIRECT_URI")
    assert (error.fmt, error.redirect_uri) == (DEFAULT_FORMAT[encoding], None)


@pytest.mark.parametrize(
    "uri", ["/landing/error", "mailto:a@b.example", "ftp://x.example/", "https://", "http://a b/"]
)
def test_invalid_error_redirect_uri(encoding: str, uri: str) -> None:
    params = {"fs_uri_list": URIS, "fs_response_format": "redirect", "fs_error_redirect_uri": uri}
    error = fails(encoding, params, "INVALID_ERROR_REDIRECT_URI")
    assert (error.fmt, error.redirect_uri) == (DEFAULT_FORMAT[encoding], None)


@pytest.mark.parametrize("request_id", ["42", "not-a-uuid", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeeg"])
def test_malformed_uuid(encoding: str, request_id: str) -> None:
    error = fails(encoding, {"fs_uri_list": URIS, "fs_request_id": request_id}, "MALFORMED_UUID")
    assert error.records == (request_id,)


def test_malformed_uuid_of_another_json_type() -> None:
    error = fails("json", {"fs_uri_list": URIS, "fs_request_id": 42}, "MALFORMED_UUID")
    assert error.records == ("42",)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("", "v"),
        ("Bad Name", "v"),
        ("X(y)", "v"),
        ("X-Ok", "line\r\nInjected: yes"),
        ("X-Ok", "nul\x00"),
        ("X-Ok", "bell\x07"),
        ("X-Ok", "caf\u00e9"),
    ],
)
def test_malformed_header(encoding: str, name: str, value: str) -> None:
    params = {"fs_uri_list": URIS, f"fs_add_header-{name}": value, "fs_add_header-X-Fine": "1"}
    error = fails(encoding, params, "MALFORMED_HEADER")
    assert error.records == (f"fs_add_header-{name}",)
    assert error.fmt == DEFAULT_FORMAT[encoding]


def test_malformed_header_json_types() -> None:
    for value in [1, None, ["ok", 2], {"a": "b"}]:
        fails("json", {"fs_uri_list": URIS, "fs_add_header-X": value}, "MALFORMED_HEADER")


def test_errors_come_in_request_order(encoding: str) -> None:
    # the redirect URI is checked before the URI list, which is checked before the id
    params: dict[str, Any] = {"fs_response_format": "redirect", "fs_request_id": "bad"}
    fails(encoding, params, "EMPTY_ERROR_REDIRECT_URI")
    params["fs_error_redirect_uri"] = REDIRECT
    fails(encoding, params, "EMPTY_URI_LIST")
    params["fs_uri_list"] = URIS
    fails(encoding, params, "MALFORMED_UUID")


# --- header forwarding ----------------------------------------------------------------

CLIENT = [
    ("Host", "zip.example"),
    ("User-Agent", "curl/8"),
    ("Accept", "*/*"),
    ("Authorization", "Bearer from-client"),
    ("Cookie", "session=1"),
    ("Connection", "keep-alive, X-Hop"),
    ("X-Hop", "gone"),
    ("Keep-Alive", "timeout=5"),
    ("Proxy-Authorization", "Basic x"),
    ("Proxy-Connection", "close"),
    ("TE", "trailers"),
    ("Trailer", "X"),
    ("Transfer-Encoding", "chunked"),
    ("Upgrade", "websocket"),
    ("Range", "bytes=0-0"),
    ("If-None-Match", '"x"'),
    ("If-Range", '"x"'),
    ("If-Modified-Since", "Wed, 21 Oct 2015 07:28:00 GMT"),
    ("Accept-Encoding", "gzip"),
    ("Content-Length", "42"),
    ("Content-Type", FORM),
    ("Content-Encoding", "gzip"),
    ("Expect", "100-continue"),
    ("x-custom", "kept"),
]
KEPT = [
    ("User-Agent", "curl/8"),
    ("Accept", "*/*"),
    ("Authorization", "Bearer from-client"),
    ("Cookie", "session=1"),
    ("x-custom", "kept"),
]


def _request(forward: bool, add: tuple[tuple[str, str], ...] = ()) -> ZipRequest:
    return ZipRequest(
        uris=(URIS[0],),
        request_id=str(uuid.uuid4()),
        file_name="download.zip",
        forward_all_headers=forward,
        add_headers=add,
        response_format="json",
        error_redirect_uri=None,
    )


def test_forward_all_filters_hop_by_hop_and_request_specific_headers() -> None:
    assert forwarded_headers(_request(True), CLIENT) == KEPT


def test_nothing_is_forwarded_by_default() -> None:
    assert forwarded_headers(_request(False), CLIENT) == []


def test_added_headers() -> None:
    add = (("X-Api-Key", "k1"), ("x-api-key", "k2"), ("Range", "bytes=0-"), ("Host", "evil"))
    assert forwarded_headers(_request(False, add), CLIENT) == [
        ("X-Api-Key", "k1"),
        ("x-api-key", "k2"),
    ]


def test_forwarded_headers_take_precedence_over_added_ones() -> None:
    add = (("authorization", "Bearer added"), ("X-Only-Added", "1"), ("If-Match", "*"))
    assert forwarded_headers(_request(True, add), CLIENT) == [*KEPT, ("X-Only-Added", "1")]


def test_added_header_named_in_connection_is_still_added() -> None:
    # Connection's list removes the *client's* hop-by-hop headers, not the added ones
    add = (("X-Hop", "added"),)
    assert forwarded_headers(_request(True, add), CLIENT) == [*KEPT, ("X-Hop", "added")]


def test_parsed_request_forwarding_end_to_end() -> None:
    body = urlencode(
        [
            ("fs_uri_list[]", URIS[0]),
            ("fs_forward_all_headers", "on"),
            ("fs_add_header-Authorization", "Bearer added"),
            ("fs_add_header-X-Added", "yes"),
        ]
    ).encode()
    request = parse_zip_request(FORM, body)
    assert forwarded_headers(request, CLIENT) == [*KEPT, ("X-Added", "yes")]
