"""slipstream with one feature switched on, and the calls its benchmark makes.

:class:`JobServer` (remote downloads, for ``fetch.py``) starts jobs over HTTP and waits
for their final websocket events (:func:`run_jobs`); :class:`ZipServer` (the zip service,
for ``zip.py``) creates zips and reads its CRC-32 cache, per URI suffix (cold manifests) or
per URI (warm ones).
"""

from __future__ import annotations

import http.client
import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _servers import TOKEN, Slipstream

from slipstream.zip.state import CRC_SCHEMA

JOB_DIR = "fetched"  # slipstream downloads land in <root>/fetched
JOB_TIMEOUT_S = 1800  # per slipstream job, and for waiting on a whole batch
POLL_AFTER_S = 2.0  # without a final event for this long, look in the history too
FINAL = ("completed", "failed", "cancelled")


class JobServer(Slipstream):
    """slipstream with remote downloads enabled (loopback allowed), quiet logs."""

    def extra_args(self, tmp: Path) -> list[str]:
        return [
            "--allow-download",
            "--allow-private-networks",
            "--download-timeout",
            str(JOB_TIMEOUT_S),
        ]


@dataclass
class JobsRun:
    """One batch of jobs: wall time to the last final event, and the final events."""

    seconds: float
    finals: dict[str, dict[str, Any]]
    from_poll: int  # final events the websocket never delivered (found in the history)
    headers_s: dict[str, float]  # start request -> the job's "downloading" event (head read)


async def run_jobs(port: int, requests: list[tuple[str, str]]) -> JobsRun:
    """Start one job per ``(url, filename)`` and wait until every one has ended.

    A websocket subscribed to download events (type 20) timestamps each job's final
    event.  Should the server drop one (a slow subscriber loses events), the history is
    polled after 2 s without news, so a lost event costs accuracy, not a hang.
    """
    import httpx
    import trio
    from trio_websocket import open_websocket_url

    finals: dict[str, tuple[float, dict[str, Any]]] = {}
    downloading: dict[str, float] = {}
    news = trio.Event()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    base = f"http://127.0.0.1:{port}"
    async with (
        open_websocket_url(f"ws://127.0.0.1:{port}/ws") as ws,
        httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client,
    ):
        for packet in ({"type": 1, "id": 1, "token": TOKEN}, {"type": 20, "id": 2}):
            await ws.send_message(json.dumps(packet))
            reply = json.loads(await ws.get_message())
            if reply != {"id": packet["id"], "status": 1}:
                raise RuntimeError(f"websocket packet {packet['type']} answered {reply}")

        async def read_events() -> None:
            nonlocal news
            while True:
                event = json.loads(await ws.get_message())
                if event.get("event") != "download":
                    continue
                if event.get("status") == "downloading":
                    downloading.setdefault(event["id"], time.perf_counter())
                elif event.get("status") in FINAL:
                    finals.setdefault(event["id"], (time.perf_counter(), event))
                    news.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_events)
            began = time.perf_counter()
            ids: list[str] = []
            for url, name in requests:
                params = {"download": url, "filename": name}
                reply = await client.get(f"/{JOB_DIR}", params=params)
                if reply.status_code != 202:
                    raise RuntimeError(f"job start answered {reply.status_code}: {reply.text}")
                ids.append(reply.json()["download_id"])
            from_poll = 0
            with trio.fail_after(JOB_TIMEOUT_S):
                while missing := [i for i in ids if i not in finals]:
                    with trio.move_on_after(POLL_AFTER_S) as quiet:
                        await news.wait()
                    news = trio.Event()
                    if quiet.cancelled_caught:
                        history = (await client.get("/", params={"download_history": ""})).json()
                        for row in history["history"]:
                            if row["id"] in missing and row["id"] not in finals:
                                finals[row["id"]] = (time.perf_counter(), row)
                                from_poll += 1
            nursery.cancel_scope.cancel()
    ended = max(finals[i][0] for i in ids)
    heads = {i: downloading[i] - began for i in ids if i in downloading}
    return JobsRun(ended - began, {i: finals[i][1] for i in ids}, from_poll, heads)


class ZipServer(Slipstream):
    """slipstream allowed to zip what the upstreams serve (one allowed prefix each)."""

    def __init__(self, prefixes: Sequence[str], timeout_s: float) -> None:
        super().__init__()
        self.prefixes = list(prefixes)
        self.timeout_s = timeout_s
        """Socket timeout of :meth:`create`."""
        self.state = Path()
        """The server's state dir (its SQLite files), set when it starts."""

    def extra_args(self, tmp: Path) -> list[str]:
        self.state = self.state_dir(tmp)
        return [arg for prefix in self.prefixes for arg in ("--zip-allow-prefix", prefix)]

    def create(self, uris: Sequence[str]) -> tuple[str, float]:
        """``POST /download`` (JSON); the ``/stream/<id>`` path and the seconds it took."""
        body = json.dumps({"fs_uri_list": list(uris), "fs_file_name": "bench.zip"})
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout_s)
        try:
            began = time.perf_counter()
            conn.request("POST", "/download", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            text = response.read()
            took = time.perf_counter() - began
        finally:
            conn.close()
        location = response.getheader("Location") or ""
        if response.status != 303 or not location.startswith("/stream/"):
            raise RuntimeError(f"POST /download: {response.status} {text[:500]!r}")
        return location, took

    def cached_crcs(self, suffix: str) -> int:
        """How many CRC-32s the server's cache holds for URIs ending in ``suffix``."""
        db = sqlite3.connect(f"file:{self.state / CRC_SCHEMA.name}?mode=ro", uri=True)
        try:
            row = db.execute(
                "SELECT count(*) FROM crcs WHERE substr(uri, -length(?)) = ?", (suffix, suffix)
            ).fetchone()
        finally:
            db.close()
        return int(row[0])

    def cached_crc(self, uri: str) -> bool:
        """Whether the server's cache holds a CRC-32 for exactly ``uri``."""
        db = sqlite3.connect(f"file:{self.state / CRC_SCHEMA.name}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT count(*) FROM crcs WHERE uri = ?", (uri,)).fetchone()
        finally:
            db.close()
        return bool(row[0])
