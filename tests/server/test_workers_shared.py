"""What a user sees is the same whichever worker answers (``slipstream serve --workers``):
remote-download jobs run in one worker and are listed, cancelled and followed (websocket
type 20) from any; the websocket rate limit counts an IP across every worker.

The server is a real subprocess in test mode (every reply names its worker); each request
goes on a new connection, and the tests go on until the workers they need have answered.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import trio
import trio_websocket
from trio_websocket import WebSocketConnection

from slipstream.wsprotocol import CloseCode, Status
from tests.helpers.subprocess_server import Running, serve
from tests.helpers.upstream import Blob, Upstream
from tests.helpers.workers import WORKER_ENV

TOKEN = "T"
BODY = b"x" * (256 * 1024)


@asynccontextmanager
async def two_workers(tmp_path: Path, *flags: str) -> AsyncIterator[Running]:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    common = ("--workers", "2", "--allow-download", "--allow-private-networks")
    async with serve(
        root, tmp_path / "server.log", *common, *flags, token=TOKEN, env=WORKER_ENV
    ) as server:
        yield server


def fresh(server: Running) -> httpx.AsyncClient:
    """A client whose every request opens a new connection (so any worker may answer)."""
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{server.port}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
        limits=httpx.Limits(max_keepalive_connections=0),
    )


def worker(response: httpx.Response) -> str:
    value = response.headers.get("x-slipstream-worker")
    assert value, response.headers
    return str(value)


async def from_every_worker(
    client: httpx.AsyncClient, method: str, path: str, workers: int = 2
) -> dict[str, httpx.Response]:
    """Send the same request on new connections until ``workers`` workers answered."""
    seen: dict[str, httpx.Response] = {}
    for _ in range(200):
        response = await client.request(method, path)
        seen.setdefault(worker(response), response)
        if len(seen) >= workers:
            return seen
    raise AssertionError(f"only {sorted(seen)} answered")


async def held_job(
    client: httpx.AsyncClient, upstream: Upstream, name: str, hold: trio.Event
) -> tuple[str, str]:
    """Start a job whose body stops half-way until ``hold`` is set: (job id, its worker)."""
    url = upstream.add(f"/{name}", Blob(data=BODY, hold=hold, hold_after=len(BODY) // 2))
    reply = await client.get("/dl", params={"download": url})
    assert reply.status_code == 202, reply.text
    return str(reply.json()["download_id"]), worker(reply)


async def wait_history(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    with trio.fail_after(15):
        while True:
            rows = (await client.get("/?download_history=")).json()["history"]
            mine = [row for row in rows if row["id"] == job_id]
            if mine:
                return dict(mine[0])
            await trio.sleep(0.05)


async def test_a_job_runs_in_one_worker_and_every_worker_lists_and_cancels_it(
    tmp_path: Path,
) -> None:
    upstream = Upstream(timeout=30)
    hold = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(upstream.run)
        async with two_workers(tmp_path) as server, fresh(server) as client:
            job_id, owner = await held_job(client, upstream, "a.bin", hold)
            other_id, _ = await held_job(client, upstream, "b.bin", hold)
            with trio.fail_after(10):  # both bodies are on their way
                while len(upstream.requests) < 2:
                    await trio.sleep(0.02)
            for path in ("/api/v1/downloads", "/dl?downloads="):
                answers = await from_every_worker(client, "GET", path)
                for response in answers.values():
                    listed = [row["id"] for row in response.json()["downloads"]]
                    assert listed == [job_id, other_id], (path, response.json())
            # DELETE reaches the job from a worker that does not run it.
            for _ in range(200):
                reply = await client.delete(f"/api/v1/downloads/{job_id}")
                assert reply.status_code in (200, 404), reply.text
                if worker(reply) != owner or reply.status_code == 200:
                    break
            assert reply.status_code == 200, reply.text
            assert reply.json() == {"success": True, "id": job_id, "status": "cancelled"}
            cancelled = await wait_history(client, job_id)
            assert cancelled["status"] == "cancelled"
            hold.set()
            done = await wait_history(client, other_id)
            assert done["status"] == "completed" and done["total_bytes"] == len(BODY)
            for response in (
                await from_every_worker(client, "GET", "/?download_history=")
            ).values():
                states = {row["id"]: row["status"] for row in response.json()["history"]}
                assert states == {job_id: "cancelled", other_id: "completed"}
            unknown = await client.delete(f"/api/v1/downloads/{job_id}")
            assert unknown.status_code == 404
            # Each job was fetched once, by one worker: the one recorded as its owner.
            assert len(upstream.requests_for("/a.bin")) == 1
            assert len(upstream.requests_for("/b.bin")) == 1
            state = tmp_path / "root" / ".slipstream" / "downloads.sqlite3"
            with sqlite3.connect(state) as db:
                (slot,) = db.execute("SELECT owner FROM jobs WHERE id = ?", (job_id,)).fetchone()
            assert slot == int(owner.split("-")[0])
            assert await server.stop(15) == 0
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def websocket(server: Running) -> AsyncIterator[tuple[WebSocketConnection, str]]:
    """An initialized websocket and the worker it landed on."""
    async with trio_websocket.open_websocket_url(
        f"ws://127.0.0.1:{server.port}/ws", connect_timeout=10, disconnect_timeout=5
    ) as ws:
        headers = dict(ws.handshake_headers)
        yield ws, headers[b"x-slipstream-worker"].decode()


async def ask(ws: WebSocketConnection, packet: dict[str, Any]) -> Any:
    await ws.send_message(json.dumps(packet))
    with trio.fail_after(10):
        return json.loads(await ws.get_message())


async def two_websockets(server: Running, nursery: trio.Nursery) -> dict[str, WebSocketConnection]:
    """Websockets held open in ``nursery`` until two workers have one: by worker."""
    sockets: dict[str, WebSocketConnection] = {}

    async def hold_open(task_status: trio.TaskStatus[tuple[str, WebSocketConnection]]) -> None:
        async with websocket(server) as (ws, on):
            task_status.started((on, ws))
            await trio.sleep_forever()

    for _ in range(40):
        on, ws = await nursery.start(hold_open)
        sockets.setdefault(on, ws)
        if len(sockets) == 2:
            return sockets
    raise AssertionError(f"every websocket landed on {sorted(sockets)}")


async def test_progress_of_a_job_in_another_worker_reaches_a_subscriber_within_half_a_second(
    tmp_path: Path,
) -> None:
    upstream = Upstream(timeout=30)
    hold = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(upstream.run)
        async with two_workers(tmp_path) as server, fresh(server) as client:
            sockets = await two_websockets(server, nursery)
            for ws in sockets.values():
                assert await ask(ws, {"type": 1, "id": 1, "token": TOKEN}) == {
                    "id": 1,
                    "status": Status.OK,
                }
                assert await ask(ws, {"type": 20, "id": 2}) == {"id": 2, "status": Status.OK}
            for n in range(50):  # a job in a worker with a subscriber, and one without
                job_id, owner = await held_job(client, upstream, f"{n}.bin", hold)
                if owner in sockets:
                    break
            (elsewhere,) = set(sockets) - {owner}
            # The same events arrive on both: at once where the job runs, and through the
            # store on the other worker; the difference is what sharing costs.
            arrived: dict[str, dict[str, float]] = {owner: {}, elsewhere: {}}

            async def collect(on: str, done: trio.Event) -> None:
                with trio.fail_after(30):
                    while True:
                        event = json.loads(await sockets[on].get_message())
                        if event["id"] != job_id:
                            continue
                        key = "final" if "end_time" in event else event["status"]
                        arrived[on].setdefault(key, trio.current_time())
                        if key == "downloading" and on == owner:
                            hold.set()  # the rest of the body, then the final event
                        if key == "final":
                            assert event["status"] == "completed", event
                            done.set()
                            return

            both = [trio.Event(), trio.Event()]
            async with trio.open_nursery() as readers:
                readers.start_soon(collect, owner, both[0])
                readers.start_soon(collect, elsewhere, both[1])
            for key in ("downloading", "final"):
                lag = arrived[elsewhere][key] - arrived[owner][key]
                assert lag < 0.5, (key, arrived)
            assert await server.stop(15) == 0
        nursery.cancel_scope.cancel()


async def test_the_websocket_rate_limit_counts_an_ip_across_workers(tmp_path: Path) -> None:
    flags = ("--ws-rate-limit", "6", "--ws-rate-window", "60", "--ws-block-seconds", "60")
    async with two_workers(tmp_path, *flags) as server:
        async with trio.open_nursery() as nursery:
            # opening a websocket sends no packet (only the handshake)
            sockets = await two_websockets(server, nursery)
            first, second = sockets.values()
            for n, ws in enumerate((first, second) * 3, 1):  # 3 + 3: at the limit
                assert await ask(ws, {"type": 1, "id": n, "token": TOKEN}) == {
                    "id": n,
                    "status": Status.OK,
                }
            await first.send_message(json.dumps({"type": 1, "id": 99, "token": TOKEN}))
            with trio.fail_after(10):
                while first.closed is None:
                    try:
                        await first.get_message()
                    except trio_websocket.ConnectionClosed:
                        break
            assert first.closed is not None
            assert first.closed.code == CloseCode.RATE_LIMIT_HIT
            # Blocked on every worker: a new connection is refused wherever it lands.
            refused: set[str] = set()
            for _ in range(40):
                async with websocket(server) as (ws, on):
                    with trio.fail_after(10):
                        with suppress(trio_websocket.ConnectionClosed):
                            await ws.get_message()
                    assert ws.closed is not None and ws.closed.code == CloseCode.RATE_LIMIT_HIT
                    refused.add(on)
                if len(refused) == 2:
                    break
            assert len(refused) == 2
            nursery.cancel_scope.cancel()
        assert await server.stop(15) == 0


async def test_a_restarted_worker_resumes_its_own_jobs_and_no_other_worker_does(
    tmp_path: Path,
) -> None:
    upstream = Upstream(timeout=30)
    holds = {"kept": trio.Event(), "other": trio.Event()}
    async with trio.open_nursery() as nursery:
        await nursery.start(upstream.run)
        async with two_workers(tmp_path) as server, fresh(server) as client:
            job_id, owner = await held_job(client, upstream, "kept.bin", holds["kept"])
            for n in range(50):  # a job on the other worker, which must be left alone
                other_id, other_owner = await held_job(
                    client, upstream, f"other-{n}.bin", holds["other"]
                )
                if other_owner.split("-")[0] != owner.split("-")[0]:
                    break
                holds["other"].set()
                await wait_history(client, other_id)
                holds["other"] = trio.Event()
            other_path = f"/other-{n}.bin"
            with trio.fail_after(10):  # half of each body is in, the rest held back
                while True:
                    rows = (await client.get("/api/v1/downloads")).json()["downloads"]
                    sizes = {row["id"]: row["current_size"] for row in rows}
                    if all(sizes.get(i, 0) >= len(BODY) // 2 for i in (job_id, other_id)):
                        break
                    await trio.sleep(0.05)
            os.kill(int(owner.split("-")[1]), signal.SIGKILL)
            holds["kept"].set()
            done = await wait_history(client, job_id)
            assert done["status"] == "completed", done
            assert (tmp_path / "root" / "dl" / "kept.bin").read_bytes() == BODY
            # Fetched twice: by the job's first worker, then once by its slot's new worker.
            assert len(upstream.requests_for("/kept.bin")) == 2
            # The other worker's job was not taken over: still one fetch, still running.
            assert len(upstream.requests_for(other_path)) == 1
            active = (await client.get("/api/v1/downloads")).json()["downloads"]
            assert [row["id"] for row in active] == [other_id]
            holds["other"].set()
            assert (await wait_history(client, other_id))["status"] == "completed"
            assert len(upstream.requests_for(other_path)) == 1
            slot, pid = owner.split("-")
            assert f"worker {slot} (pid {pid}) was killed" in server.log.read_text()
            assert await server.stop(15) == 0
        nursery.cancel_scope.cancel()
