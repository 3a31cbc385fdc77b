"""The stores shared by the workers of ``slipstream serve --workers``: processes that
write one SQLite store at the same moment never lose an update nor fail on the lock."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from pathlib import Path

from slipstream.jobs.store import JobRecord, JobStore
from slipstream.zip.state import ZipState

WRITERS = 4
ROUNDS = 60


def _in_processes(work: Callable[[int], None]) -> None:
    """Run ``work(n)`` in WRITERS forked processes released together; all must succeed."""
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(WRITERS)

    def run(n: int) -> None:
        barrier.wait(timeout=30)
        work(n)

    processes = [context.Process(target=run, args=(n,)) for n in range(WRITERS)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert [p.exitcode for p in processes] == [0] * WRITERS


def test_delivered_coverage_merged_by_several_processes_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "zip.sqlite3"
    state = ZipState(path, ttl=3600)
    assert state.save_manifest("m", {"files": []})
    state.close()
    total = WRITERS * ROUNDS

    def deliver(n: int) -> None:
        mine = ZipState(path, ttl=3600)
        try:
            for i in range(n, total, WRITERS):  # every writer's bytes interleave the others'
                mine.record_delivered("m", i, i + 1, total)
        finally:
            mine.close()

    _in_processes(deliver)
    state = ZipState(path, ttl=3600)
    try:
        assert state.delivered("m") == [(0, total)]
    finally:
        state.close()


def test_job_events_of_several_processes_are_read_once_each_in_commit_order(
    tmp_path: Path,
) -> None:
    path = tmp_path / "downloads.sqlite3"
    JobStore(path).close()

    def share(n: int) -> None:
        store = JobStore(path)
        try:
            record = JobRecord(
                id=f"job-{n}",
                url="http://x/",
                directory="",
                filename="f",
                name_given=False,
                status="downloading",
                owner=n,
            )
            store.save(record)
            for i in range(ROUNDS):
                record.current_size = i + 1
                store.share([record], n, [f'{{"writer": {n}, "i": {i}}}'])
        finally:
            store.close()

    _in_processes(share)
    store = JobStore(path)
    try:
        events = store.events_after(0, owner=-1, limit=10_000)
        numbers = [seq for seq, _ in events]
        assert numbers == sorted(numbers) and len(set(numbers)) == WRITERS * ROUNDS
        for n in range(WRITERS):  # each writer's events in the order it wrote them
            mine = [text for _, text in events if f'"writer": {n},' in text]
            assert mine == [f'{{"writer": {n}, "i": {i}}}' for i in range(ROUNDS)]
        sizes = {r.id: r.current_size for r in store.active()}
        assert sizes == {f"job-{n}": ROUNDS for n in range(WRITERS)}
    finally:
        store.close()
