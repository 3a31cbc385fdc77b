"""Zip-as-a-service (seed 004) over HTTP: ``POST /download`` and the errors of both routes.

The server fetches from a loopback :class:`~tests.helpers.upstream.Upstream`; the helpers
are in :mod:`tests.helpers.zip`.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import trio

from tests.helpers.server import Served, StartServer
from tests.helpers.upstream import Blob, Upstream
from tests.helpers.zip import (
    ERROR_PAGE,
    FORMATS,
    MESSAGES,
    check_error,
    create,
    expected_members,
    fetch,
    form_fields,
    format_params,
    member_bytes,
    post,
    read_zip,
    wait_expired,
    zip_server,
)

# --- the three encodings and the defaults ------------------------------------------------


@pytest.mark.parametrize("encoding", ["form-list", "form-json", "json"])
async def test_the_three_encodings_give_the_same_zip(
    start_server: StartServer, upstream: Upstream, three: list[str], encoding: str
) -> None:
    served = await zip_server(start_server, upstream)
    if encoding == "form-list":
        response = await post(served, fields=form_fields(three))
    elif encoding == "form-json":
        response = await post(served, fields=[("fs_uri_list", json.dumps(three))])
    else:
        response = await post(served, document={"fs_uri_list": three})
    assert response.status_code == 303, response.text
    zipped = await fetch(served, response.headers["location"])
    assert zipped.status_code == 200
    assert zipped.headers["content-type"] == "application/zip"
    assert zipped.headers["accept-ranges"] == "bytes"
    assert zipped.headers["etag"].startswith('"')
    assert int(zipped.headers["content-length"]) == len(zipped.content)
    assert read_zip(zipped.content) == expected_members()
    assert list(read_zip(zipped.content)) == ["m0.bin", "m1.bin", "m2.bin"]


async def test_defaults_file_name_and_random_request_id(
    start_server: StartServer, upstream: Upstream, three: list[str]
) -> None:
    served = await zip_server(start_server, upstream)
    first = await create(served, three)
    second = await create(served, three)
    ids = [path.removeprefix("/stream/") for path in (first, second)]
    assert ids[0] != ids[1]
    for ident in ids:
        assert str(uuid.UUID(ident)) == ident
    head = await fetch(served, first, "HEAD")
    assert head.status_code == 200
    assert head.headers["content-disposition"].startswith("attachment")
    assert 'filename="download.zip"' in head.headers["content-disposition"]
    # The same URIs make the same zip, whatever the id.
    assert (await fetch(served, second, "HEAD")).headers["etag"] == head.headers["etag"]


async def test_request_id_and_file_name_are_honoured(
    start_server: StartServer, upstream: Upstream, three: list[str]
) -> None:
    served = await zip_server(start_server, upstream)
    ident = "A1B2C3D4-0000-4000-8000-00000000ABCD"
    path = await create(served, three, request_id=ident, file_name="My files.zip")
    assert path == f"/stream/{ident.lower()}"
    head = await fetch(served, path, "HEAD")
    assert 'filename="My files.zip"' in head.headers["content-disposition"]
    by_json = await post(
        served,
        document={"fs_uri_list": three, "fs_request_id": str(uuid.UUID(int=7)), "x": 1},
    )
    assert by_json.headers["location"] == f"/stream/{uuid.UUID(int=7)}"


async def test_default_format_is_html_for_forms_and_json_for_json(
    start_server: StartServer, upstream: Upstream
) -> None:
    served = await zip_server(start_server, upstream)
    check_error(await post(served, fields=[("fs_file_name", "x.zip")]), "EMPTY_URI_LIST", "html")
    check_error(await post(served, document={"fs_uri_list": []}), "EMPTY_URI_LIST", "json")
    # A form without a Content-Type is still a form.
    no_type = await post(served, content=b"fs_uri_list%5B%5D=", content_type="")
    check_error(no_type, "INVALID_URIS", "html", [""])


# --- every error key of POST /download in each format -----------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
async def test_form_errors_in_each_format(
    start_server: StartServer, upstream: Upstream, fmt: str
) -> None:
    served = await zip_server(start_server, upstream)
    ok = upstream.add("/ok.bin", Blob(b"ok"))
    params = format_params(fmt)
    cases: list[tuple[list[tuple[str, str]], str, list[str]]] = [
        ([("fs_uri_list", "not json")], "MALFORMED_URI_LIST", []),
        ([("fs_uri_list", '{"a": 1}')], "MALFORMED_URI_LIST", []),
        ([("fs_uri_list", "[1, 2]")], "MALFORMED_URI_LIST", []),
        ([("fs_uri_list", "[]")], "EMPTY_URI_LIST", []),
        ([], "EMPTY_URI_LIST", []),
        (form_fields([ok, ok, "http://a.example/x", "http://a.example/x"]), "DUPLICATE_URIS",
         [ok, "http://a.example/x"]),
        (form_fields([ok, "ftp://h/x", "no scheme <b>&\"'"]), "INVALID_URIS",
         ["ftp://h/x", "no scheme <b>&\"'"]),
    ]  # fmt: skip
    for fields, key, records in cases:
        response = await post(served, fields=[*fields, *form_fields([], **params)])
        check_error(response, key, fmt, records)
    assert upstream.requests == [], "nothing is fetched for a request that is refused"


@pytest.mark.parametrize("fmt", FORMATS)
async def test_json_errors_in_each_format(
    start_server: StartServer, upstream: Upstream, fmt: str
) -> None:
    served = await zip_server(start_server, upstream)
    ok = upstream.add("/ok.bin", Blob(b"ok"))
    asked: dict[str, Any] = {"fs_response_format": fmt}
    if fmt == "redirect":
        asked["fs_error_redirect_uri"] = ERROR_PAGE
    cases: list[tuple[dict[str, Any], str, list[str]]] = [
        ({"fs_uri_list": "http://a.example/x"}, "MALFORMED_URI_LIST", []),
        ({"fs_uri_list": [ok, 5]}, "MALFORMED_URI_LIST", []),
        ({"fs_uri_list": []}, "EMPTY_URI_LIST", []),
        ({}, "EMPTY_URI_LIST", []),
        ({"fs_uri_list": [ok, ok]}, "DUPLICATE_URIS", [ok]),
        ({"fs_uri_list": [ok, "javascript:alert(1)"]}, "INVALID_URIS", ["javascript:alert(1)"]),
    ]
    for document, key, records in cases:
        check_error(await post(served, document={**document, **asked}), key, fmt, records)
    assert upstream.requests == []


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe", b""],
    ids=["broken", "array", "string", "binary", "empty"],
)
async def test_malformed_json_body_is_json(
    start_server: StartServer, upstream: Upstream, body: bytes
) -> None:
    served = await zip_server(start_server, upstream)
    response = await post(served, content=body, content_type="application/json")
    check_error(response, "MALFORMED_JSON_BODY", "json")


@pytest.mark.parametrize("encoding", ["form", "json"])
async def test_redirect_uri_errors_use_the_encodings_default(
    start_server: StartServer, upstream: Upstream, encoding: str
) -> None:
    served = await zip_server(start_server, upstream)
    ok = upstream.add("/ok.bin", Blob(b"ok"))
    fmt = "html" if encoding == "form" else "json"
    cases = [
        (None, "EMPTY_ERROR_REDIRECT_URI", []),
        ("", "EMPTY_ERROR_REDIRECT_URI", []),
        ("   ", "EMPTY_ERROR_REDIRECT_URI", []),
        ("/relative/page", "INVALID_ERROR_REDIRECT_URI", ["/relative/page"]),
        ("javascript:alert(1)", "INVALID_ERROR_REDIRECT_URI", ["javascript:alert(1)"]),
    ]
    for uri, key, records in cases:
        params = {"response_format": "redirect"}
        if uri is not None:
            params["error_redirect_uri"] = uri
        if encoding == "form":
            response = await post(served, fields=form_fields([ok], **params))
        else:
            document = {"fs_uri_list": [ok], **{f"fs_{k}": v for k, v in params.items()}}
            response = await post(served, document=document)
        check_error(response, key, fmt, records)


async def test_redirect_location_percent_encodes_the_records(
    start_server: StartServer, upstream: Upstream
) -> None:
    served = await zip_server(start_server, upstream, upstream.url("/allowed/"))
    refused = [upstream.url("/private/a%20b.pdf?key=1&x=;"), upstream.url("/private/%C3%BC")]
    response = await post(served, fields=form_fields(refused, **format_params("redirect")))
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.isascii() and " " not in location
    query = parse_qs(urlsplit(location).query)
    assert query["fs_error_key"] == ["UNAUTHORIZED_URIS"]
    # The records are joined with ';' (one record holds a ';' itself, as the seed allows).
    assert query["fs_error_records"] == [";".join(refused)]


# --- errors of GET /stream ------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
async def test_request_id_errors_are_always_html(
    start_server: StartServer, upstream: Upstream, three: list[str], fmt: str
) -> None:
    served = await zip_server(start_server, upstream)
    path = await create(served, three, **format_params(fmt))
    for bad in ["/stream", "/stream/"]:
        check_error(await fetch(served, bad), "MISSING_REQUEST_ID", "html")
    for bad in ["/stream/nope", "/stream/" + path[8:].upper().replace("-", ""), path + "x"]:
        check_error(await fetch(served, bad), "MALFORMED_UUID", "html")
    check_error(await fetch(served, f"/stream/{uuid.uuid4()}"), "DOWNLOAD_EXPIRED", "html")
    full = await fetch(served, path)
    assert full.status_code == 200
    # Expired by the full 200 (once that reply has closed): HTML whatever the format.
    await wait_expired(served, path)
    check_error(await fetch(served, path), "DOWNLOAD_EXPIRED", "html")
    head = await fetch(served, path, "HEAD")
    assert head.status_code == 404 and head.headers["content-type"].startswith("text/html")
    assert head.content == b""


@pytest.mark.parametrize("fmt", FORMATS)
async def test_range_errors_in_the_manifests_format(
    start_server: StartServer, upstream: Upstream, three: list[str], fmt: str
) -> None:
    served = await zip_server(start_server, upstream)
    path = await create(served, three, **format_params(fmt))
    size = int((await fetch(served, path, "HEAD")).headers["content-length"])
    cases = [
        ("items=0-5", "INVALID_RANGE_HEADER"),
        ("0-5", "INVALID_RANGE_HEADER"),
        ("bytes=0-1,5-6", "MULTIPART_UNSUPPORTED"),
        ("bytes=0-1, -5", "MULTIPART_UNSUPPORTED"),
        ("bytes=abc", "MALFORMED_RANGE"),
        ("bytes=9-2", "MALFORMED_RANGE"),
        ("bytes=-", "MALFORMED_RANGE"),
        (f"bytes={size}-", "RANGE_NOT_SATISFIABLE"),
        (f"bytes={size + 10}-{size + 20}", "RANGE_NOT_SATISFIABLE"),
        ("bytes=-0", "RANGE_NOT_SATISFIABLE"),
    ]
    for header, key in cases:
        response = await fetch(served, path, Range=header)
        check_error(response, key, fmt)
        if MESSAGES[key][0] == 416 and fmt != "redirect":
            assert response.headers["content-range"] == f"bytes */{size}", header
    # None of those delivered anything: the stream is still whole.
    again = await fetch(served, path)
    assert again.status_code == 200 and len(again.content) == size


@pytest.mark.parametrize("fmt", ["json", "redirect"])
async def test_malformed_request_id_in_a_post_uses_the_asked_format(
    start_server: StartServer, upstream: Upstream, three: list[str], fmt: str
) -> None:
    """The stream URL's MALFORMED_UUID is always HTML (it has no format of its own), but a
    bad ``fs_request_id`` in a POST comes with a format, as every other POST error does."""
    served = await zip_server(start_server, upstream)
    response = await post(
        served, fields=form_fields(three, request_id="nope", **format_params(fmt))
    )
    check_error(response, "MALFORMED_UUID", fmt, ["nope"])
    html = await post(served, fields=form_fields(three, request_id="nope"))
    check_error(html, "MALFORMED_UUID", "html", ["nope"])
    assert upstream.requests == []


async def test_post_only_and_no_auth_needed(
    start_server: StartServer, upstream: Upstream, three: list[str]
) -> None:
    served = await zip_server(start_server, upstream)
    assert (await fetch(served, "/download")).status_code == 405
    # No bearer token is needed (the security is the allow list).
    async with served.client() as client:
        response = await client.post("/download", data={"fs_uri_list[]": three})
    assert response.status_code == 303


# --- a request id posted again ------------------------------------------------------------


async def test_the_same_request_again_is_idempotent(
    start_server: StartServer, upstream: Upstream, three: list[str]
) -> None:
    """Same id (in any letter case) and same parameters: the same stream, nothing probed
    again; two spellings of the same URIs are the same parameters."""
    served = await zip_server(start_server, upstream)
    ident = str(uuid.uuid4())
    path = await create(served, three, request_id=ident, file_name="a.zip")
    head = await fetch(served, path, "HEAD")
    probes = len(upstream.requests)
    respelled = [uri.replace("/files/", "/files/./") for uri in three]
    for again_id, uris in [(ident.upper(), three), (ident, respelled)]:
        again = await create(served, uris, request_id=again_id, file_name="a.zip")
        assert again == path
    assert len(upstream.requests) == probes
    assert (await fetch(served, path, "HEAD")).headers["etag"] == head.headers["etag"]


@pytest.mark.parametrize("fmt", FORMATS)
async def test_the_same_id_with_other_parameters_is_refused(
    start_server: StartServer, upstream: Upstream, three: list[str], fmt: str
) -> None:
    served = await zip_server(start_server, upstream)
    ident = str(uuid.uuid4())
    params = format_params(fmt)
    path = await create(served, three, request_id=ident, **params)
    head = await fetch(served, path, "HEAD")
    probes = len(upstream.requests)
    changes: list[tuple[list[str], dict[str, str]]] = [
        (three[:2], {}),
        (three[::-1], {}),
        (three, {"file_name": "other.zip"}),
        (three, {"fs_add_header-X-Key": "k"}),
        (three, {"forward_all_headers": "true"}),
    ]
    for uris, extra in changes:
        response = await post(
            served, fields=form_fields(uris, request_id=ident.upper(), **params, **extra)
        )
        check_error(response, "DOWNLOAD_EXPIRED", fmt, [ident])
    assert len(upstream.requests) == probes  # refused before any fetch
    # The stream still serves what it served: a resuming client splices nothing.
    again = await fetch(served, path, "HEAD")
    assert again.status_code == 200 and again.headers["etag"] == head.headers["etag"]


@pytest.mark.parametrize("fmt", FORMATS)
async def test_an_expired_id_is_not_revived(
    start_server: StartServer, upstream: Upstream, three: list[str], fmt: str
) -> None:
    served = await zip_server(start_server, upstream)
    ident = str(uuid.uuid4())
    path = await create(served, three, request_id=ident, **format_params(fmt))
    assert (await fetch(served, path)).status_code == 200
    await wait_expired(served, path)
    probes = len(upstream.requests)
    response = await post(served, fields=form_fields(three, request_id=ident, **format_params(fmt)))
    check_error(response, "DOWNLOAD_EXPIRED", fmt, [ident])
    assert len(upstream.requests) == probes
    check_error(await fetch(served, path), "DOWNLOAD_EXPIRED", "html")


async def test_two_posts_of_one_new_id_at_once_make_one_stream(
    start_server: StartServer, upstream: Upstream
) -> None:
    served = await zip_server(start_server, upstream)
    slow = [
        upstream.add(f"/slow/{n}.bin", Blob(member_bytes(n, 100), delay_head=0.2)) for n in range(2)
    ]
    ident = str(uuid.uuid4())
    locations: list[str] = []

    async def one() -> None:
        locations.append(await create(served, slow, request_id=ident))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one)
        nursery.start_soon(one)
    assert locations == [f"/stream/{ident}"] * 2
    assert len(upstream.requests) == 2  # one probe per URI


# --- forwarded credentials do not outlive their stream --------------------------------------


def state_files(served: Served) -> bytes:
    """Every byte of the zip service's SQLite files."""
    folder = served.server.services.config.state_path
    return b"".join(p.read_bytes() for p in sorted(folder.glob("zip.sqlite3*")))


async def test_forwarded_headers_are_erased_when_the_stream_expires(
    start_server: StartServer, upstream: Upstream, three: list[str]
) -> None:
    served = await zip_server(start_server, upstream)
    secret = "Bearer forwarded-credential-e91c4d"
    response = await post(
        served,
        fields=form_fields(
            three, forward_all_headers="true", **{"fs_add_header-X-Key": "added-1f3"}
        ),
        headers={"Authorization": secret},
    )
    assert response.status_code == 303, response.text
    path = response.headers["location"]
    files = state_files(served)
    assert secret.encode() in files and b"added-1f3" in files  # kept while the stream lives
    assert (await fetch(served, path)).status_code == 200
    await wait_expired(served, path)
    with trio.fail_after(5):  # the store erases in a worker thread, just after the expiry
        while secret.encode() in state_files(served):
            await trio.sleep(0.02)
    assert b"added-1f3" not in state_files(served)
