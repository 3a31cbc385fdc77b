"""Every parameter of every route, thrown arbitrary Unicode, huge and negative numbers,
floats and odd JSON: never a 500, always the route's documented error.

:data:`PARAMETERS` is the table: each route, each parameter it reads (query string,
path segment, JSON body, websocket packet field) and whether it is a number.  For one
value, one parameter takes it while the others keep a valid baseline, and the reply is
checked against what the route documents: its status set and error shape, and for
numbers the exact error (``timeout`` -> ``INVALID_TIMEOUT``, ``expire_sec`` ->
``InvalidParameter.ExpireSec``, ``resume_at`` -> 303 or close 4302...).  Every parameter
gets a fixed list of tricky values (:func:`tricky_values`) and hypothesis's own.

``?token=`` is read by one function for every bearer route (checked on two of them);
``GET /healthz`` reads nothing.

One ``slipstream serve`` subprocess serves the whole module (hypothesis runs each example
in its own Trio run, so an in-process server would be restarted per example); every
example talks to it over loopback.  The server allows remote downloads only from
``allowed.invalid``, so no start request ever reaches the network, and zips only from
``http://127.0.0.1:1/`` (nothing listens there).
"""

from __future__ import annotations

import json
import os
import re
import selectors
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import httpx
import pytest
import trio
import trio_websocket
from hypothesis import given, settings
from hypothesis import strategies as st

from slipstream.numeric import INT64_MAX
from slipstream.wsprotocol import CloseCode
from slipstream.zip.errors import ZIP_ERRORS

TOKEN = "param-test-token"
EXAMPLES = 10
"""Hypothesis examples per parameter (the table has about fifty rows)."""
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SMALL = b"hello, parameters\n"
REPLY_KEYS = {"download_id", "filename", "path", "success", "message", "error"}
SEED_001_KEYS = {"INVALID_URL", "DOMAIN_BLOCKED", "INVALID_TIMEOUT", "INVALID_SHA256"}
SEED_001_KEYS |= {"PATH_NOT_ALLOWED"}
MAX_TIMEOUT = 604_800


@dataclass(frozen=True)
class Param:
    """One parameter a route reads."""

    route: str
    """The route, as ``METHOD /path`` (``WS type N`` for websocket packets)."""
    name: str
    where: str
    """``query``, ``path`` (a path segment), ``json`` (body field) or ``ws`` (packet field)."""
    numeric: bool = False

    def __str__(self) -> str:
        return f"{self.route} {self.where}:{self.name}"


PARAMETERS: tuple[Param, ...] = (
    # seed 002
    Param("GET /api/download", "filepath", "query"),
    Param("GET /api/download", "fstype", "query"),
    Param("GET /api/download", "token", "query"),
    # local zips
    Param("GET /api/zip", "path", "query"),
    # presigned file route
    Param("GET /s/{space}/{path}", "expires", "query", numeric=True),
    Param("GET /s/{space}/{path}", "etag", "query"),
    Param("GET /s/{space}/{path}", "sig", "query"),
    Param("GET /s/{space}/{path}", "response-content-type", "query"),
    Param("GET /s/{space}/{path}", "response-content-disposition", "query"),
    # seed 001
    Param("GET /{directory}?download=", "directory", "path"),
    Param("GET /{directory}?download=", "download", "query"),
    Param("GET /{directory}?download=", "filename", "query"),
    Param("GET /{directory}?download=", "timeout", "query", numeric=True),
    Param("GET /{directory}?download=", "sha256", "query"),
    Param("GET /{directory}?downloads=", "directory", "path"),
    Param("GET /{directory}?downloads=", "downloads", "query"),
    Param("GET /{directory}?download_history=", "directory", "path"),
    Param("GET /{directory}?download_history=", "download_history", "query"),
    Param("GET /api/v1/downloads", "token", "query"),
    Param("DELETE /api/v1/downloads/{id}", "id", "path"),
    # seed 003
    Param("POST /v2/file/get_download_url", "drive_id", "json"),
    Param("POST /v2/file/get_download_url", "file_id", "json"),
    Param("POST /v2/file/get_download_url", "share_id", "json"),
    Param("POST /v2/file/get_download_url", "file_name", "json"),
    Param("POST /v2/file/get_download_url", "expire_sec", "json", numeric=True),
    Param("POST /v2/file/get_download_url", "response_content_type", "json"),
    Param("POST /v2/file/get", "drive_id", "json"),
    Param("POST /v2/file/get", "file_id", "json"),
    Param("POST /v2/file/get", "share_id", "json"),
    Param("POST /v2/file/list", "drive_id", "json"),
    Param("POST /v2/file/list", "parent_file_id", "json"),
    Param("POST /v2/file/list", "share_id", "json"),
    Param("POST /v2/file/list", "limit", "json", numeric=True),
    Param("POST /v2/file/list", "marker", "json"),
    # seed 004
    Param("POST /download", "fs_uri_list", "json"),
    Param("POST /download", "fs_file_name", "json"),
    Param("POST /download", "fs_request_id", "json"),
    Param("POST /download", "fs_forward_all_headers", "json"),
    Param("POST /download", "fs_response_format", "json"),
    Param("POST /download", "fs_error_redirect_uri", "json"),
    Param("POST /download", "fs_add_header-X-Extra", "json"),
    Param("GET /stream/{id}", "id", "path"),
    # seed 000 (after a successful Initialize, except for type 1's own fields)
    Param("WS packet", "type", "ws", numeric=True),
    Param("WS type 1", "id", "ws", numeric=True),
    Param("WS type 1", "token", "ws"),
    Param("WS type 1", "application", "ws"),
    Param("WS type 7", "id", "ws", numeric=True),
    Param("WS type 7", "filename", "ws"),
    Param("WS type 7", "resume_at", "ws", numeric=True),
    Param("WS type 20", "id", "ws", numeric=True),
)

# --- hostile values ------------------------------------------------------------------------

TRICKY_TEXT = [
    "\u00b2",  # superscript two: str.isdigit() is true, int() refuses it
    "\u0661\u0662",  # Arabic-Indic digits: int() accepts them
    "\U0001d7d7",  # mathematical bold nine
    "+5",
    "-1",
    " 5",
    "1_000",
    "0x10",
    "1e400",
    "1.5",
    "NaN",
    "",
    "0",
    "604801",
    "9" * 19,
    "9" * 5000,
    "%00",
    "..",
    "\x00",
    "\u2028",
]
text_values = st.one_of(
    st.sampled_from(TRICKY_TEXT),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=40),
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.integers(min_value=INT64_MAX - 3, max_value=2**64 + 3).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


@dataclass(frozen=True)
class Raw:
    """A JSON literal sent as written (``1e400``, a 5000-digit number...)."""

    text: str


RAW_LITERALS = [
    "1e400",
    "-1e400",
    "1" * 5000,
    "NaN",
    "Infinity",
    "-0",
    "1.0",
    "604800.0",
    "123456789012345678901234567890",
    '"\\ud800"',  # a lone surrogate, escaped
    '"a\\udcffb"',
]
json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**100, -(10**100)]),
    st.floats(allow_nan=True, allow_infinity=True),
    text_values,
    st.lists(st.integers() | st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.sampled_from(RAW_LITERALS).map(Raw),
)


TRICKY_JSON: list[Any] = [
    *(text for text in TRICKY_TEXT if len(text) < 3),
    *(Raw(literal) for literal in RAW_LITERALS),
    None,
    True,
    0,
    -1,
    2**63,
    10**100,
    1.5,
    [],
    {},
]


def tricky_values(param: Param) -> list[Any]:
    """The values every parameter gets, besides hypothesis's."""
    return TRICKY_JSON if param.where in ("json", "ws") else TRICKY_TEXT


def json_text(value: Any) -> str:
    """``value`` as JSON text (a :class:`Raw` as written)."""
    return value.text if isinstance(value, Raw) else json.dumps(value)


def json_object(fields: dict[str, Any]) -> str:
    """A JSON object whose values may be :class:`Raw` literals."""
    return "{" + ",".join(f"{json.dumps(k)}:{json_text(v)}" for k, v in fields.items()) + "}"


UNPARSABLE = object()
"""What the server sees of a JSON literal it cannot parse."""


def as_parsed(value: Any) -> Any:
    """``value`` as the server's ``json.loads`` sees it (or :data:`UNPARSABLE`)."""
    try:
        return json.loads(json_text(value))
    except ValueError:
        return UNPARSABLE


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


# --- the server ----------------------------------------------------------------------------

BANNER = re.compile(rb"at http://127\.0\.0\.1:([0-9]+)/")


@dataclass
class Server:
    """The module's ``slipstream serve`` subprocess."""

    port: int
    root: Path
    log: Path
    signed_path: str = ""
    signed_query: list[tuple[str, str]] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def build_root(base: Path) -> tuple[Path, Path]:
    root = base / "root"
    (root / "dir").mkdir(parents=True)
    (root / "small.txt").write_bytes(SMALL)
    (root / "dir" / "inner.txt").write_bytes(b"inner\n")
    (root / "résumé.txt").write_bytes(b"accents\n")
    (root / "empty.txt").write_bytes(b"")
    game = base / "game"
    game.mkdir()
    (game / "level.dat").write_bytes(b"level\n")
    return root, game


def wait_for_port(proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> int:
    """Read the server's stdout until it prints the URL it listens on."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen = b""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while (match := BANNER.search(seen)) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                raise AssertionError(f"no banner: {log.read_text(errors='replace')}")
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                raise AssertionError(f"server exited: {log.read_text(errors='replace')}")
            seen += chunk
    return int(match[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("parameters")
    root, game = build_root(base)
    log = base / "server.log"
    command = [sys.executable, "-m", "slipstream", "serve", "--root", str(root), "--port", "0"]
    command += ["--token", TOKEN, "--no-access-log", "--log-level", "warning"]
    command += ["--allow-download", "--allow-domain", "allowed.invalid"]
    command += ["--application", f"game={game}", "--ws-rate-limit", "0"]
    command += ["--zip-allow-prefix", "http://127.0.0.1:1/"]
    env = {k: v for k, v in os.environ.items() if k != "SLIPSTREAM_TOKEN"}
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=out, env=env)
    try:
        served = Server(wait_for_port(proc, log), root, log)
        body = {"file_id": "small.txt", "file_name": "résumé.txt"}
        body["response_content_type"] = "text/plain"
        issued = httpx.post(
            f"{served.base}/v2/file/get_download_url", json=body, headers=AUTH, trust_env=False
        )
        assert issued.status_code == 200, issued.text
        url = urlsplit(issued.json()["url"])
        served.signed_path = url.path
        served.signed_query = parse_qsl(url.query, keep_blank_values=True)
        yield served
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    text = log.read_text(errors="replace")
    assert "Traceback" not in text and "unexpected error" not in text, text


# --- HTTP ----------------------------------------------------------------------------------


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
WS_PARAMETERS = [p for p in PARAMETERS if p.where == "ws"]


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


# --- websocket -----------------------------------------------------------------------------

WS_BASELINES: dict[str, dict[str, Any]] = {
    "WS packet": {"id": 1},
    "WS type 1": {"type": 1, "id": 1, "token": TOKEN},
    "WS type 7": {"type": 7, "id": 1, "filename": "small.txt", "resume_at": 0},
    "WS type 20": {"type": 20, "id": 1},
}


async def ws_outcome(server: Server, frame: str) -> tuple[str, Any]:
    """Initialize, send ``frame``: ``("reply", packet)`` or ``("close", code)``."""
    url = f"ws://127.0.0.1:{server.port}/ws"
    with trio.fail_after(10):
        async with trio_websocket.open_websocket_url(url) as ws:
            await ws.send_message(json.dumps({"type": 1, "id": 0, "token": TOKEN}))
            assert json.loads(await ws.get_message()) == {"id": 0, "status": 1}
            await ws.send_message(frame)
            try:
                return "reply", json.loads(await ws.get_message())
            except trio_websocket.ConnectionClosed as closed:
                assert closed.reason is not None
                return "close", closed.reason.code


def expected_ws(param: Param, seen: Any) -> tuple[str, Any]:
    """What the server must answer when ``param`` holds ``seen`` (the parsed value)."""
    bad = ("close", CloseCode.INVALID_REQUEST_BODY)
    if seen is UNPARSABLE:
        return bad
    if param.name == "type":
        return ("reply", {"id": 1, "status": 1}) if is_int(seen) and seen == 20 else bad
    if param.name in ("id", "resume_at") and not is_int(seen):
        return bad
    if param.name in ("token", "filename") and not isinstance(seen, str):
        return bad
    if param.name == "application" and not (seen is None or isinstance(seen, str)):
        return bad
    ident = seen if param.name == "id" else 1
    if param.route == "WS type 1":
        ok = param.name != "token" or seen == TOKEN
        ok = ok and (param.name != "application" or seen in (None, "game"))
        return "reply", {"id": ident, "status": 1 if ok else 3}
    if param.route == "WS type 20":
        return "reply", {"id": ident, "status": 1}
    if param.name == "resume_at":
        return "reply", {"id": 1, "status": 1 if 0 <= seen < len(SMALL) else 303}
    return "reply", {"id": ident, "status": None}  # filename / id: any type-7 status


@pytest.mark.parametrize("param", WS_PARAMETERS, ids=str)
async def test_websocket_field_tricky_values(server: Server, param: Param) -> None:
    for value in tricky_values(param):
        await check_websocket_field(server, param, value)


@pytest.mark.parametrize("param", WS_PARAMETERS, ids=str)
@settings(max_examples=EXAMPLES, deadline=None)
@given(value=json_values)
async def test_websocket_field(server: Server, param: Param, value: Any) -> None:
    await check_websocket_field(server, param, value)


async def check_websocket_field(server: Server, param: Param, value: Any) -> None:
    frame = json_object({**WS_BASELINES[param.route], param.name: value})
    kind, got = await ws_outcome(server, frame)
    expected_kind, expected = expected_ws(param, as_parsed(value))
    assert kind == expected_kind, (frame[:200], got)
    if kind == "close":
        assert got == expected, (frame[:200], got)
        return
    if expected.get("status") is not None:
        assert {k: got.get(k) for k in expected} == expected, (frame[:200], got)
        return
    assert got["id"] == expected["id"], (frame[:200], got)
    assert got["status"] in (1, 3, 300, 303), got
