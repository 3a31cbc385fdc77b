"""Remote downloads (seed 001, issue 5) against a real server and the loopback upstream.

Each test starts a slipstream server with ``allow_download`` and ``allow_private_networks``
(unless it tests the policy) whose outbound fetches go through an injected resolver and
dialer: names under ``.example`` resolve to a public-looking address that the dialer
connects to the test upstream, so domain rules can be tested with invented names.
Failures are in ``test_remote_download_failures.py``; running jobs (active list,
queueing, cancelling) and websocket events (type 20) in ``test_remote_downloads_ws.py``;
the helpers in :mod:`tests.helpers.remote_downloads`.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
import uuid
from typing import Any

import pytest
import trio

from slipstream.digests import FileKey
from tests.helpers.raw_http import get
from tests.helpers.remote_downloads import HISTORY_KEYS, REPLY_KEYS, Env, MakeEnv, payload, sha256
from tests.helpers.server import TOKEN, download_target
from tests.helpers.upstream import Blob, Status

# --- starting and completing ----------------------------------------------------------


async def test_reply_fields_file_and_history(env: Env) -> None:
    data = payload(200_000)
    url = env.upstream.add("/files/data.bin", Blob(data))
    before = int(time.time())
    response = await env.start(url)
    assert response.status_code == 202
    body = response.json()
    assert set(body) == REPLY_KEYS
    assert str(uuid.UUID(body["download_id"])) == body["download_id"]
    assert body["filename"] == "data.bin"
    assert body["path"] == "dl/data.bin"
    assert body["success"] is True
    assert body["message"] == "Download started"
    assert body["error"] is None
    row = await env.wait(body["download_id"])
    after = int(time.time())
    assert set(row) == HISTORY_KEYS
    assert row["id"] == body["download_id"]
    assert row["status"] == "completed"
    assert row["error"] is None
    assert row["filename"] == "data.bin"
    assert row["file_path"] == "dl/data.bin"
    assert row["directory"] == "dl"
    assert row["url"] == url
    assert row["total_bytes"] == len(data)
    assert row["sha256"] == sha256(data)
    assert before <= row["start_time"] <= row["end_time"] <= after
    assert (env.root / "dl" / "data.bin").read_bytes() == data
    assert env.listing() == ["data.bin"]  # no .part left behind
    assert await env.active() == []


async def test_digest_cache_is_warm_after_download(env: Env) -> None:
    """A finished download is served with checksums at once, even above the inline-hash size."""
    data = payload(1536 * 1024, seed=2)
    row = await env.fetch(env.upstream.add("/big.bin", Blob(data)))
    assert row["status"] == "completed"
    expected = "sha-256=:" + base64.b64encode(hashlib.sha256(data).digest()).decode() + ":"
    reply = await env.http.get(download_target("dl/big.bin"))
    assert reply.status_code == 200
    assert reply.content == data
    assert reply.headers.get("repr-digest") == expected
    # Control: the same bytes copied in by hand are cold, so the first reply has no digest.
    (env.root / "dl" / "copy.bin").write_bytes(data)
    cold = await env.http.get(download_target("dl/copy.bin"))
    assert cold.status_code == 200
    assert "repr-digest" not in cold.headers


@pytest.mark.parametrize(
    ("path", "params", "disposition", "expected"),
    [
        ("/x/report%20v2.pdf?version=3", {}, None, "report v2.pdf"),
        ("/x/data.bin", {"filename": "given.txt"}, None, "given.txt"),
        ("/x/data.bin", {}, 'attachment; filename="cd name.txt"', "cd name.txt"),
        (
            "/x/data.bin",
            {},
            "attachment; filename=\"fallback.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf",
            "résumé.pdf",
        ),
        ("/x/data.bin", {"filename": "wins.txt"}, 'attachment; filename="cd.txt"', "wins.txt"),
        ("/", {}, None, "download"),
        ("/x/data.bin", {"filename": "../x"}, None, ".._x"),
        ("/x/data.bin", {"filename": "a/b"}, None, "a_b"),
        ("/x/data.bin", {"filename": "CON"}, None, "_CON"),
        ("/x/data.bin", {"filename": "nul.txt"}, None, "_nul.txt"),
        ("/x/data.bin", {}, 'attachment; filename="../../etc/passwd"', ".._.._etc_passwd"),
        ("/x/data.bin", {}, 'attachment; filename="C:\\\\evil.exe"', "C__evil.exe"),
        ("/x/..%2F..%2Fevil.sh", {}, None, ".._.._evil.sh"),
    ],
)
async def test_file_name(
    env: Env, path: str, params: dict[str, str], disposition: str | None, expected: str
) -> None:
    data = payload(1000, seed=3)
    env.upstream.add(path.split("?")[0], Blob(data, content_disposition=disposition))
    row = await env.fetch(env.url(path), **params)
    assert row["status"] == "completed", row
    assert row["filename"] == expected
    assert row["file_path"] == f"dl/{expected}"
    assert (env.root / "dl" / expected).read_bytes() == data
    assert env.listing() == [expected]
    assert not (env.root / "x").exists() and not (env.root.parent / "x").exists()


async def test_existing_file_is_never_overwritten(env: Env) -> None:
    (env.root / "dl").mkdir()
    (env.root / "dl" / "data.bin").write_bytes(b"old contents")
    (env.root / "dl" / "data (1).bin").write_bytes(b"older contents")
    data = payload(5000, seed=4)
    row = await env.fetch(env.upstream.add("/data.bin", Blob(data)))
    assert row["filename"] == "data (2).bin"
    assert row["file_path"] == "dl/data (2).bin"
    assert (env.root / "dl" / "data.bin").read_bytes() == b"old contents"
    assert (env.root / "dl" / "data (1).bin").read_bytes() == b"older contents"
    assert (env.root / "dl" / "data (2).bin").read_bytes() == data


async def test_two_jobs_with_the_same_name_both_kept(env: Env) -> None:
    first, second = payload(300_000, seed=5), payload(300_000, seed=6)
    url1 = env.upstream.add("/one", Blob(first, chunk=30_000, delay_per_chunk=0.01))
    url2 = env.upstream.add("/two", Blob(second, chunk=30_000, delay_per_chunk=0.01))
    ids = [await env.start_ok(url1, filename="same.tar.gz")]
    ids.append(await env.start_ok(url2, filename="same.tar.gz"))
    rows = [await env.wait(job_id) for job_id in ids]
    assert {row["filename"] for row in rows} == {"same.tar.gz", "same (1).tar.gz"}
    for row, data in zip(rows, (first, second), strict=True):
        assert row["status"] == "completed"
        assert (env.root / row["file_path"]).read_bytes() == data
    assert env.listing() == ["same (1).tar.gz", "same.tar.gz"]


async def test_missing_directories_are_created(env: Env) -> None:
    data = payload(100, seed=7)
    row = await env.fetch(env.upstream.add("/a.txt", Blob(data)), "new/deeper/still")
    assert row["status"] == "completed"
    assert row["directory"] == "new/deeper/still"
    assert row["file_path"] == "new/deeper/still/a.txt"
    assert (env.root / "new" / "deeper" / "still" / "a.txt").read_bytes() == data


async def test_download_into_the_root(env: Env) -> None:
    data = payload(100, seed=8)
    row = await env.fetch(env.upstream.add("/top.txt", Blob(data)), "")
    assert row["directory"] == ""
    assert row["file_path"] == "top.txt"
    assert (env.root / "top.txt").read_bytes() == data


@pytest.mark.parametrize(
    "directory",
    [
        "/../outside",
        "/%2e%2e/outside",
        "/dl/../../outside",
        "/escape-dir",  # a symlink to a directory outside the root
        "/escape-dir/inner",
        "/small.txt",  # a file, not a directory
        "/.slipstream",  # the state dir
        "/.slipstream/sub",
    ],
)
async def test_unsafe_directory_refused(env: Env, directory: str) -> None:
    url = env.upstream.add("/a.txt", Blob(b"never fetched"))
    client = await env.served.raw()
    try:
        query = f"?download={url}&token={TOKEN}"
        await client.send(get(directory + query))
        reply = await client.read_response()
    finally:
        await client.aclose()
    assert reply.status == 403, reply
    body = reply.json()
    assert body["error"] == "PATH_NOT_ALLOWED"
    assert body["success"] is False
    assert body["download_id"] is None
    assert env.upstream.connections == 0
    assert not (env.root.parent / "outside").exists()
    assert sorted(p.name for p in (env.root.parent / "secret-dir").iterdir()) == ["secret.txt"]
    assert await env.history() == []


async def test_refused_state_dir_download_creates_nothing_there(env: Env) -> None:
    url = env.upstream.add("/a.txt", Blob(b"never fetched"))
    response = await env.start(url, ".slipstream/made-by-a-client")
    assert response.status_code == 403
    assert response.json()["error"] == "PATH_NOT_ALLOWED"
    assert not (env.root / ".slipstream" / "made-by-a-client").exists()


# --- refusals before any work ---------------------------------------------------------


async def test_download_forbidden_without_allow_download(make_env: MakeEnv) -> None:
    env = await make_env(allow_download=False)
    url = env.upstream.add("/a.txt", Blob(b"never fetched"))
    response = await env.start(url, "newdir")
    assert response.status_code == 403
    assert response.json() == {"success": False, "error": "DOWNLOAD_FORBIDDEN"}
    assert env.upstream.connections == 0
    assert not (env.root / "newdir").exists()
    assert await env.history() == []
    assert await env.active() == []


async def test_every_endpoint_needs_the_token(env: Env) -> None:
    url = env.upstream.add("/slow.bin", Blob(payload(4000), chunk=1000, delay_per_chunk=0.12))
    job_id = await env.start_ok(url)
    requests = [
        ("GET", "/dl", {"download": url}),
        ("GET", "/dl", {"downloads": ""}),
        ("GET", "/", {"downloads": ""}),
        ("GET", "/api/v1/downloads", {}),
        ("GET", "/", {"download_history": ""}),
        ("GET", "/dl", {"download_history": ""}),
        ("DELETE", f"/api/v1/downloads/{job_id}", {}),
    ]
    async with env.served.client() as anonymous:
        for method, path, params in requests:
            for headers in ({}, {"Authorization": "Bearer wrong-token"}):
                response = await anonymous.request(method, path, params=params, headers=headers)
                assert response.status_code == 401, (method, path, params, headers)
                assert "downloads" not in response.text and "history" not in response.text
    assert [row["id"] for row in await env.active()] == [job_id]  # the DELETE did nothing
    assert (await env.wait(job_id))["status"] == "completed"
    assert len(env.upstream.requests_for("/slow.bin")) == 1  # only the authorised start


@pytest.mark.parametrize(
    "url",
    [
        "ftp://files.example/a.bin",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "gopher://files.example/",
        "http://",
        "http:///a.bin",
        "https://:443/a.bin",
        "not a url at all",
        "files.example/a.bin",
        "//files.example/a.bin",
        "",
        "http://exa mple.example/",
        "http://files.example:99999/a.bin",
        "http://files.example:port/a.bin",
        "http://[::1/a.bin",
    ],
)
async def test_invalid_url(env: Env, url: str) -> None:
    env.upstream.add("/a.bin", Blob(b"never fetched"))
    response = await env.start(url)
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == REPLY_KEYS
    assert body["error"] == "INVALID_URL"
    assert body["success"] is False
    assert body["download_id"] is None
    assert env.upstream.connections == 0
    assert await env.history() == []


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"sha256": "abc"}, "INVALID_SHA256"),
        ({"sha256": "g" * 64}, "INVALID_SHA256"),
        ({"sha256": "a" * 63}, "INVALID_SHA256"),
        ({"timeout": "abc"}, "INVALID_TIMEOUT"),
        ({"timeout": "-1"}, "INVALID_TIMEOUT"),
        ({"timeout": "0"}, "INVALID_TIMEOUT"),
        ({"timeout": "1.5"}, "INVALID_TIMEOUT"),
        ({"timeout": "\u00b2"}, "INVALID_TIMEOUT"),  # a superscript two: isdigit() is true
        ({"timeout": "\u0661\u0662"}, "INVALID_TIMEOUT"),  # Arabic-Indic digits
        ({"timeout": "+5"}, "INVALID_TIMEOUT"),
        ({"timeout": " 5"}, "INVALID_TIMEOUT"),
        ({"timeout": "1_0"}, "INVALID_TIMEOUT"),
        ({"timeout": "604801"}, "INVALID_TIMEOUT"),
        ({"timeout": "9" * 30}, "INVALID_TIMEOUT"),
        ({"timeout": "9" * 5000}, "INVALID_TIMEOUT"),
    ],
)
async def test_invalid_options(env: Env, params: dict[str, str], key: str) -> None:
    url = env.upstream.add("/a.bin", Blob(b"never fetched"))
    response = await env.start(url, **params)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == key
    assert response.json()["success"] is False
    assert response.json()["path"] == "dl/a.bin"
    assert env.upstream.connections == 0


# --- history --------------------------------------------------------------------------


async def test_history_newest_first_and_by_directory(env: Env) -> None:
    env.upstream.add("/h.bin", Blob(payload(100)))
    env.upstream.add("/missing.bin", Status(404))
    ids = [
        (await env.fetch(env.url("/h.bin"), "one"))["id"],
        (await env.fetch(env.url("/missing.bin"), "two"))["id"],
        (await env.fetch(env.url("/h.bin"), "one"))["id"],
    ]
    history = await env.history()
    assert [row["id"] for row in history] == ids[::-1]
    assert [row["status"] for row in history] == ["completed", "failed", "completed"]
    assert [row["filename"] for row in history] == ["h (1).bin", "missing.bin", "h.bin"]
    assert [row["id"] for row in await env.history("one")] == [ids[2], ids[0]]
    assert [row["id"] for row in await env.history("two")] == [ids[1]]
    assert await env.history("three") == []


async def test_history_limit_trims_the_oldest(make_env: MakeEnv) -> None:
    env = await make_env(history_limit=3)
    env.upstream.add("/h.bin", Blob(payload(100)))
    ids = [(await env.fetch(env.url("/h.bin")))["id"] for _ in range(5)]
    assert [row["id"] for row in await env.history()] == ids[:1:-1]
    # The files stay: the limit trims records, not downloads.
    assert len(env.listing()) == 5


async def test_a_downloaded_file_gets_its_sha1_when_the_drive_api_first_asks(env: Env) -> None:
    """A job hashes everything but SHA-1 inline; the drive API's ``content_hash`` is then
    computed on first demand and kept."""
    data = payload(300_000, seed=7)
    row = await env.fetch(env.upstream.add("/files/lazy.bin", Blob(data)))
    assert row["status"] == "completed", row
    cache = env.served.server.services.digests
    key = FileKey.from_stat((env.root / "dl" / "lazy.bin").stat())
    stored = cache.lookup(key)
    assert stored is not None and stored.sha1 is None
    assert stored.hex("sha256") == sha256(data)
    reply = await env.http.post(
        "/v2/file/get_download_url", json={"drive_id": "1", "file_id": "dl/lazy.bin"}
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["content_hash"] == hashlib.sha1(data).hexdigest().upper()
    completed = cache.lookup(key)
    assert completed is not None and completed.sha1 == hashlib.sha1(data).digest()


async def test_a_job_whose_final_row_is_still_being_written_is_in_the_history(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between leaving the active list and its final row's commit, a job is listed in
    the history from memory: it is never in neither list."""
    store = env.served.server.services.job_store
    real_finish = store.finish
    release = threading.Event()

    def slow_finish(record: Any) -> None:
        release.wait(10)
        real_finish(record)

    monkeypatch.setattr(store, "finish", slow_finish)
    data = payload(50_000, seed=9)
    job_id = await env.start_ok(env.upstream.add("/files/slow-row.bin", Blob(data)))
    try:
        with trio.fail_after(10):
            while any(row["id"] == job_id for row in await env.active()):
                await trio.sleep(0.02)
        rows = [row for row in await env.history() if row["id"] == job_id]
        assert len(rows) == 1 and rows[0]["status"] == "completed", rows
        assert rows[0]["sha256"] == sha256(data)
    finally:
        release.set()
    row = await env.wait(job_id)
    assert row["status"] == "completed"
