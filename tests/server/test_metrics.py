"""``/metrics``: scraped before and after a known set of requests, over loopback.

Each test compares two scrapes parsed with prometheus_client's own parser: every counter
must have moved by exactly what the requests in between did, and nothing else.
"""

from __future__ import annotations

import httpx
import pytest
import trio

from tests.helpers.metrics import Samples, labels, moved, scrape, value
from tests.helpers.remote_downloads import MakeEnv, payload
from tests.helpers.server import Served, StartServer, download_target, wait_for
from tests.helpers.upstream import Blob, Status, Upstream
from tests.helpers.ws import ask, connect
from tests.helpers.zip import add_three, check_error, create, fetch, form_fields, post, zip_server

REQUESTS = "slipstream_http_requests_total"
BYTES = "slipstream_http_response_bytes_total"
SENDFILE = "slipstream_http_sendfile_bytes_total"
GAUGES = (
    "slipstream_http_requests_in_flight",
    "slipstream_open_websockets",
    "slipstream_zip_streams_active",
)


@pytest.fixture
async def served_metrics(start_server: StartServer) -> Served:
    """A server with ``--metrics``."""
    return await start_server(metrics=True)


async def main_scrape(served: Served) -> Samples:
    return await scrape(served.port, served.token)


async def gauges_settle(served: Served, **expected: float) -> Samples:
    """Scrape until every gauge named has its value, and no request but the scrape is in
    flight (the server counts a reply, closes its side of a websocket, a zip body, a
    connection, a moment after the client saw the end)."""
    return (await scrapes_until_settled(served, **expected))[0]


async def scrapes_until_settled(served: Served, **expected: float) -> tuple[Samples, int]:
    """:func:`gauges_settle`, and how many scrapes it took (each earlier one is counted in
    the last: a scrape with one request in flight sees every earlier request's count)."""
    expected.setdefault("slipstream_http_requests_in_flight", 1)
    found: Samples = {}
    scrapes = 0

    async def check() -> bool:
        nonlocal found, scrapes
        found = await main_scrape(served)
        scrapes += 1
        return all(value(found, name) == number for name, number in expected.items())

    with trio.fail_after(5):
        while not await check():
            await trio.sleep(0.01)
    return found, scrapes


async def test_counters_move_by_exactly_the_requests_made(
    start_server: StartServer, upstream: Upstream
) -> None:
    served = await zip_server(start_server, upstream, metrics=True)
    uris = add_three(upstream)
    before = await gauges_settle(served)
    bodies: dict[str, int] = {}
    async with served.client() as client:
        first = await client.get(download_target("small.txt"))
        again = await client.get(download_target("small.txt"))
        ranged = await client.get(download_target("medium.bin"), headers={"Range": "bytes=0-49999"})
        missing = await client.get(download_target("no-such-file.txt"))
        health = await client.get("/healthz")
        unknown = await client.get("/no/such/route")
        local_zip = await client.get("/api/zip", params={"path": "subdir"}, headers=served.auth)
    assert [first.status_code, again.status_code, ranged.status_code] == [200, 200, 206]
    assert [missing.status_code, health.status_code, unknown.status_code] == [404, 200, 404]
    assert local_zip.status_code == 200
    bodies["/api/download"] = sum(len(r.content) for r in (first, again, ranged, missing))
    stream_path = await create(served, uris)  # POST /download -> 303
    async with served.client() as client:
        zipped = await client.get(stream_path)
    assert zipped.status_code == 200
    async with connect(served) as ws:  # Initialize, then one presigned URL (a cache hit)
        reply = await ask(ws, {"type": 7, "id": 1, "filename": "small.txt", "resume_at": 0})
        assert reply["status"] == 1
    after, scrapes = await scrapes_until_settled(
        served, slipstream_open_websockets=0, slipstream_zip_streams_active=0
    )

    assert moved(before, after, REQUESTS) == {
        labels(route="/api/download", status="200"): 2,
        labels(route="/api/download", status="206"): 1,
        labels(route="/api/download", status="404"): 1,
        labels(route="/healthz", status="200"): 1,
        labels(route="none", status="404"): 1,
        labels(route="/api/zip", status="200"): 1,
        labels(route="/download", status="303"): 1,
        labels(route="/stream/*", status="200"): 1,
        labels(route="/ws", status="101"): 1,
        # the last scrape before, and every scrape after but the last (counted once sent)
        labels(route="/metrics", status="200"): scrapes,
    }
    bytes_moved = moved(before, after, BYTES)
    assert bytes_moved[labels(route="/api/download")] == bodies["/api/download"]
    assert bytes_moved[labels(route="/api/zip")] == len(local_zip.content)
    assert bytes_moved[labels(route="/stream/*")] == len(zipped.content)
    assert bytes_moved[labels(route="/healthz")] == len(health.content)
    # Of the downloads only the 50,000-byte slice is large enough for sendfile (small
    # slices are read and sent with their head).
    assert moved(before, after, SENDFILE)[labels(route="/api/download")] == 50_000
    # small.txt and medium.bin were hashed once each; the second small.txt reply and the
    # websocket's presigned URL were answered from the cache.
    assert moved(before, after, "slipstream_digest_cache_misses_total") == {(): 2}
    assert moved(before, after, "slipstream_digest_cache_hits_total") == {(): 2}
    assert moved(before, after, "slipstream_digest_hash_duration_seconds_count") == {(): 2}
    assert moved(before, after, "slipstream_upstream_errors_total") == {}
    for gauge in GAUGES:  # the scrape itself is the one request in flight
        assert value(after, gauge) == (1 if gauge.endswith("in_flight") else 0), gauge


async def test_gauges_count_what_is_open_now(served_metrics: Served) -> None:
    served = served_metrics
    # Only the scrape's own connection is open, then two websockets besides it.
    await gauges_settle(served, slipstream_open_connections=1)
    async with connect(served), connect(served):
        await gauges_settle(served, slipstream_open_websockets=2, slipstream_open_connections=3)
    await gauges_settle(served, slipstream_open_websockets=0, slipstream_open_connections=1)


async def test_download_jobs_by_state_bytes_fetched_and_upstream_errors(
    make_env: MakeEnv,
) -> None:
    env = await make_env(metrics=True)
    body = payload(300_000)
    good = env.upstream.add("/good.bin", Blob(body))
    gone = env.upstream.add("/gone.bin", Status(404))
    before = await gauges_settle(env.served)
    assert (await env.fetch(good))["status"] == "completed"
    assert (await env.fetch(gone))["status"] == "failed"
    after = await gauges_settle(env.served)
    assert moved(before, after, "slipstream_download_jobs_finished_total") == {
        labels(state="completed"): 1,
        labels(state="failed"): 1,
    }
    assert moved(before, after, "slipstream_download_fetched_bytes_total") == {(): len(body)}
    assert moved(before, after, "slipstream_upstream_errors_total") == {
        labels(service="download"): 1
    }
    for state in ("queued", "starting", "downloading"):
        assert value(after, "slipstream_download_jobs", state=state) == 0


async def test_a_running_job_is_counted_in_its_state(make_env: MakeEnv) -> None:
    env = await make_env(metrics=True)
    release = trio.Event()
    slow = env.upstream.add("/slow.bin", Blob(payload(1_000_000), hold=release, hold_after=1000))
    job = await env.start_ok(slow)
    jobs = env.served.server.services.jobs
    assert await wait_for(lambda: [j["status"] for j in jobs.active()] == ["downloading"])
    during = await main_scrape(env.served)
    assert value(during, "slipstream_download_jobs", state="downloading") == 1
    release.set()
    assert (await env.wait(job))["status"] == "completed"
    after = await gauges_settle(env.served)
    assert value(after, "slipstream_download_jobs", state="downloading") == 0


async def test_zip_upstream_errors_are_counted(
    start_server: StartServer, upstream: Upstream
) -> None:
    served = await zip_server(start_server, upstream, metrics=True)
    uris = add_three(upstream)
    missing = upstream.add("/files/missing.bin", Status(404, b"nope"))
    before = await gauges_settle(served)
    refused = await post(served, fields=form_fields([uris[0], missing]))
    check_error(refused, "FAILED_FETCHING_URIS", "html", [missing])  # at the POST's probe
    first_missing = await create(served, uris)
    second_missing = await create(served, [uris[2], uris[0]])
    upstream.remove("/files/m0.bin")
    # known before the head: the seed's error
    check_error(await fetch(served, first_missing), "FAILED_FETCHING_URIS", "html", [uris[0]])
    with pytest.raises(httpx.RemoteProtocolError):  # after the first member: the reply is cut
        await fetch(served, second_missing)
    after = await gauges_settle(served, slipstream_zip_streams_active=0)
    assert moved(before, after, "slipstream_upstream_errors_total") == {labels(service="zip"): 3}


async def test_metrics_are_off_by_default(served: Served) -> None:
    async with served.client() as client:
        response = await client.get("/metrics", headers=served.auth)
    assert response.status_code == 404
    assert served.server.services.metrics is None


async def test_main_port_metrics_need_the_token(served_metrics: Served) -> None:
    async with served_metrics.client() as client:
        anonymous = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert anonymous.status_code == 401
    assert wrong.status_code == 401


async def test_separate_listener_is_token_free_and_serves_only_metrics(
    start_server: StartServer,
) -> None:
    served = await start_server(metrics_bind=("127.0.0.1", 0))
    port = served.server.metrics_port
    assert port is not None and port != served.port
    before = await scrape(port)  # no token
    async with served.client() as client:
        assert (await client.get("/healthz")).status_code == 200
        # /metrics is not on the main port unless --metrics is given too
        assert (await client.get("/metrics", headers=served.auth)).status_code == 404
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as side:
        assert (await side.get("/healthz")).status_code == 404
        assert (
            await side.get("/api/download", params={"filepath": "small.txt"})
        ).status_code == 404
    with trio.fail_after(5):  # the main port's last reply is counted (nothing in flight)
        while value(after := await scrape(port), "slipstream_http_requests_in_flight"):
            await trio.sleep(0.01)
    # scrapes and requests on the metrics port are not client traffic: not counted
    assert moved(before, after, REQUESTS) == {
        labels(route="/healthz", status="200"): 1,
        labels(route="none", status="404"): 1,  # no /metrics route on the main port
    }


async def test_two_servers_in_one_process_count_apart(start_server: StartServer) -> None:
    one = await start_server(metrics=True)
    two = await start_server(metrics=True)
    before_two = await gauges_settle(two)
    async with one.client() as client:
        for _ in range(3):
            assert (await client.get("/healthz")).status_code == 200
    after_one = await gauges_settle(one)
    after_two, scrapes = await scrapes_until_settled(two)
    assert value(after_one, REQUESTS, route="/healthz", status="200") == 3
    assert moved(before_two, after_two, REQUESTS) == {
        labels(route="/metrics", status="200"): scrapes  # its own scrapes only
    }
