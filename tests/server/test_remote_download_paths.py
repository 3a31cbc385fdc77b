"""Which requests are seed 001's ``GET /{directory}?download=URL``, and which directory
they name.

A GET whose query has ``download``, ``downloads`` or ``download_history`` is a seed-001
request whatever its path, so a directory may be named like any other route; the path
is percent-decoded exactly once (by the connection).  Same set-up as
``tests.helpers.remote_downloads``: a download-enabled server and the loopback upstream.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
import trio
import trio_websocket

from slipstream.wsprotocol import Status
from tests.helpers.remote_downloads import REPLY_KEYS, Env, payload
from tests.helpers.server import TOKEN
from tests.helpers.upstream import Blob
from tests.helpers.ws import ask

ROUTE_PATHS = [
    "/download",
    "/healthz",
    "/api/v1/downloads",
    "/api/download",
    "/api/zip",
    "/stream/x",
    "/stream",
    "/s/x",
    "/s/root/small.txt",
    "/v2/file/get",
    "/v2/file/list",
    "/ws",
    "/",
]
"""Every path another route answers (exactly or by prefix), and the root."""


@pytest.mark.parametrize("path", ROUTE_PATHS)
async def test_a_directory_named_like_a_route_is_a_download_target(env: Env, path: str) -> None:
    data = payload(3000, seed=len(path))
    url = env.upstream.add("/named.bin", Blob(data))
    directory = path.strip("/")
    expected_path = f"{directory}/named.bin" if directory else "named.bin"
    response = await env.http.get(path, params={"download": url})
    assert response.status_code == 202, response.text
    body = response.json()
    assert set(body) == REPLY_KEYS
    assert body["success"] is True
    assert body["path"] == expected_path
    row = await env.wait(body["download_id"])
    assert row["status"] == "completed", row
    assert row["directory"] == directory
    assert (env.root / expected_path).read_bytes() == data
    # the listings of that directory are seed 001's too, not the other route's reply
    history = await env.http.get(path, params={"download_history": ""})
    assert history.status_code == 200, history.text
    assert [r["id"] for r in history.json()["history"]] == [body["download_id"]]
    active = await env.http.get(path, params={"downloads": ""})
    assert active.status_code == 200, active.text
    assert active.json() == {"downloads": []}


@pytest.mark.parametrize("key", ["download", "downloads", "download_history"])
@pytest.mark.parametrize("path", ["/healthz", "/api/v1/downloads", "/download"])
async def test_seed_001_requests_need_the_token_on_every_path(
    env: Env, path: str, key: str
) -> None:
    async with env.served.client() as anonymous:
        response = await anonymous.get(path, params={key: "http://files.example/a"})
    assert response.status_code == 401, response.text
    assert response.json() == {"error": "missing or invalid access token"}


async def test_other_methods_and_keys_keep_their_routes(env: Env) -> None:
    """Only a GET naming one of the three keys is claimed; the routes answer the rest."""
    assert (await env.http.get("/healthz", params={"downloaded": "1"})).json() == {"status": "ok"}
    head = await env.http.head("/healthz", params={"download": "http://files.example/a"})
    assert head.status_code == 200
    listed = await env.http.get("/api/v1/downloads")
    assert listed.status_code == 200 and listed.json() == {"downloads": []}
    assert env.listing("healthz") == []


async def test_a_websocket_upgrade_at_ws_with_download_stays_a_websocket(env: Env) -> None:
    url = f"ws://127.0.0.1:{env.served.port}/ws?download=http://files.example/a"
    with trio.fail_after(10):
        async with trio_websocket.open_websocket_url(url) as ws:
            assert await ask(ws, {"type": 1, "id": 1, "token": TOKEN}) == {
                "id": 1,
                "status": Status.OK,
            }


@pytest.mark.parametrize(
    ("raw_path", "directory"),
    [
        ("/a%2520b", "a%20b"),
        ("/100%25", "100%"),
        ("/r%C3%A9sum%C3%A9%2541", "résumé%41"),
        ("/plain%20space", "plain space"),
    ],
)
async def test_the_directory_is_the_path_decoded_once(
    env: Env, raw_path: str, directory: str
) -> None:
    data = payload(500, seed=9)
    url = env.upstream.add("/once.txt", Blob(data))
    target = f"{raw_path}?download={quote(url, safe='')}"
    response = await env.http.get(target)
    assert response.status_code == 202, response.text
    assert response.json()["path"] == f"{directory}/once.txt"
    row = await env.wait(response.json()["download_id"])
    assert row["directory"] == directory
    assert row["file_path"] == f"{directory}/once.txt"
    assert (env.root / directory / "once.txt").read_bytes() == data
    history = await env.http.get(f"{raw_path}?download_history=")
    assert [r["id"] for r in history.json()["history"]] == [row["id"]]
