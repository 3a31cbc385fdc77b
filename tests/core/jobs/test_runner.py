"""The remote-download job manager as a library (:class:`slipstream.jobs.Jobs`), no HTTP server.

Jobs run in the test's own nursery and fetch from the loopback upstream; shutdown is
cancelling :meth:`Jobs.run`, and a restart is a second :class:`Jobs` on the same store.
"""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from slipstream.errors import PathNotAllowed
from slipstream.fetch import Fetcher
from slipstream.jobs.runner import Jobs
from slipstream.jobs.settings import JobRefused, JobSettings
from slipstream.jobs.store import JobRecord, JobStore
from slipstream.netpolicy import NetworkPolicy
from tests.helpers.upstream import Blob, Upstream

MIB = 1024 * 1024
TIMEOUT = 10.0


def payload(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@asynccontextmanager
async def running(
    root: Path, store: JobStore, *, private: bool = True, **settings: Any
) -> AsyncIterator[Jobs]:
    """A :class:`Jobs` running until the block ends (then cancelled, as at shutdown)."""
    policy = NetworkPolicy(allow_private_networks=private)
    async with Fetcher(policy) as fetcher, trio.open_nursery() as nursery:
        jobs = Jobs(JobSettings(root=root, **settings), store, fetcher)
        await nursery.start(jobs.run)
        yield jobs
        nursery.cancel_scope.cancel()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "files"
    path.mkdir()
    return path


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    jobs_store = JobStore(tmp_path / "jobs.sqlite3")
    yield jobs_store
    jobs_store.close()


async def wait_until_downloaded(jobs: Jobs, job_id: str, at_least: int) -> int:
    """Poll :meth:`Jobs.active` until ``job_id`` has ``at_least`` bytes; its current size."""
    with trio.fail_after(TIMEOUT):
        while True:
            (row,) = [row for row in jobs.active() if row["id"] == job_id]
            if row["current_size"] >= at_least:
                return int(row["current_size"])
            await trio.sleep(0.01)


async def wait_until_on_disk(part: Path) -> None:
    """Poll until the part file ``part`` holds bytes: progress counts bytes as they
    arrive, the file gets them a block later (much later while the pure-Python twins
    hash), and a restart can only resume what is on disk."""
    with trio.fail_after(TIMEOUT):
        while not (part.exists() and part.stat().st_size > 0):
            await trio.sleep(0.01)


async def test_start_wait_and_events(root: Path, store: JobStore, upstream: Upstream) -> None:
    data = payload(100_000)
    url = upstream.add("/a/b.bin", Blob(data))
    async with running(root, store) as jobs:
        with jobs.subscribe() as events:
            record = await jobs.start(url, "in/here")
            assert record.status == "queued"
            assert record.file_path == "in/here/b.bin"
            with trio.fail_after(TIMEOUT):
                done = await jobs.wait(record.id)
            received = []
            while True:
                try:
                    received.append(events.receive_nowait())
                except trio.WouldBlock:
                    break
    assert done is not None
    assert done.status == "completed"
    assert done.sha256 == sha256(data)
    assert done.total_bytes == len(data)
    assert (root / "in" / "here" / "b.bin").read_bytes() == data
    assert os.listdir(root / "in" / "here") == ["b.bin"]
    assert received[0]["status"] == "starting"
    assert received[-1]["status"] == "completed"
    assert received[-1]["sha256"] == sha256(data)
    assert all(event["id"] == record.id for event in received)
    assert [r.id for r in store.history()] == [record.id]
    assert store.active() == []


async def test_refusals(root: Path, store: JobStore, upstream: Upstream) -> None:
    url = upstream.add("/a.bin", Blob(b"never"))
    policy = NetworkPolicy()
    async with Fetcher(policy) as fetcher:
        idle = Jobs(JobSettings(root=root), store, fetcher)
        with pytest.raises(RuntimeError):
            await idle.start(url, "x")
    async with running(root, store, private=False) as jobs:
        cases: list[tuple[dict[str, Any], str]] = [
            ({"url": "ftp://example.com/a"}, "INVALID_URL"),
            ({"sha256": "nothex"}, "INVALID_SHA256"),
            ({"timeout": 0.0}, "INVALID_TIMEOUT"),
            ({}, "DOMAIN_BLOCKED"),  # the upstream is on loopback
        ]
        for overrides, key in cases:
            args: dict[str, Any] = {"url": url, **overrides}
            with pytest.raises(JobRefused) as info:
                await jobs.start(args.pop("url"), "x", **args)
            assert info.value.key == key
            assert info.value.status == (403 if key == "DOMAIN_BLOCKED" else 400)
        assert jobs.active() == []
    async with running(root, store) as jobs:
        with pytest.raises(PathNotAllowed):
            await jobs.start(url, "../outside")
    assert upstream.connections == 0
    assert store.history() == [] and store.active() == []
    assert os.listdir(root) == []


async def test_shutdown_checkpoints_and_restart_resumes_with_range(
    root: Path, store: JobStore, upstream: Upstream
) -> None:
    data = payload(4 * MIB, seed=2)
    blob = Blob(data, delay_per_chunk=0.02)  # 64 KiB pieces: about 1.3 s
    url = upstream.add("/big.bin", blob)
    async with running(root, store) as jobs:
        record = await jobs.start(url, "dl")
        await wait_until_downloaded(jobs, record.id, MIB)
        part = root / "dl" / f".{record.id}.part"
        await wait_until_on_disk(part)
    # Shut down mid-body: the row stays active with its validator, the part file synced.
    (saved,) = store.active()
    assert saved.id == record.id
    assert saved.validator == blob.current_etag()
    offset = part.stat().st_size
    assert 0 < offset < len(data)
    assert saved.current_size == offset
    assert data.startswith(part.read_bytes())
    upstream.reset()
    async with running(root, store) as jobs:
        with trio.fail_after(TIMEOUT):
            done = await jobs.wait(record.id)
    assert done is not None
    assert done.status == "completed", done
    assert done.sha256 == sha256(data)
    assert (root / "dl" / "big.bin").read_bytes() == data
    assert os.listdir(root / "dl") == ["big.bin"]
    (request,) = upstream.requests_for("/big.bin")
    assert request.header("range") == f"bytes={offset}-"
    assert request.header("if-range") == blob.current_etag()
    assert [r.id for r in store.history()] == [record.id]


@pytest.mark.parametrize("change", ["content", "no-validator"])
async def test_restart_starts_over_when_it_cannot_resume(
    root: Path, store: JobStore, upstream: Upstream, change: str
) -> None:
    first = payload(4 * MIB, seed=3)
    validators: dict[str, Any] = {}
    if change == "no-validator":
        validators = {"etag": None, "last_modified": None}
    url = upstream.add("/f.bin", Blob(first, delay_per_chunk=0.02, **validators))
    async with running(root, store) as jobs:
        record = await jobs.start(url, "")
        await wait_until_downloaded(jobs, record.id, MIB)
        await wait_until_on_disk(root / f".{record.id}.part")
    second = payload(3 * MIB, seed=4) if change == "content" else first
    upstream.add("/f.bin", Blob(second, **validators))
    upstream.reset()
    async with running(root, store) as jobs:
        with trio.fail_after(TIMEOUT):
            done = await jobs.wait(record.id)
    assert done is not None and done.status == "completed", done
    assert done.sha256 == sha256(second)
    assert (root / "f.bin").read_bytes() == second
    (request,) = upstream.requests_for("/f.bin")
    if change == "content":
        # If-Range no longer matches: the upstream sends the whole new body (200).
        assert request.header("if-range") is not None
    else:
        assert request.header("range") is None  # nothing to make a safe resume with


async def test_cancel_while_queued_and_running(
    root: Path, store: JobStore, upstream: Upstream
) -> None:
    slow = upstream.add("/slow.bin", Blob(payload(3 * MIB, seed=5), delay_per_chunk=0.02))
    other = upstream.add("/other.bin", Blob(b"queued"))
    async with running(root, store, max_concurrent=1) as jobs:
        running_job = await jobs.start(slow, "")
        queued_job = await jobs.start(other, "")
        assert jobs.cancel(queued_job.id)
        await wait_until_downloaded(jobs, running_job.id, MIB)
        assert jobs.cancel(running_job.id)
        with trio.fail_after(TIMEOUT):
            ends = [await jobs.wait(job.id) for job in (running_job, queued_job)]
        assert not jobs.cancel(running_job.id)
        assert not jobs.cancel("no-such-id")
    assert [end.status if end else None for end in ends] == ["cancelled", "cancelled"]
    assert os.listdir(root) == []
    assert upstream.requests_for("/other.bin") == []


class RefusingStore(JobStore):
    """A job store whose final writes fail (a full disk); records where saves ran."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.save_threads: list[int] = []

    def save(self, record: JobRecord) -> None:
        self.save_threads.append(threading.get_ident())
        super().save(record)

    def finish(self, record: JobRecord) -> None:
        raise sqlite3.OperationalError("database or disk is full (injected)")


async def test_a_store_refusing_the_final_write_costs_that_job_only(
    root: Path, tmp_path: Path, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    store = RefusingStore(tmp_path / "refusing.sqlite3")
    url = upstream.add("/a/b.bin", Blob(payload(50_000)))
    try:
        async with running(root, store) as jobs:
            for directory in ("one", "two"):  # the second starts after the first failed
                record = await jobs.start(url, directory)
                with trio.fail_after(TIMEOUT):
                    await jobs.wait(record.id)
                assert jobs.active() == []
    finally:
        store.close()
    assert (root / "two" / "b.bin").read_bytes() == payload(50_000)
    assert caplog.text.count("recording how it ended") == 2
    assert "database or disk is full (injected)" in caplog.text
    assert store.save_threads and threading.get_ident() not in store.save_threads


async def test_wait_returns_the_final_record_while_it_is_being_written(
    root: Path, store: JobStore, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A wait() that starts after the job left the active set, but before its final
    # record reached the store, still returns that record (not the active row).
    url = upstream.add("/w.bin", Blob(b"written"))
    writing, release = threading.Event(), threading.Event()
    real_finish = store.finish

    def slow_finish(record: JobRecord) -> None:
        writing.set()
        release.wait(TIMEOUT)
        real_finish(record)

    monkeypatch.setattr(store, "finish", slow_finish)
    async with running(root, store) as jobs:
        record = await jobs.start(url, "")
        with trio.fail_after(TIMEOUT):
            while not writing.is_set():
                await trio.sleep(0.005)
        async with trio.open_nursery() as nursery:
            results: list[JobRecord | None] = []

            async def waiter() -> None:
                results.append(await jobs.wait(record.id))

            nursery.start_soon(waiter)
            await trio.sleep(0.05)
            release.set()
        (done,) = results
        assert done is not None and done.status == "completed", done
