"""Remote downloads that go wrong: the domain lists and the address policy, failures while
fetching, checksum and size limits.  Each failed job carries its error key in the history.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from tests.helpers.remote_downloads import (
    LOOPBACK_NAME,
    Env,
    MakeEnv,
    assert_failed,
    payload,
    sha256,
)
from tests.helpers.upstream import Blob, Redirect, Status

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
