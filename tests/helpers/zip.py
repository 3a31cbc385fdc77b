"""Zip-as-a-service over HTTP: posting, fetching and reading zips, and checking error replies.

:data:`SEED_TABLE` is the contract's table of error keys (status, message);
:data:`MESSAGES` adds the keys the server added.
"""

from __future__ import annotations

import io
import json
import socket
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import trio

from tests.helpers.server import Served, StartServer
from tests.helpers.upstream import Blob, Upstream

SEED_TABLE = {
    "MALFORMED_JSON_BODY": (
        400,
        "The request body must be valid JSON when using the application/json content type header",
    ),
    "MALFORMED_URI_LIST": (
        400,
        "The fs_uri_list parameter value must either be a form-url encoded or json encoded array",
    ),
    "EMPTY_URI_LIST": (400, "The fs_uri_list parameter value must contain at least one URI"),
    "DUPLICATE_URIS": (400, "The fs_uri_list parameter value contains duplicate URIs"),
    "INVALID_URIS": (400, "The fs_uri_list parameter value contains one or more invalid URIs"),
    "MISSING_REQUEST_ID": (400, "This URL is missing a Request ID"),
    "EMPTY_ERROR_REDIRECT_URI": (
        400,
        "The fs_error_redirect_uri parameter value is empty and is required for redirect "
        "response format",
    ),
    "INVALID_ERROR_REDIRECT_URI": (
        400,
        "The fs_error_redirect_uri parameter value is invalid and is required for redirect "
        "response format",
    ),
    "DOWNLOAD_EXPIRED": (404, "This download is unavailable or has expired"),
    "INVALID_RANGE_HEADER": (400, "Range header must start with bytes="),
    "MULTIPART_UNSUPPORTED": (416, "Multipart ranges are not supported"),
    "MALFORMED_RANGE": (416, "Range could not be parsed"),
    "RANGE_NOT_SATISFIABLE": (416, "Start of range outside zip size"),
    "UNAUTHORIZED_URIS": (
        403,
        "One or more of the files requested for zipping have not been permitted",
    ),
    "UPSTREAM_ERROR": (500, "Could not connect to authorization server"),
    "CHECKSUM_ERROR": (500, "Error occurred during checksum computation"),
    "FAILED_FETCHING_URIS": (
        502,
        "One or more of the files requested for zipping could not be fetched",
    ),
    "UNKNOWN": (500, "Unknown server error"),
}


POST_TIMEOUT = 10.0
"""Seconds to wait for the reply to a POST (it probes the upstream first)."""
MESSAGES = {
    **SEED_TABLE,
    # Not in the seed's tables: a bad fs_request_id / stream id and a bad fs_add_header-*.
    "MALFORMED_UUID": (400, "The Request ID in this URL is not a valid UUID"),
    "MALFORMED_HEADER": (400, "An fs_add_header- parameter has an invalid header name or value"),
}
"""The seed's table (status, message), plus the two keys we added."""
ERROR_PAGE = "https://errors.example/landing?from=zip"
FORMATS = ("html", "json", "redirect")


def member_bytes(n: int, size: int) -> bytes:
    """Deterministic, distinct content for member ``n``."""
    pattern = f"<{n}> member ".encode() + bytes(range(256))
    return (pattern * (size // len(pattern) + 1))[:size]


async def zip_server(
    start_server: StartServer, upstream: Upstream, *prefixes: str, **overrides: Any
) -> Served:
    """A server whose zip allow list is ``prefixes`` (default: the whole upstream)."""
    allow = list(prefixes) if prefixes else [upstream.url("/")]
    return await start_server(zip_allow_prefixes=allow, **overrides)


def form_fields(uris: Sequence[str], **params: str) -> list[tuple[str, str]]:
    """Encoding 1: repeated ``fs_uri_list[]`` plus ``params`` (``fs_`` added to the names)."""
    fields = [("fs_uri_list[]", uri) for uri in uris]
    return fields + [(key if key.startswith("fs") else f"fs_{key}", v) for key, v in params.items()]


async def post(
    served: Served,
    *,
    fields: Sequence[tuple[str, str]] | None = None,
    document: Any = None,
    content: bytes | None = None,
    content_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """``POST /download`` as a form (``fields``), JSON (``document``) or raw ``content``."""
    extra = dict(headers or {})
    body: bytes
    if fields is not None:
        body = urlencode(list(fields)).encode()
        extra.setdefault("Content-Type", "application/x-www-form-urlencoded")
    elif content is not None:
        body = content
    else:
        body = json.dumps(document).encode()
        extra.setdefault("Content-Type", "application/json")
    if content_type is not None:
        extra["Content-Type"] = content_type
    async with served.client() as client:
        return await client.post("/download", content=body, headers=extra)


async def create(served: Served, uris: Sequence[str], **params: str) -> str:
    """POST a form for ``uris``; assert the 303 and return its ``/stream/<uuid>`` path."""
    response = await post(served, fields=form_fields(uris, **params))
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith("/stream/")
    return location


async def fetch(served: Served, path: str, method: str = "GET", **headers: str) -> httpx.Response:
    """One request to ``path`` (header names with ``_`` become ``-``)."""
    sent = {name.replace("_", "-"): value for name, value in headers.items()}
    async with served.client() as client:
        return await client.request(method, path, headers=sent)


async def wait_expired(served: Served, path: str) -> None:
    """Poll until ``path`` answers 404 (a reply that completed the delivery may still be
    closing when the client has its last byte)."""
    with trio.fail_after(5):
        while (await fetch(served, path, "HEAD")).status_code != 404:
            await trio.sleep(0.02)


@dataclass
class Partial:
    """A reply read as far as the server sent it."""

    status: int
    headers: httpx.Headers
    body: bytes
    complete: bool

    @property
    def length(self) -> int:
        """The announced ``Content-Length``."""
        return int(self.headers["content-length"])


async def fetch_partial(served: Served, path: str, **headers: str) -> Partial:
    """GET ``path`` and keep whatever body arrived, noting whether it was complete.

    A connection closed before any response head gives status 0 and no headers.
    """
    sent = {name.replace("_", "-"): value for name, value in headers.items()}
    received = bytearray()
    async with served.client() as client:
        try:
            async with client.stream("GET", path, headers=sent) as reply:
                try:
                    async for chunk in reply.aiter_raw():
                        received += chunk
                except httpx.RemoteProtocolError:
                    return Partial(reply.status_code, reply.headers, bytes(received), False)
                return Partial(reply.status_code, reply.headers, bytes(received), True)
        except httpx.RemoteProtocolError:
            return Partial(0, httpx.Headers(), b"", False)


def read_zip(data: bytes) -> dict[str, bytes]:
    """Members of ``data`` by name, after ``zipfile``'s CRC check of every member."""
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
    return {info.filename: archive.read(info) for info in archive.infolist()}


def check_error(response: httpx.Response, key: str, fmt: str, records: Sequence[str] = ()) -> None:
    """``response`` is error ``key`` rendered in ``fmt`` with exactly ``records``."""
    status, message = MESSAGES[key]
    if fmt == "redirect":
        assert response.status_code == 303, response.text
        location = urlsplit(response.headers["location"])
        assert location.scheme == "https" and location.netloc == "errors.example"
        assert location.path == "/landing"
        query = parse_qs(location.query, keep_blank_values=True)
        assert query["from"] == ["zip"]
        assert query["fs_error_key"] == [key]
        if records:
            assert query["fs_error_records"][0].split(";") == list(records)
        else:
            assert "fs_error_records" not in query
        return
    assert response.status_code == status, response.text
    if fmt == "json":
        assert response.headers["content-type"].startswith("application/json")
        assert response.json() == {
            "fs_error_key": key,
            "fs_error_message": message,
            "fs_error_records": list(records),
        }
        return
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert key in page
    assert message in page
    for record in records:
        escaped = record.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        escaped = escaped.replace('"', "&quot;").replace("'", "&#x27;")
        assert escaped in page, record
        if escaped != record:
            assert record not in page, f"unescaped record {record!r} in the page"


def format_params(fmt: str) -> dict[str, str]:
    """Form parameters asking for ``fmt`` (with the error page for ``redirect``)."""
    params = {"response_format": fmt}
    if fmt == "redirect":
        params["error_redirect_uri"] = ERROR_PAGE
    return params


def refused_port() -> int:
    """A loopback port with nothing listening (bound then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def add_three(upstream: Upstream) -> list[str]:
    """Three small members on the upstream; their URIs."""
    return [upstream.add(f"/files/m{n}.bin", Blob(member_bytes(n, 1000 + n))) for n in range(3)]


def expected_members(count: int = 3) -> dict[str, bytes]:
    return {f"m{n}.bin": member_bytes(n, 1000 + n) for n in range(count)}
