"""Each API surface owns the shape of its errors, also for errors raised before any of
its routes runs: under ``/v2/`` (the drive API, seed 003) every error is
``{"code", "message"}``, elsewhere ``{"error"}``; every 405 carries ``Allow``.
"""

from __future__ import annotations

import contextlib
from typing import Any

import h11
import pytest
import trio

from tests.helpers.raw_http import RawClient, RawResponse, exchange, get
from tests.helpers.server import TOKEN, Served, StartServer

AUTH = f"Authorization: Bearer {TOKEN}"


def assert_drive_error(response: RawResponse, status: int, code: str) -> str:
    """A drive-shaped reply ``{"code": code, "message": ...}`` with ``status``."""
    assert response.status == status, (response.status, response.body[:300])
    assert response.header("content-type") == "application/json"
    payload = response.json()
    assert list(payload) == ["code", "message"], payload
    assert payload["code"] == code, payload
    assert isinstance(payload["message"], str) and payload["message"]
    return str(payload["message"])


def parse_reply(data: bytes, method: str = "GET") -> RawResponse:
    """The one reply in ``data`` (everything a server sent before closing)."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    conn.receive_data(b"")
    head: Any = conn.next_event()
    assert isinstance(head, h11.Response), head
    body = bytearray()
    while isinstance(event := conn.next_event(), h11.Data):
        body += event.data
    headers = [(k.decode().lower(), v.decode("latin-1")) for k, v in head.headers]
    return RawResponse(head.status_code, headers, bytes(body))


async def ask(served: Served, method: str, target: str, *headers: str) -> RawResponse:
    client = await served.raw()
    try:
        body = b"{}" if method in ("POST", "PUT", "PATCH") else b""
        await client.send(get(target, *headers, f"Content-Length: {len(body)}", method=method))
        await client.send(body)
        return await client.read_response(method)
    finally:
        await client.aclose()


ALLOW_CASES = [
    ("POST", "/healthz", "GET, HEAD"),
    ("OPTIONS", "/healthz", "GET, HEAD"),
    ("DELETE", "/api/download", "GET, HEAD"),
    ("PUT", "/api/zip", "GET, HEAD"),
    ("GET", "/download", "POST"),
    ("POST", "/stream", "GET, HEAD"),
    ("POST", "/stream/0b1e6d1c-3a58-4f4e-a0d4-3c0b8c0f9a11", "GET, HEAD"),
    ("POST", "/s/root/small.txt", "GET, HEAD"),
    ("POST", "/api/v1/downloads", "GET, HEAD"),
    ("GET", "/api/v1/downloads/some-id", "DELETE"),
    ("GET", "/v2/file/get", "POST"),
    ("GET", "/v2/file/list", "POST"),
    ("DELETE", "/v2/file/get_download_url", "POST"),
]


@pytest.mark.parametrize(("method", "path", "allow"), ALLOW_CASES)
async def test_every_405_names_the_allowed_methods(
    served: Served, method: str, path: str, allow: str
) -> None:
    response = await ask(served, method, path, AUTH)
    assert response.status == 405, response
    assert response.header("allow") == allow
    if path.startswith("/v2/"):
        assert_drive_error(response, 405, "MethodNotAllowed")
    else:
        assert list(response.json()) == ["error"]
    for allowed in allow.split(", "):  # and those methods are really served there
        assert (await ask(served, allowed, path, AUTH)).status != 405


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v2/file/get/"),  # a trailing slash is another path
        ("POST", "/v2/file/list/"),
        ("POST", "/v2/no/such/api"),
        ("GET", "/v2/"),
        ("GET", "/v2/file/get/"),
    ],
)
async def test_unknown_paths_under_v2_are_drive_shaped(
    served: Served, method: str, path: str
) -> None:
    assert_drive_error(await ask(served, method, path, AUTH), 404, "NotFound")


async def test_body_over_the_limit_under_v2_is_drive_shaped(served: Served) -> None:
    declared = await exchange(
        served.port, get("/v2/file/get", AUTH, "Content-Length: 5000000", method="POST")
    )
    assert_drive_error(parse_reply(declared, "POST"), 413, "ContentTooLarge")
    chunk = b"x" * 70_000
    chunked = get("/v2/file/list", AUTH, "Transfer-Encoding: chunked", method="POST")
    chunked += b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(20))
    client = await served.raw()
    try:
        # the server may close before reading everything
        with trio.move_on_after(5), contextlib.suppress(trio.BrokenResourceError):
            await client.send(chunked)
        assert_drive_error(await client.read_response("POST"), 413, "ContentTooLarge")
        assert await client.is_closed(timeout=2)
    finally:
        await client.aclose()
    # elsewhere the same failure keeps the server's usual shape
    usual = parse_reply(
        await exchange(served.port, get("/healthz", "Content-Length: 5000000", method="POST")),
        "POST",
    )
    assert usual.status == 413 and list(usual.json()) == ["error"]


async def test_slow_body_under_v2_is_drive_shaped(start_server: StartServer) -> None:
    served = await start_server(limits={"body_timeout": 0.3})
    client: RawClient = await served.raw()
    try:
        await client.send(get("/v2/file/get", AUTH, "Content-Length: 40", method="POST") + b"{")
        assert_drive_error(await client.read_response("POST"), 408, "RequestTimeout")
    finally:
        await client.aclose()


async def test_too_many_header_fields_under_v2_is_drive_shaped(
    start_server: StartServer,
) -> None:
    served = await start_server(limits={"max_header_count": 5})
    extra = [f"X-H{i}: v" for i in range(8)]
    reply = await exchange(served.port, get("/v2/file/get", *extra, method="POST"))
    assert_drive_error(parse_reply(reply, "POST"), 431, "RequestHeaderFieldsTooLarge")
    usual = parse_reply(await exchange(served.port, get("/healthz", *extra)))
    assert usual.status == 431 and list(usual.json()) == ["error"]


async def test_a_seed_001_request_under_v2_keeps_seed_001_shapes(served: Served) -> None:
    """A GET naming ``download``/``downloads``/``download_history`` is seed 001's request
    (its directory may be called ``v2``), so its errors are seed 001's."""
    response = await ask(served, "GET", "/v2/file/get?downloads=")
    assert response.status == 401
    assert response.json() == {"error": "missing or invalid access token"}
