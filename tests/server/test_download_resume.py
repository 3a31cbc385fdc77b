"""Remote-download jobs survive the server process: SIGKILL or SIGTERM, then a restart.

The server runs as a real subprocess (``python -m slipstream serve``); the upstream runs
in the test process and records every request.  A slow 8 MiB body keeps the job busy for
a few seconds; the test waits until bytes have been written, interrupts the process,
checks the hidden ``.part`` file, restarts the server over the same root, and watches the
job resume with ``Range: bytes=N-`` + ``If-Range`` (or restart from zero when it cannot).
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sqlite3
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.helpers.subprocess_server import Running
from tests.helpers.subprocess_server import serve as serve_subprocess
from tests.helpers.upstream import Blob, Upstream

TOKEN = "T"
FOLDER = "dl"
SIZE = 8 * 1024 * 1024
CHUNK = 64 * 1024
SLOW = 0.02
"""Seconds before each 64 KiB chunk: the whole body takes about 2.6 s."""


def serve(root: Path, log: Path) -> AbstractAsyncContextManager[Running]:
    """The server over ``root`` with downloads (loopback allowed) and the test token."""
    return serve_subprocess(root, log, "--allow-download", "--allow-private-networks", token=TOKEN)


async def start_job(server: Running, url: str) -> str:
    """Start a download into ``/dl``; its id."""
    async with server.client() as client:
        reply = await client.get(f"/{FOLDER}", params={"download": url})
    assert reply.status_code == 202, reply.text
    job_id: str = reply.json()["download_id"]
    return job_id


async def wait_for_bytes(server: Running, job_id: str, part: Path) -> int:
    """Poll until the job is active and its ``.part`` file holds bytes; their count.

    (``current_size`` counts bytes as they arrive; the file grows a block at a time.)
    """
    async with server.client() as client:
        with trio.fail_after(15):
            while True:
                active = (await client.get("/api/v1/downloads")).json()["downloads"]
                mine = [row for row in active if row["id"] == job_id]
                assert mine, f"job left the active list early: {active}"
                size = part.stat().st_size if part.exists() else 0
                if size > 0:
                    return size
                await trio.sleep(0.02)


async def wait_finished(server: Running, job_id: str) -> list[dict[str, Any]]:
    """Poll until the job is no longer active; the history rows with its id."""
    async with server.client() as client:
        with trio.fail_after(30):
            while True:
                active = (await client.get("/api/v1/downloads")).json()["downloads"]
                if all(row["id"] != job_id for row in active):
                    break
                await trio.sleep(0.05)
            history = (await client.get("/?download_history=")).json()["history"]
    return [row for row in history if row["id"] == job_id]


def part_files(folder: Path) -> list[str]:
    """Names of ``.part`` files in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def stored_row(root: Path, job_id: str) -> tuple[str, int]:
    """(status, current_size) of the job in the server's SQLite store."""
    with sqlite3.connect(root / ".slipstream" / "downloads.sqlite3") as db:
        row = db.execute("SELECT status, current_size FROM jobs WHERE id = ?", (job_id,)).fetchone()
    assert row is not None
    return str(row[0]), int(row[1])


@dataclass
class Interrupted:
    """A job whose server process was stopped mid-body."""

    job_id: str
    part: Path
    part_size: int


async def interrupt(
    root: Path, log: Path, url: str, upstream: Upstream, signum: int
) -> Interrupted:
    """Start a job for ``url``, stop the server with ``signum`` once bytes are on disk."""
    async with serve(root, log) as server:
        job_id = await start_job(server, url)
        await wait_for_bytes(server, job_id, root / FOLDER / f".{job_id}.part")
        status = await server.stop(signum)
    expected_status = -signal.SIGKILL if signum == signal.SIGKILL else 0
    assert status == expected_status, log.read_text(errors="replace")
    part = root / FOLDER / f".{job_id}.part"
    assert part.is_file(), sorted(os.listdir(root / FOLDER))
    size = part.stat().st_size
    assert 0 < size < SIZE, "the body must have been cut part-way"
    (first,) = upstream.requests
    assert first.header("range") is None
    upstream.reset()
    return Interrupted(job_id, part, size)


def check_done(root: Path, rows: list[dict[str, Any]], content: bytes, name: str) -> None:
    """Exactly one completed history row; the published file is ``content``; no .part."""
    digest = hashlib.sha256(content).hexdigest()
    assert len(rows) == 1, rows
    (row,) = rows
    assert row["status"] == "completed", row
    assert row["error"] is None
    assert row["sha256"] == digest
    assert row["total_bytes"] == len(content)
    assert row["filename"] == name
    assert hashlib.sha256((root / FOLDER / name).read_bytes()).hexdigest() == digest
    assert part_files(root / FOLDER) == []


@pytest.fixture
def content() -> bytes:
    """8 MiB of random bytes."""
    return random.Random(20250501).randbytes(SIZE)


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "term"])
async def test_job_resumes_after_the_server_stops(
    upstream: Upstream, tmp_path: Path, content: bytes, signum: int
) -> None:
    blob = Blob(content, chunk=CHUNK, delay_per_chunk=SLOW)
    url = upstream.add("/big.bin", blob)
    root = tmp_path / "root"
    root.mkdir()
    cut = await interrupt(root, tmp_path / "first.log", url, upstream, signum)
    status, size = stored_row(root, cut.job_id)
    if signum == signal.SIGTERM:  # a graceful stop checkpoints the job for the next run
        assert (status, size) == ("queued", cut.part_size)
    else:  # a crash leaves the row as it was: still active, so the next run resumes it
        assert status == "downloading"
    blob.delay_per_chunk = 0  # the rest may come fast

    async with serve(root, tmp_path / "second.log") as server:
        rows = await wait_finished(server, cut.job_id)

    (resumed,) = upstream.requests_for("/big.bin")
    assert resumed.header("range") == f"bytes={cut.part_size}-"
    assert resumed.header("if-range") == blob.current_etag()
    check_done(root, rows, content, "big.bin")


async def test_changed_upstream_restarts_from_zero(
    upstream: Upstream, tmp_path: Path, content: bytes
) -> None:
    url = upstream.add("/big.bin", Blob(content, chunk=CHUNK, delay_per_chunk=SLOW))
    old_etag = Blob(content).current_etag()
    root = tmp_path / "root"
    root.mkdir()
    cut = await interrupt(root, tmp_path / "first.log", url, upstream, signal.SIGKILL)
    replacement = random.Random(7).randbytes(SIZE + 12345)
    new = Blob(replacement)
    assert new.current_etag() != old_etag
    upstream.add("/big.bin", new)

    async with serve(root, tmp_path / "second.log") as server:
        rows = await wait_finished(server, cut.job_id)

    (resumed,) = upstream.requests_for("/big.bin")
    assert resumed.header("range") == f"bytes={cut.part_size}-"
    assert resumed.header("if-range") == old_etag  # the upstream answered 200: a new body
    check_done(root, rows, replacement, "big.bin")


async def test_upstream_without_validators_restarts_from_zero(
    upstream: Upstream, tmp_path: Path, content: bytes
) -> None:
    blob = Blob(content, etag=None, last_modified=None, chunk=CHUNK, delay_per_chunk=SLOW)
    url = upstream.add("/plain.bin", blob)
    root = tmp_path / "root"
    root.mkdir()
    cut = await interrupt(root, tmp_path / "first.log", url, upstream, signal.SIGKILL)
    blob.delay_per_chunk = 0

    async with serve(root, tmp_path / "second.log") as server:
        rows = await wait_finished(server, cut.job_id)

    (again,) = upstream.requests_for("/plain.bin")
    assert again.header("range") is None  # nothing to make a Range safe: start over
    assert again.header("if-range") is None
    check_done(root, rows, content, "plain.bin")
