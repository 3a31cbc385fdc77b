"""Running remote downloads (seed 001, issue 5): the active list, queueing, cancelling,
and the websocket progress events (type 20).

Same set-up as ``test_remote_downloads.py`` (:mod:`tests.helpers.remote_downloads`): a real
server with downloads enabled, fetching from the loopback upstream.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import trio
from trio_websocket import WebSocketConnection

from slipstream.wsprotocol import CloseCode
from slipstream.wsprotocol import Status as WsStatus
from tests.helpers.remote_downloads import (
    ACTIVE_KEYS,
    HISTORY_KEYS,
    JOB_TIMEOUT,
    Env,
    MakeEnv,
    payload,
    sha256,
)
from tests.helpers.upstream import Blob, Status
from tests.helpers.ws import ask, close_reason, connect

MIB = 1024 * 1024


# --- active jobs, queueing, cancelling ------------------------------------------------


def slow_blob(size: int = 4000, chunk: int = 1000, delay: float = 0.1, **kwargs: Any) -> Blob:
    """A small body sent in ``size / chunk`` pieces, ``delay`` seconds apart."""
    return Blob(payload(size, seed=size), chunk=chunk, delay_per_chunk=delay, **kwargs)


async def poll_active(
    env: Env, until: Callable[[list[dict[str, Any]]], bool], *, timeout: float = 5.0
) -> list[dict[str, Any]]:
    """Poll ``/api/v1/downloads`` until ``until(rows)``; the rows that satisfied it."""
    with trio.fail_after(timeout):
        while True:
            rows = await env.active()
            if until(rows):
                return rows
            await trio.sleep(0.02)


async def test_concurrency_limit_queues_the_rest(make_env: MakeEnv) -> None:
    env = await make_env(max_concurrent_downloads=2)
    blobs = [slow_blob(3000 + n, delay=0.12) for n in range(5)]
    urls = [env.upstream.add(f"/q{n}.bin", blob) for n, blob in enumerate(blobs)]
    ids = [await env.start_ok(url) for url in urls]
    seen_queued = 0
    polls = 0
    with trio.fail_after(JOB_TIMEOUT):
        while rows := await env.active():
            polls += 1
            running = [r for r in rows if r["status"] in ("starting", "downloading")]
            queued = [r for r in rows if r["status"] == "queued"]
            assert len(running) <= 2, rows
            assert len(running) + len(queued) == len(rows)
            assert {r["id"] for r in rows} <= set(ids)
            seen_queued = max(seen_queued, len(queued))
            await trio.sleep(0.02)
    assert polls >= 5
    assert seen_queued == 3
    for job_id, blob in zip(ids, blobs, strict=True):
        row = await env.wait(job_id)
        assert row["status"] == "completed"
        assert row["sha256"] == sha256(blob.data)


def streaming_blob(size: int = 3 * MIB, *, seconds: float = 1.0, **kwargs: Any) -> Blob:
    """A body of several MiB sent in 64 KiB pieces over about ``seconds``.

    Jobs write (and count) in 1 MiB blocks, so progress shows only past the first MiB.
    """
    chunk = 64 * 1024
    delay = seconds / (size / chunk)
    return Blob(payload(size, seed=size % 1000), chunk=chunk, delay_per_chunk=delay, **kwargs)


def downloading(rows: list[dict[str, Any]]) -> bool:
    return bool(rows) and rows[0]["status"] == "downloading" and rows[0]["current_size"] > 0


async def test_active_fields_with_known_size(env: Env) -> None:
    blob = streaming_blob()
    url = env.upstream.add("/known.bin", blob)
    job_id = await env.start_ok(url)
    rows = await poll_active(
        env, lambda rows: downloading(rows) and rows[0]["speed_bytes_per_s"] is not None
    )
    (row,) = rows
    assert set(row) == ACTIVE_KEYS
    assert row["id"] == job_id
    assert row["filename"] == "known.bin"
    assert row["file_path"] == "dl/known.bin"
    assert row["directory"] == "dl"
    assert row["url"] == url
    assert row["expected_size"] == blob.size
    assert 0 < row["current_size"] < blob.size
    progress = 100 * row["current_size"] / blob.size
    assert row["progress_percentage"] == pytest.approx(progress, abs=0.01)
    assert isinstance(row["start_time"], int) and abs(row["start_time"] - time.time()) < 5
    assert row["speed_bytes_per_s"] > 0
    assert isinstance(row["eta_s"], int | float) and row["eta_s"] >= 0
    assert (await env.wait(job_id))["status"] == "completed"


async def test_active_fields_with_unknown_size(env: Env) -> None:
    blob = streaming_blob(chunked=True)
    job_id = await env.start_ok(env.upstream.add("/unknown.bin", blob))
    (row,) = await poll_active(env, downloading)
    assert set(row) == ACTIVE_KEYS
    assert row["expected_size"] is None
    assert row["progress_percentage"] is None
    assert row["eta_s"] is None
    row = await env.wait(job_id)
    assert row["status"] == "completed"
    assert row["total_bytes"] == blob.size


async def test_progress_shows_on_a_slow_small_download(env: Env) -> None:
    """Bytes received show in ``current_size`` within a progress interval or so, even when
    the whole body is smaller than the write block (a slow link must not look stalled)."""
    blob = slow_blob(20_000, chunk=1000, delay=0.1)  # 2 s, 10 kB/s
    job_id = await env.start_ok(env.upstream.add("/trickle.bin", blob))
    # 5000 bytes arrive after ~0.5 s; they must show long before the body ends (2 s)
    (row,) = await poll_active(
        env, lambda rows: len(rows) == 1 and rows[0]["current_size"] >= 5000, timeout=1.5
    )
    assert row["status"] == "downloading"
    jobs = env.served.server.services.jobs
    assert jobs is not None
    jobs.cancel(job_id)
    assert (await env.wait(job_id))["status"] == "cancelled"


async def test_queued_job_fields(make_env: MakeEnv) -> None:
    env = await make_env(max_concurrent_downloads=1)
    first = await env.start_ok(env.upstream.add("/first.bin", slow_blob(3000, delay=0.1)))
    second = await env.start_ok(env.upstream.add("/second.bin", slow_blob(2000, delay=0.05)))
    rows = await poll_active(env, lambda rows: len(rows) == 2)
    queued = next(row for row in rows if row["id"] == second)
    assert queued["status"] == "queued"
    assert queued["current_size"] == 0
    assert queued["expected_size"] is None
    assert queued["progress_percentage"] is None
    assert queued["speed_bytes_per_s"] is None
    assert queued["eta_s"] is None
    for job_id in (first, second):
        assert (await env.wait(job_id))["status"] == "completed"


async def test_active_list_filters_by_directory(env: Env) -> None:
    in_a = await env.start_ok(env.upstream.add("/a.bin", slow_blob(3000, delay=0.1)), "a")
    in_b = await env.start_ok(env.upstream.add("/b.bin", slow_blob(3001, delay=0.1)), "b/c")
    in_root = await env.start_ok(env.upstream.add("/r.bin", slow_blob(3002, delay=0.1)), "")
    assert [row["id"] for row in await env.active("a")] == [in_a]
    assert [row["id"] for row in await env.active("a/")] == [in_a]
    assert [row["id"] for row in await env.active("b/c")] == [in_b]
    assert await env.active("b") == []
    assert await env.active("elsewhere") == []
    assert {row["id"] for row in await env.active()} == {in_a, in_b, in_root}
    for job_id in (in_a, in_b, in_root):
        await env.wait(job_id)
    assert await env.active("a") == []
    assert await env.active() == []


async def test_cancel_running_job(env: Env) -> None:
    job_id = await env.start_ok(env.upstream.add("/cancel.bin", streaming_blob(seconds=2)))
    await poll_active(env, downloading)
    assert any(name.endswith(".part") for name in env.listing())  # bytes are on disk
    started = trio.current_time()
    response = await env.http.delete(f"/api/v1/downloads/{job_id}")
    assert response.status_code == 200
    assert response.json() == {"success": True, "id": job_id, "status": "cancelled"}
    row = await env.wait(job_id)
    assert trio.current_time() - started < 1.0
    assert row["status"] == "cancelled"
    assert row["total_bytes"] is None
    assert row["sha256"] is None
    assert row["end_time"] >= row["start_time"]
    assert env.listing() == []  # partial file removed, nothing published
    assert await env.active() == []
    again = await env.http.delete(f"/api/v1/downloads/{job_id}")
    assert again.status_code == 404
    assert again.json() == {"success": False, "error": "DOWNLOAD_NOT_FOUND"}


async def test_cancel_queued_job(make_env: MakeEnv) -> None:
    env = await make_env(max_concurrent_downloads=1)
    running = await env.start_ok(env.upstream.add("/run.bin", slow_blob(3000, delay=0.1)))
    queued = await env.start_ok(env.upstream.add("/wait.bin", slow_blob(2000)))
    response = await env.http.delete(f"/api/v1/downloads/{queued}")
    assert response.status_code == 200
    assert (await env.wait(queued))["status"] == "cancelled"
    assert (await env.wait(running))["status"] == "completed"
    assert env.upstream.requests_for("/wait.bin") == []
    assert env.listing() == ["run.bin"]


@pytest.mark.parametrize("job_id", [str(uuid.UUID(int=7)), "not-a-uuid", "a%2Fb"])
async def test_cancel_unknown_job(env: Env, job_id: str) -> None:
    response = await env.http.delete(f"/api/v1/downloads/{job_id}")
    assert response.status_code == 404
    assert response.json() == {"success": False, "error": "DOWNLOAD_NOT_FOUND"}


# --- websocket events (type 20) -------------------------------------------------------


async def subscribe(ws: WebSocketConnection) -> None:
    assert await ask(ws, {"type": 20, "id": 2}) == {"id": 2, "status": WsStatus.OK}


async def events_until_final(
    ws: WebSocketConnection, job_id: str, *, timeout: float = JOB_TIMEOUT
) -> list[tuple[float, dict[str, Any]]]:
    """``(arrival time, event)`` of job ``job_id`` up to and including its final event."""
    out: list[tuple[float, dict[str, Any]]] = []
    with trio.fail_after(timeout):
        while True:
            event = json.loads(await ws.get_message())
            assert event["event"] == "download", event
            if event["id"] != job_id:
                continue
            out.append((trio.current_time(), event))
            if "end_time" in event:
                return out


async def test_progress_events_are_rate_limited_and_end_with_history(env: Env) -> None:
    # 16 MiB over about 2 s: 16 blocks of 1 MiB, about 8 progress updates a second.  The
    # job hashes every byte with all seven digests; the pure-Python twins take several
    # seconds for that (SLIPSTREAM_PURE=1), so this job and this wait get a long deadline.
    blob = streaming_blob(16 * MIB, seconds=2.0)
    url = env.upstream.add("/events.bin", blob)
    async with connect(env.served) as ws:
        await subscribe(ws)
        job_id = await env.start_ok(url, timeout="120")
        events = await events_until_final(ws, job_id, timeout=120)
    *progress, (_, final) = events
    assert set(final) == {"event", *HISTORY_KEYS}
    assert final["status"] == "completed"
    assert final["error"] is None
    assert final["total_bytes"] == blob.size
    assert final["sha256"] == sha256(blob.data)
    assert final["file_path"] == "dl/events.bin"
    assert final == {"event": "download", **(await env.history())[0]}
    assert len(progress) >= 4
    for _, event in progress:
        assert set(event) == {"event", *ACTIVE_KEYS}
        assert event["id"] == job_id
        assert event["status"] in ("queued", "starting", "downloading")
    sizes = [event["current_size"] for _, event in progress]
    assert sizes == sorted(sizes)
    assert 0 < sizes[-1] <= blob.size
    moving = [(t, e) for t, e in progress if e["status"] == "downloading" and e["current_size"]]
    assert moving and moving[-1][1]["progress_percentage"] > 0
    duration = progress[-1][0] - progress[0][0]
    assert duration >= 1.0
    # At most 4 a second, plus the forced ones on status changes (starting, downloading).
    assert len(progress) <= 4 * duration + 3, [(round(t, 2), e["current_size"]) for t, e in events]


async def test_events_of_failed_and_cancelled_jobs(env: Env) -> None:
    env.upstream.add("/missing.bin", Status(404))
    slow = env.upstream.add("/slow.bin", streaming_blob(seconds=3.0))
    async with connect(env.served) as ws:
        await subscribe(ws)
        failed = await env.start_ok(env.upstream.url("/missing.bin"), "x")
        (*_, (_, final)) = await events_until_final(ws, failed)
        assert final["status"] == "failed"
        assert final["error"] == "REMOTE_FILE_NOT_FOUND"
        assert final["directory"] == "x"
        assert final["total_bytes"] is None
        cancelled = await env.start_ok(slow)
        await poll_active(env, downloading)
        assert (await env.http.delete(f"/api/v1/downloads/{cancelled}")).status_code == 200
        (*_, (_, final)) = await events_until_final(ws, cancelled)
        assert final["status"] == "cancelled"
        assert final["error"] is None


async def test_events_of_every_job_reach_every_subscriber(env: Env) -> None:
    urls = [env.upstream.add(f"/e{n}.bin", Blob(payload(1000 + n))) for n in range(2)]
    async with connect(env.served) as first, connect(env.served) as second:
        await subscribe(first)
        await subscribe(second)
        ids = [await env.start_ok(urls[0], "a"), await env.start_ok(urls[1], "b/c")]
        for ws in (first, second):
            finals: dict[str, dict[str, Any]] = {}
            with trio.fail_after(JOB_TIMEOUT):
                while len(finals) < 2:
                    event = json.loads(await ws.get_message())
                    if "end_time" in event:
                        finals[event["id"]] = event
            assert set(finals) == set(ids)
            assert all(event["status"] == "completed" for event in finals.values())


async def test_no_events_without_subscribing(env: Env) -> None:
    url = env.upstream.add("/quiet.bin", Blob(payload(1000)))
    async with connect(env.served) as ws:
        row = await env.fetch(url)
        assert row["status"] == "completed"
        with trio.move_on_after(0.3) as waited:
            message = await ws.get_message()
            raise AssertionError(f"unexpected message {message!r}")
        assert waited.cancelled_caught
        # Still usable: subscribing now works and reports later jobs only.
        await subscribe(ws)
        job_id = await env.start_ok(url)
        events = await events_until_final(ws, job_id)
        assert events[-1][1]["status"] == "completed"


async def test_subscribe_before_initialize_is_closed_4200(env: Env) -> None:
    async with connect(env.served, initialize=False) as ws:
        await ws.send_message(json.dumps({"type": 20, "id": 2}))
        code, reason = await close_reason(ws)
    assert code == CloseCode.NOT_INITIALIZED
    assert reason == "connection is not initialized"
