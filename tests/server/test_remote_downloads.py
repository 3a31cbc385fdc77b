"""Remote downloads (seed 001, issue 5) against a real server and the loopback upstream.

Each test starts a slipstream server with ``allow_download`` and ``allow_private_networks``
(unless it tests the policy) whose outbound fetches go through an injected resolver and
dialer: names under ``.example`` resolve to a public-looking address that the dialer
connects to the test upstream, so domain rules can be tested with invented names.
Running jobs (active list, queueing, cancelling) and websocket events (type 20) are in
``test_remote_downloads_ws.py``, which reuses this module's helpers.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from typing import Any

import pytest
import trio

from tests.helpers.raw_http import get
from tests.helpers.remote_downloads import (
    HISTORY_KEYS,
    LOOPBACK_NAME,
    REPLY_KEYS,
    Env,
    MakeEnv,
    payload,
    sha256,
)
from tests.helpers.server import TOKEN, download_target
from tests.helpers.upstream import Blob, Redirect, Status

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


# --- domain lists and the address policy ----------------------------------------------


@pytest.mark.parametrize(
    ("config", "host", "allowed"),
    [
        ({"block_domains": ["blocked.example"]}, "blocked.example", False),
        ({"block_domains": ["blocked.example"]}, "cdn.blocked.example", False),
        ({"block_domains": ["blocked.example"]}, "BLOCKED.example", False),
        ({"block_domains": ["blocked.example"]}, "blocked.example.", False),
        ({"block_domains": ["blocked.example"]}, "files.example", True),
        ({"block_domains": ["blocked.example"]}, "notblocked.example", True),
        ({"allow_domains": ["good.example"]}, "good.example", True),
        ({"allow_domains": ["good.example"]}, "cdn.good.example", True),
        ({"allow_domains": ["good.example"]}, "evil.example", False),
        ({"allow_domains": ["good.example"]}, "notgood.example", False),
        ({"allow_domains": ["good.example"]}, "good.example.evil.example", False),
        (
            {"allow_domains": ["good.example"], "block_domains": ["x.good.example"]},
            "x.good.example",
            False,
        ),
    ],
)
async def test_domain_lists(
    make_env: MakeEnv, config: dict[str, Any], host: str, allowed: bool
) -> None:
    env = await make_env(**config)
    data = payload(2000, seed=9)
    env.upstream.add("/a.bin", Blob(data))
    url = env.url("/a.bin", host=host)
    response = await env.start(url)
    body = response.json()
    if allowed:
        assert response.status_code == 202, body
        row = await env.wait(body["download_id"])
        assert row["status"] == "completed"
        assert (env.root / "dl" / "a.bin").read_bytes() == data
        assert env.upstream.connections == 1
    else:
        assert response.status_code == 403, body
        assert body == {
            "download_id": None,
            "filename": "a.bin",
            "path": "dl/a.bin",
            "success": False,
            "message": body["message"],
            "error": "DOMAIN_BLOCKED",
        }
        assert isinstance(body["message"], str) and body["message"]
        assert env.upstream.connections == 0
        assert await env.history() == []


async def test_redirect_to_a_blocked_domain_fails_the_job(make_env: MakeEnv) -> None:
    env = await make_env(block_domains=["blocked.example"])
    env.upstream.add("/a.bin", Blob(b"must not be fetched"))
    env.upstream.add("/hop", Redirect("http://blocked.example/a.bin"))
    row = await env.fetch(env.url("/hop", host="files.example"))
    assert row["status"] == "failed"
    assert row["error"] == "DOMAIN_BLOCKED"
    assert [r.path for r in env.upstream.requests] == ["/hop"]
    assert env.listing() == []


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "2130706433:{port}", LOOPBACK_NAME])
async def test_private_addresses_refused_by_default(make_env: MakeEnv, host: str) -> None:
    env = await make_env(allow_private_networks=False)
    env.upstream.add("/a.bin", Blob(b"must not be fetched"))
    url = env.url("/a.bin", host=host.format(port=env.upstream.port))
    response = await env.start(url)
    assert response.status_code == 403, response.text
    assert response.json()["error"] == "DOMAIN_BLOCKED"
    assert env.upstream.connections == 0
    # Control: a public-looking name reaches the same upstream under the same policy.
    row = await env.fetch(env.url("/a.bin", host="files.example"))
    assert row["status"] == "completed"
    assert env.upstream.connections == 1


# --- failures while fetching ----------------------------------------------------------


def assert_failed(row: dict[str, Any], key: str) -> None:
    """A failed history row with ``key`` and the seed's nulls."""
    assert row["status"] == "failed", row
    assert row["error"] == key
    assert row["total_bytes"] is None
    assert row["sha256"] is None
    assert row["start_time"] <= row["end_time"]


@pytest.mark.parametrize(
    ("resource", "key"),
    [
        (Status(404, b"no such file\n"), "REMOTE_FILE_NOT_FOUND"),
        (Status(410, b"gone\n"), "REMOTE_FILE_NOT_FOUND"),
        (Blob(b"not found page", status=404), "REMOTE_FILE_NOT_FOUND"),
        (Status(500, b"boom\n"), "NETWORK_ERROR"),
        (Status(503, b"later\n"), "NETWORK_ERROR"),
        (Status(403, b"no\n"), "NETWORK_ERROR"),
        (Status(304), "NETWORK_ERROR"),
    ],
)
async def test_upstream_error_status(env: Env, resource: Status | Blob, key: str) -> None:
    row = await env.fetch(env.upstream.add("/f.bin", resource))
    assert_failed(row, key)
    assert env.listing() == []


async def test_too_many_redirects_is_a_network_error(env: Env) -> None:
    for n in range(8):
        env.upstream.add(f"/r{n}", Redirect(f"/r{n + 1}"))
    env.upstream.add("/r8", Blob(b"too far"))
    row = await env.fetch(env.url("/r0"))
    assert_failed(row, "NETWORK_ERROR")
    assert len(env.upstream.requests) == 6  # the request and 5 redirects followed


async def test_redirect_is_followed(env: Env) -> None:
    data = payload(3000, seed=10)
    env.upstream.add("/real/name.bin", Blob(data))
    env.upstream.add("/short", Redirect("/real/name.bin", status=301))
    row = await env.fetch(env.url("/short", host="files.example"), filename="kept.bin")
    assert row["status"] == "completed"
    assert (env.root / "dl" / "kept.bin").read_bytes() == data


@pytest.mark.parametrize(
    "blob",
    [
        pytest.param(Blob(payload(200_000), chunk=10_000, drop_after=50_000), id="close"),
        pytest.param(
            Blob(payload(200_000), chunk=10_000, drop_after=50_000, drop_with_reset=True),
            id="reset",
        ),
        pytest.param(
            Blob(payload(200_000), chunk=10_000, drop_after=50_000, chunked=True), id="chunked"
        ),
        pytest.param(Blob(payload(200_000), chunk=10_000, lie_length=300_000), id="lying-length"),
        pytest.param(Blob(payload(200_000), chunk=10_000, drop_after=0), id="no-body"),
    ],
)
async def test_interrupted_body_is_a_network_error(env: Env, blob: Blob) -> None:
    row = await env.fetch(env.upstream.add("/cut.bin", blob))
    assert_failed(row, "NETWORK_ERROR")
    assert env.listing() == []  # neither the final name nor a .part file


async def test_job_timeout(env: Env) -> None:
    blob = Blob(payload(20_000), chunk=1000, delay_per_chunk=0.1)  # about 2 s
    started = trio.current_time()
    row = await env.fetch(env.upstream.add("/slow.bin", blob), timeout="1")
    assert_failed(row, "DOWNLOAD_TIMEOUT")
    assert 0.9 <= trio.current_time() - started < 1.8
    assert env.listing() == []


async def test_job_timeout_on_a_slow_head(env: Env) -> None:
    blob = Blob(payload(1000), delay_head=3.0)
    started = trio.current_time()
    row = await env.fetch(env.upstream.add("/slow-head.bin", blob), timeout="1")
    assert_failed(row, "DOWNLOAD_TIMEOUT")
    assert trio.current_time() - started < 1.8


async def test_default_timeout_from_config(make_env: MakeEnv) -> None:
    env = await make_env(download_timeout=1.0)
    blob = Blob(payload(20_000), chunk=1000, delay_per_chunk=0.1)
    row = await env.fetch(env.upstream.add("/slow.bin", blob))
    assert_failed(row, "DOWNLOAD_TIMEOUT")


async def test_timeout_long_enough_completes(env: Env) -> None:
    data = payload(5000)
    blob = Blob(data, chunk=1000, delay_per_chunk=0.05)
    row = await env.fetch(env.upstream.add("/slowish.bin", blob), timeout="5")
    assert row["status"] == "completed"
    assert row["sha256"] == sha256(data)


# --- checksums and size limits --------------------------------------------------------


@pytest.mark.parametrize("upper", [False, True])
async def test_sha256_matches(env: Env, upper: bool) -> None:
    data = payload(70_000, seed=11)
    digest = sha256(data).upper() if upper else sha256(data)
    row = await env.fetch(env.upstream.add("/sum.bin", Blob(data)), sha256=digest)
    assert row["status"] == "completed"
    assert row["sha256"] == sha256(data)
    assert (env.root / "dl" / "sum.bin").read_bytes() == data


async def test_sha256_mismatch(env: Env) -> None:
    data = payload(70_000, seed=12)
    wrong = sha256(data + b"x")
    row = await env.fetch(env.upstream.add("/sum.bin", Blob(data)), sha256=wrong)
    assert_failed(row, "CHECKSUM_MISMATCH")
    assert env.listing() == []


@pytest.mark.parametrize(
    "chunked",
    [
        pytest.param(False, id="content-length"),
        pytest.param(True, id="chunked"),
    ],
)
async def test_max_fetch_size(make_env: MakeEnv, chunked: bool) -> None:
    env = await make_env(max_fetch_size=10_000)
    exact = payload(10_000, seed=13)
    over = payload(10_001, seed=14)
    env.upstream.add("/exact.bin", Blob(exact, chunked=chunked, chunk=3000))
    env.upstream.add("/over.bin", Blob(over, chunked=chunked, chunk=3000))
    row = await env.fetch(env.url("/over.bin"))
    assert_failed(row, "FILE_TOO_LARGE")
    assert env.listing() == []
    row = await env.fetch(env.url("/exact.bin"))
    assert row["status"] == "completed"
    assert (env.root / "dl" / "exact.bin").read_bytes() == exact


async def test_max_fetch_size_by_content_length_stops_before_the_body(make_env: MakeEnv) -> None:
    env = await make_env(max_fetch_size=10_000)
    blob = Blob(payload(2_000_000), chunk=10_000, delay_per_chunk=0.05)  # 10 s if read
    started = trio.current_time()
    row = await env.fetch(env.upstream.add("/huge.bin", blob))
    assert_failed(row, "FILE_TOO_LARGE")
    assert trio.current_time() - started < 1.0


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
