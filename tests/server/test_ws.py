"""The websocket packet protocol at ``/ws`` (seed 000), over a real loopback server:
Initialize, type 7, applications and concurrency (closing is ``test_ws_close.py``).

Clients are ``trio_websocket.open_websocket_url``; presigned URLs are fetched with httpx.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pytest
import trio

from slipstream.errors import InternalError
from slipstream.storage import LocalStorage, OpenFile
from slipstream.wsprotocol import CloseCode, Status
from tests.helpers.server import TOKEN, Served, StartServer, wait_for
from tests.helpers.ws import TIMEOUT, ask, close_reason, connect, reply, url_for


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- Initialize ----------------------------------------------------------------------


async def test_initialize_ok(served: Served) -> None:
    async with connect(served, initialize=False) as ws:
        assert await ask(ws, {"type": 1, "id": 41, "token": TOKEN}) == {"id": 41, "status": 1}
        ok = await url_for(ws, "small.txt", id=42)
        assert ok["id"] == 42
        assert ok["status"] == Status.OK


async def test_initialize_bad_token_is_status_3_and_stays_uninitialized(served: Served) -> None:
    async with connect(served, initialize=False) as ws:
        assert await ask(ws, {"type": 1, "id": 5, "token": "wrong"}) == {"id": 5, "status": 3}
        assert await ask(ws, {"type": 1, "id": 6, "token": ""}) == {"id": 6, "status": 3}
        await ws.send_message(json.dumps({"type": 7, "id": 7, "filename": "x", "resume_at": 0}))
        assert await close_reason(ws) == (
            CloseCode.NOT_INITIALIZED,
            "connection is not initialized",
        )


async def test_initialize_again_after_a_bad_token(served: Served) -> None:
    async with connect(served, initialize=False) as ws:
        assert (await ask(ws, {"type": 1, "id": 1, "token": "nope"}))["status"] == 3
        assert (await ask(ws, {"type": 1, "id": 2, "token": TOKEN}))["status"] == 1
        assert (await url_for(ws, "small.txt"))["status"] == Status.OK


async def test_failed_reinitialize_keeps_the_earlier_one(
    start_server: StartServer, tmp_path: Path
) -> None:
    """A bad token or an unknown application in a second Initialize is answered 3 and
    changes nothing: the session keeps its first Initialize's token and application."""
    game = tmp_path / "game"
    game.mkdir()
    (game / "level.dat").write_bytes(b"level one\n")
    served = await start_server(applications={"game": game})
    async with connect(served, application="game") as ws:
        for bad in (
            {"type": 1, "id": 1, "token": "nope"},
            {"type": 1, "id": 2, "token": "nope", "application": "game"},
            {"type": 1, "id": 3, "token": TOKEN, "application": "no-such-app"},
        ):
            assert await ask(ws, bad) == {"id": bad["id"], "status": Status.NOT_AUTHORIZED}
        got = await url_for(ws, "level.dat", id=7)
        assert got["status"] == Status.OK, got
        assert "/s/app-game/level.dat?" in got["presigned_url"]
        # a good re-Initialize does switch (here back to the root)
        assert (await ask(ws, {"type": 1, "id": 8, "token": TOKEN}))["status"] == Status.OK
        assert (await url_for(ws, "small.txt", id=9))["status"] == Status.OK


# --- type 7 ------------------------------------------------------------------------


async def test_type7_url_downloads_the_file(served: Served) -> None:
    data = served.files["random.bin"]
    async with connect(served) as ws:
        got = await url_for(ws, "random.bin", id=8)
    assert set(got) == {"id", "presigned_url", "file_size", "file_checksum", "status"}
    assert got["id"] == 8
    assert got["status"] == Status.OK
    assert got["file_size"] == len(data)
    assert got["file_checksum"] == sha256(data)
    url = got["presigned_url"]
    assert url.startswith(f"http://127.0.0.1:{served.port}/s/root/random.bin?")
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        response = await http.get(url)  # no bearer token: the signature is the credential
    assert response.status_code == 200
    assert sha256(response.content) == got["file_checksum"]


async def test_type7_resume_with_range(served: Served) -> None:
    data = served.files["random.bin"]
    resume_at = 1_000_003
    async with connect(served) as ws:
        got = await url_for(ws, "random.bin", resume_at=resume_at)
    assert got["status"] == Status.OK
    assert got["file_size"] == len(data)  # always the whole file
    assert got["file_checksum"] == sha256(data)
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        response = await http.get(got["presigned_url"], headers={"Range": f"bytes={resume_at}-"})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {resume_at}-{len(data) - 1}/{len(data)}"
    assert response.content == data[resume_at:]
    # the client's check after a resume: the prefix it has plus the new bytes
    assert sha256(data[:resume_at] + response.content) == got["file_checksum"]


async def test_type7_last_byte_is_a_valid_resume_offset(served: Served) -> None:
    size = len(served.files["small.txt"])
    async with connect(served) as ws:
        got = await url_for(ws, "small.txt", resume_at=size - 1)
    assert got["status"] == Status.OK


async def test_type7_non_ascii_and_nested_names(served: Served) -> None:
    async with connect(served) as ws:
        for name in ["résumé 日本語 ü.txt", "subdir/deeper/deep.txt", 'quo"te.txt']:
            got = await url_for(ws, name)
            assert got["status"] == Status.OK, name
            assert unquote(urlsplit(got["presigned_url"]).path) == f"/s/root/{name}"
            async with httpx.AsyncClient(timeout=TIMEOUT) as http:
                body = (await http.get(got["presigned_url"])).content
            assert body == served.files[name]
            assert sha256(body) == got["file_checksum"]


@pytest.mark.parametrize(
    ("filename", "status"),
    [
        ("missing.txt", Status.FILE_NOT_FOUND),
        ("subdir/missing.txt", Status.FILE_NOT_FOUND),
        ("subdir", Status.FILE_NOT_FOUND),  # a directory is not a file
        ("fifo", Status.FILE_NOT_FOUND),
        ("", Status.NOT_AUTHORIZED),
        ("../secret.txt", Status.NOT_AUTHORIZED),
        ("/etc/passwd", Status.NOT_AUTHORIZED),
        ("escape.txt", Status.NOT_AUTHORIZED),  # symlink out of the root
        ("escape-dir/secret.txt", Status.NOT_AUTHORIZED),
        ("%2e%2e/secret.txt", Status.NOT_AUTHORIZED),
        (".slipstream/token", Status.FILE_NOT_FOUND),  # the state dir is hidden
    ],
)
async def test_type7_file_statuses(served: Served, filename: str, status: int) -> None:
    async with connect(served) as ws:
        assert await url_for(ws, filename, id=99) == {"id": 99, "status": status}


@pytest.mark.parametrize(
    ("filename", "resume_at"),
    [
        ("small.txt", -1),
        ("small.txt", 360),  # == size
        ("small.txt", 361),
        ("small.txt", 10**30),
        ("empty.txt", 0),  # nothing to download: 0 >= size
    ],
)
async def test_type7_invalid_resume_offset(served: Served, filename: str, resume_at: int) -> None:
    assert len(served.files["small.txt"]) == 360
    async with connect(served) as ws:
        got = await url_for(ws, filename, resume_at=resume_at, id=3)
    assert got == {"id": 3, "status": Status.FILE_INVALID_RESUME_OFFSET}


async def test_type7_revoked_token_is_not_authorized(served: Served) -> None:
    async with connect(served) as ws:
        assert (await url_for(ws, "small.txt"))["status"] == Status.OK
        served.server.services.config.tokens = ["a-new-token"]
        assert await url_for(ws, "small.txt", id=2) == {"id": 2, "status": Status.NOT_AUTHORIZED}


class _BrokenStorage(LocalStorage):
    def open(self, user_path: str) -> OpenFile:
        if user_path == "boom-internal":
            raise InternalError("disk on fire")
        raise OSError(5, "Input/output error")


async def test_type7_internal_failure_is_status_6(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    app = served.server.services
    app.spaces["root"] = _BrokenStorage(served.root)
    async with connect(served) as ws:
        assert await url_for(ws, "small.txt", id=11) == {"id": 11, "status": 6}
        assert await url_for(ws, "boom-internal", id=12) == {"id": 12, "status": 6}
        # the connection survives a failed request
        assert (await ask(ws, {"type": 1, "id": 13, "token": TOKEN}))["status"] == Status.OK
    assert "type 7 request" in caplog.text


async def test_type7_hashing_failure_is_status_6(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing_get(key: Any, fd: int, **options: Any) -> Any:
        raise RuntimeError("hash worker died")

    monkeypatch.setattr(served.server.services.digests, "get", failing_get)
    async with connect(served) as ws:
        assert await url_for(ws, "medium.bin", id=4) == {
            "id": 4,
            "status": Status.INTERNAL_SERVER_ERROR,
        }


# --- applications --------------------------------------------------------------------


async def test_application_selects_its_folder(start_server: StartServer, tmp_path: Path) -> None:
    game = tmp_path / "game"
    (game / "bin").mkdir(parents=True)
    payload = os.urandom(50_000)
    (game / "bin" / "client.dll").write_bytes(payload)
    served = await start_server(applications={"game": game})
    async with connect(served, application="game") as ws:
        got = await url_for(ws, "bin/client.dll")
        assert got["status"] == Status.OK
        assert got["file_checksum"] == sha256(payload)
        assert "/s/app-game/bin/client.dll?" in got["presigned_url"]
        # files of the root are not part of the application
        assert (await url_for(ws, "small.txt"))["status"] == Status.FILE_NOT_FOUND
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        assert (await http.get(got["presigned_url"])).content == payload
    async with connect(served) as ws:  # no application: the root
        assert (await url_for(ws, "small.txt"))["status"] == Status.OK
        assert (await url_for(ws, "bin/client.dll"))["status"] == Status.FILE_NOT_FOUND


@pytest.mark.parametrize("application", ["nope", "1", "", "../game"])
async def test_unknown_application_is_not_authorized(
    start_server: StartServer, tmp_path: Path, application: str
) -> None:
    (tmp_path / "game").mkdir()
    served = await start_server(applications={"game": tmp_path / "game"})
    async with connect(served, initialize=False) as ws:
        packet = {"type": 1, "id": 1, "token": TOKEN, "application": application}
        assert await ask(ws, packet) == {"id": 1, "status": Status.NOT_AUTHORIZED}


# --- concurrency ---------------------------------------------------------------------


async def test_many_requests_in_flight_on_one_connection(served: Served) -> None:
    names = ["small.txt", "random.bin", "medium.bin", "data.json", "missing", "subdir/inner.txt"]
    count = 60
    async with connect(served) as ws:
        for i in range(count):  # all sent before any reply is read
            name = names[i % len(names)]
            packet = {"type": 7, "id": 1000 + i, "filename": name, "resume_at": i % 3}
            await ws.send_message(json.dumps(packet))
        replies = [await reply(ws) for _ in range(count)]
    by_id = {r["id"]: r for r in replies}
    assert sorted(by_id) == list(range(1000, 1000 + count))
    for i in range(count):
        name = names[i % len(names)]
        got = by_id[1000 + i]
        if name == "missing":
            assert got["status"] == Status.FILE_NOT_FOUND
        else:
            assert got["status"] == Status.OK
            assert got["file_checksum"] == sha256(served.files[name])
            assert got["file_size"] == len(served.files[name])


async def test_replies_come_out_of_order(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    digests = served.server.services.digests
    real_get = digests.get
    slow_size = len(served.files["random.bin"])
    release = trio.Event()

    async def slow_get(key: Any, fd: int, **options: Any) -> Any:
        if key.size == slow_size:
            await release.wait()
        return await real_get(key, fd, **options)

    monkeypatch.setattr(digests, "get", slow_get)
    async with connect(served) as ws:
        await ws.send_message(
            json.dumps({"type": 7, "id": 1, "filename": "random.bin", "resume_at": 0})
        )
        await ws.send_message(
            json.dumps({"type": 7, "id": 2, "filename": "small.txt", "resume_at": 0})
        )
        first = await reply(ws)
        release.set()
        second = await reply(ws)
    assert (first["id"], second["id"]) == (2, 1)
    assert first["status"] == second["status"] == Status.OK


async def test_in_flight_requests_are_bounded(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    served.server.services.ws.options.max_in_flight = 3
    digests = served.server.services.digests
    real_get = digests.get
    running = 0
    peak = 0
    release = trio.Event()

    async def counting_get(key: Any, fd: int, **options: Any) -> Any:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await release.wait()
            return await real_get(key, fd, **options)
        finally:
            running -= 1

    monkeypatch.setattr(digests, "get", counting_get)
    async with connect(served) as ws:
        for i in range(10):
            await ws.send_message(
                json.dumps({"type": 7, "id": i, "filename": "small.txt", "resume_at": 0})
            )
        assert await wait_for(lambda: running == 3)
        await trio.sleep(0.1)
        assert running == 3
        release.set()
        replies = sorted([(await reply(ws))["id"] for _ in range(10)])
    assert replies == list(range(10))
    assert peak == 3


async def test_200_clients_at_once(start_server: StartServer) -> None:
    served = await start_server(ws_rate_limit=0, limits={"max_connections": 1024})
    names = sorted(n for n in served.files if n != "random.bin")
    expected = {n: sha256(served.files[n]) for n in names}
    results: dict[int, Any] = {}

    async def one_client(i: int) -> None:
        name = names[i % len(names)]
        async with connect(served) as ws:
            got = await url_for(ws, name, resume_at=0, id=i)
        assert got["status"] == Status.OK, (name, got)
        assert got["id"] == i
        assert got["file_checksum"] == expected[name]
        assert unquote(urlsplit(got["presigned_url"]).path) == f"/s/root/{name}"
        results[i] = (name, got["presigned_url"])

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for i in range(200):
                nursery.start_soon(one_client, i)
    assert len(results) == 200
    # every issued URL really serves its file
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=httpx.Limits(max_connections=20)) as http:

        async def fetch(name: str, url: str) -> None:
            response = await http.get(url)
            assert response.status_code == 200
            assert sha256(response.content) == expected[name]

        async with trio.open_nursery() as nursery:
            for name, url in results.values():
                nursery.start_soon(fetch, name, url)
