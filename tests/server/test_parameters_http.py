"""Every parameter of every HTTP route, thrown arbitrary Unicode, huge and negative
numbers, floats and odd JSON: never a 500, always the route's documented error.

:data:`~tests.helpers.parameters.PARAMETERS` is the table: each route, each parameter it
reads (query string, path segment, JSON body) and whether it is a number.  For one value,
one parameter takes it while the others keep a valid baseline, and the reply is checked
against what the route documents: its status set and error shape, and for numbers the
exact error (``timeout`` -> ``INVALID_TIMEOUT``, ``expire_sec`` ->
``InvalidParameter.ExpireSec``...).  Every parameter gets a fixed list of tricky values
(:func:`~tests.helpers.parameters.tricky_values`) and hypothesis's own.

``?token=`` is read by one function for every bearer route (checked on two of them);
``GET /healthz`` reads nothing.

One ``slipstream serve`` subprocess serves the whole module (hypothesis runs each example
in its own Trio run, so an in-process server would be restarted per example); every
example talks to it over loopback.  The server allows remote downloads only from
``allowed.invalid``, so no start request ever reaches the network, and zips only from
``http://127.0.0.1:1/`` (nothing listens there).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slipstream.zip.errors import ZIP_ERRORS
from tests.helpers.hostile_values import (
    UNPARSABLE,
    as_parsed,
    is_int,
    json_object,
    json_values,
    text_values,
)
from tests.helpers.parameters import (
    AUTH,
    EXAMPLES,
    PARAMETERS,
    SMALL,
    TOKEN,
    Param,
    Server,
    parameter_server,
    tricky_values,
)

REPLY_KEYS = {"download_id", "filename", "path", "success", "message", "error"}
SEED_001_KEYS = {"INVALID_URL", "DOMAIN_BLOCKED", "INVALID_TIMEOUT", "INVALID_SHA256"}
SEED_001_KEYS |= {"PATH_NOT_ALLOWED"}
MAX_TIMEOUT = 604_800


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One ``slipstream serve`` subprocess for the whole module."""
    with parameter_server(tmp_path_factory.mktemp("parameters")) as served:
        yield served


def camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def query_string(params: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params)


@dataclass
class Client:
    """The module's server and one HTTP client (for one Trio run)."""

    server: Server
    http: httpx.AsyncClient


@asynccontextmanager
async def client_for(server: Server) -> AsyncIterator[Client]:
    async with httpx.AsyncClient(timeout=10, verify=False, trust_env=False) as http:
        yield Client(server, http)


async def call(
    client: Client,
    method: str,
    path: str,
    params: list[tuple[str, str]] | None = None,
    *,
    body: str | None = None,
    token: bool = True,
) -> httpx.Response:
    """One request, never answered 500; the target is sent exactly as built (``path``
    already percent-encoded), with the bearer token unless ``token`` is False."""
    target = client.server.base + path + (f"?{query_string(params)}" if params else "")
    headers = dict(AUTH) if token else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    response = await client.http.request(method, httpx.URL(target), content=body, headers=headers)
    assert response.status_code != 500, (method, target[:300], body, response.text[:500])
    return response


def error_body(response: httpx.Response) -> dict[str, Any]:
    """The JSON error body (and that it is JSON)."""
    assert response.headers["content-type"] == "application/json", response.headers
    payload: dict[str, Any] = response.json()
    return payload


def with_value(baseline: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
    """``baseline`` with ``name`` set to ``value`` (added when absent)."""
    if any(k == name for k, _ in baseline):
        return [(k, value if k == name else v) for k, v in baseline]
    return [*baseline, (name, value)]


async def api_download(client: Client, param: Param, value: str) -> None:
    params = with_value([("filepath", "small.txt")], param.name, value)
    response = await call(client, "GET", "/api/download", params, token=param.name != "token")
    status = response.status_code
    if param.name == "token":
        assert status == (200 if value == TOKEN else 401), response.text
    assert status in (200, 400, 401, 403, 404, 412, 413), response.text
    if status != 200:
        assert list(error_body(response)) == ["error"]


async def api_zip(client: Client, param: Param, value: str) -> None:
    response = await call(client, "GET", "/api/zip", [(param.name, value)])
    if response.status_code == 200:
        assert response.headers["content-type"] == "application/zip"
        return
    assert response.status_code in (400, 403, 404), response.text
    assert list(error_body(response)) == ["error"]


async def signed(client: Client, param: Param, value: str) -> None:
    params = with_value(client.server.signed_query, param.name, value)
    response = await call(client, "GET", client.server.signed_path, params, token=False)
    if params == client.server.signed_query:
        assert response.status_code == 200
        assert response.content == SMALL
        return
    assert response.status_code == 403, response.text  # any change breaks the signature
    assert error_body(response)["error"] in ("signature does not match", "missing signature (sig)")


def segment(value: str) -> str:
    """``value`` as one percent-encoded path segment; dots too, so that no client
    removes ``.``/``..`` segments before the server sees them."""
    return quote(value, safe="").replace(".", "%2E")


def directory_path(value: str) -> str:
    return "/" + segment(value)


async def start_download(client: Client, param: Param, value: str) -> None:
    path = directory_path(value) if param.name == "directory" else "/inbox"
    baseline = [("download", "http://files.example/a.bin")]
    params = baseline if param.name == "directory" else with_value(baseline, param.name, value)
    response = await call(client, "GET", path, params)
    assert response.status_code in (400, 403), response.text
    body = error_body(response)
    assert set(body) == REPLY_KEYS, body
    assert body["success"] is False
    assert body["error"] in SEED_001_KEYS, body
    if param.name == "timeout":
        digits = value.isascii() and value.isdigit() and len(value.lstrip("0")) <= 7
        valid = value == "" or (digits and 1 <= int(value) <= MAX_TIMEOUT)
        expected = "DOMAIN_BLOCKED" if valid else "INVALID_TIMEOUT"
        assert (response.status_code, body["error"]) == (
            403 if valid else 400,
            expected,
        ), (value, body)


async def listing(client: Client, param: Param, value: str) -> None:
    key = param.route.rsplit("?", 1)[1].rstrip("=")
    path = directory_path(value) if param.name == "directory" else "/inbox"
    params = [(key, value if param.name == key else "")]
    response = await call(client, "GET", path, params)
    if response.status_code == 200:
        reply_key = "history" if key == "download_history" else "downloads"
        assert isinstance(response.json()[reply_key], list)
        return
    assert response.status_code in (400, 403, 404), response.text
    assert list(error_body(response)) == ["error"]


async def list_all(client: Client, param: Param, value: str) -> None:
    response = await call(client, "GET", "/api/v1/downloads", [(param.name, value)], token=False)
    if value == TOKEN:
        assert (response.status_code, response.json()) == (200, {"downloads": []})
    else:
        assert response.status_code == 401, response.text
        assert error_body(response) == {"error": "missing or invalid access token"}


async def cancel(client: Client, param: Param, value: str) -> None:
    response = await call(client, "DELETE", "/api/v1/downloads/" + segment(value))
    assert response.status_code == 404, response.text
    assert error_body(response) == {"success": False, "error": "DOWNLOAD_NOT_FOUND"}


DRIVE_BASELINES: dict[str, dict[str, Any]] = {
    "POST /v2/file/get_download_url": {"file_id": "small.txt"},
    "POST /v2/file/get": {"file_id": "small.txt"},
    "POST /v2/file/list": {},
}
DRIVE_RANGES = {"expire_sec": (1, MAX_TIMEOUT), "limit": (1, 200)}


async def drive(client: Client, param: Param, value: Any) -> None:
    path = param.route.split(" ", 1)[1]
    fields = {**DRIVE_BASELINES[param.route], param.name: value}
    response = await call(client, "POST", path, body=json_object(fields))
    seen = as_parsed(value)
    status = response.status_code
    if param.numeric:
        low, high = DRIVE_RANGES[param.name]
        valid = seen is None or (is_int(seen) and low <= seen <= high)
        assert (status == 200) == valid, (value, response.text)
    if status == 200:
        return
    body = error_body(response)
    assert list(body) == ["code", "message"], body
    if seen is UNPARSABLE:
        assert (status, body["code"]) == (400, "InvalidParameter.Body"), body
    elif status == 400:
        assert body["code"] == f"InvalidParameter.{camel(param.name)}", (value, body)
    else:
        assert status in (403, 404), body
        assert body["code"].startswith(("Forbidden.", "NotFound.")), body


async def zip_service(client: Client, param: Param, value: Any) -> None:
    fields: dict[str, Any] = {"fs_uri_list": ["http://127.0.0.1:1/a.bin"]}
    fields["fs_response_format"] = "redirect" if param.name == "fs_error_redirect_uri" else "json"
    fields[param.name] = value
    response = await call(client, "POST", "/download", body=json_object(fields))
    check_zip_reply(response)


def check_zip_reply(response: httpx.Response) -> None:
    status = response.status_code
    if status == 303:
        assert response.headers["location"]
        return
    media = response.headers["content-type"].split(";")[0]
    if media == "application/json":
        body = response.json()
        assert set(body) == {"fs_error_key", "fs_error_message", "fs_error_records"}, body
        key = body["fs_error_key"]
    else:
        assert media == "text/html", response.headers
        key = next((k for k in ZIP_ERRORS if k in response.text), None)
    assert key in ZIP_ERRORS and key != "UNKNOWN", response.text[:300]
    assert status == ZIP_ERRORS[key][0], (status, key)


async def stream(client: Client, param: Param, value: str) -> None:
    response = await call(client, "GET", "/stream/" + segment(value))
    assert response.status_code in (400, 404), response.text[:300]
    check_zip_reply(response)


HTTP_ROUTES = {
    "GET /api/download": api_download,
    "GET /api/zip": api_zip,
    "GET /s/{space}/{path}": signed,
    "GET /{directory}?download=": start_download,
    "GET /{directory}?downloads=": listing,
    "GET /{directory}?download_history=": listing,
    "GET /api/v1/downloads": list_all,
    "DELETE /api/v1/downloads/{id}": cancel,
    "POST /v2/file/get_download_url": drive,
    "POST /v2/file/get": drive,
    "POST /v2/file/list": drive,
    "POST /download": zip_service,
    "GET /stream/{id}": stream,
}


HTTP_PARAMETERS = [p for p in PARAMETERS if p.where != "ws"]


@pytest.mark.parametrize("param", HTTP_PARAMETERS, ids=str)
async def test_http_parameter_tricky_values(server: Server, param: Param) -> None:
    async with client_for(server) as client:
        for value in tricky_values(param):
            await HTTP_ROUTES[param.route](client, param, value)


@pytest.mark.parametrize("param", HTTP_PARAMETERS, ids=str)
@settings(max_examples=EXAMPLES, deadline=None)
@given(data=st.data())
async def test_http_parameter(server: Server, param: Param, data: st.DataObject) -> None:
    value = data.draw(json_values if param.where == "json" else text_values, label=param.name)
    async with client_for(server) as client:
        await HTTP_ROUTES[param.route](client, param, value)
