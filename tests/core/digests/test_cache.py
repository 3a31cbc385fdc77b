"""The digest cache computing digests: single flight, job limits, changed files, errors,
background warming."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import pytest
import trio
import trio.testing
import xxhash

from slipstream.digests import DigestCache, Digests, FileChanged, FileKey
from tests.helpers.digests import CountingHasher, open_key, write


def open_fds() -> set[str]:
    """Descriptor numbers open now.  Compared as sets: other tests' garbage may be
    collected (closing its descriptors) at any time, so counts alone would be flaky."""
    listed = os.listdir("/proc/self/fd")  # includes the fd of this very listing
    return {n for n in listed if os.path.lexists(f"/proc/self/fd/{n}")}


async def test_key_not_matching_fd_raises_and_stores_nothing(
    tmp_path: Path, digest_cache: DigestCache
) -> None:
    fd, key = open_key(write(tmp_path / "f", b"abc"))
    wrong = FileKey(key.dev, key.ino, key.size, key.mtime_ns + 1)
    try:
        with pytest.raises(FileChanged):
            await digest_cache.get(wrong, fd)
    finally:
        os.close(fd)
    assert digest_cache.lookup(wrong) is None


async def test_concurrent_gets_share_one_computation(tmp_path: Path) -> None:
    data = os.urandom(10_000)
    fd, key = open_key(write(tmp_path / "f", data))
    counter = CountingHasher(block=True)
    results: list[Digests] = []
    before = open_fds()

    async def one() -> None:
        results.append(await cache.get(key, fd))

    with DigestCache(tmp_path / "d.sqlite3", hasher=counter) as cache:
        try:
            async with trio.open_nursery() as nursery:
                for _ in range(20):
                    nursery.start_soon(one)
                await trio.testing.wait_all_tasks_blocked()
                assert cache.is_running(key)
                counter.release.set()
        finally:
            os.close(fd)
    assert counter.calls == 1
    assert len(results) == 20
    assert all(r == results[0] for r in results)
    assert results[0].xxh3_128 == xxhash.xxh3_128(data).digest()
    assert open_fds() <= before - {str(fd)}  # every dup closed, and our own fd


async def test_different_keys_respect_max_jobs(tmp_path: Path) -> None:
    counter = CountingHasher(delay=0.05)
    fds: list[tuple[int, FileKey]] = [
        open_key(write(tmp_path / f"f{i}", os.urandom(100 + i))) for i in range(6)
    ]
    try:
        with DigestCache(tmp_path / "d.sqlite3", max_jobs=2, hasher=counter) as cache:
            async with trio.open_nursery() as nursery:
                for fd, key in fds:
                    nursery.start_soon(cache.get, key, fd)
            assert all(cache.lookup(key) is not None for _, key in fds)
    finally:
        for fd, _ in fds:
            os.close(fd)
    assert counter.calls == 6
    assert counter.peak == 2


async def test_file_changed_during_hashing_is_not_stored(tmp_path: Path) -> None:
    db = tmp_path / "d.sqlite3"
    path = write(tmp_path / "f", b"before" * 100)
    fd, key = open_key(path)
    counter = CountingHasher()

    def append() -> None:
        with path.open("ab") as f:
            f.write(b"appended while hashing")

    counter.after = append
    try:
        with DigestCache(db, hasher=counter) as cache:
            with pytest.raises(FileChanged):
                await cache.get(key, fd)
            assert cache.lookup(key) is None
            assert not cache.is_running(key)
    finally:
        os.close(fd)
    assert counter.calls == 1
    with DigestCache(db) as cache:
        assert cache.lookup(key) is None


async def test_worker_error_reaches_every_waiter_and_is_not_cached(tmp_path: Path) -> None:
    fd, key = open_key(write(tmp_path / "f", b"data"))
    counter = CountingHasher(block=True, fail=OSError(5, "disk on fire"))
    errors: list[BaseException] = []

    async def one() -> None:
        try:
            await cache.get(key, fd)
        except OSError as exc:
            errors.append(exc)

    try:
        with DigestCache(tmp_path / "d.sqlite3", hasher=counter) as cache:
            async with trio.open_nursery() as nursery:
                for _ in range(5):
                    nursery.start_soon(one)
                await trio.testing.wait_all_tasks_blocked()
                counter.release.set()
            assert counter.calls == 1
            assert len(errors) == 5
            assert all("disk on fire" in str(e) for e in errors)
            # The failure is not remembered: the next call computes again.
            counter.fail = None
            got = await cache.get(key, fd)
            assert got.sha1 == hashlib.sha1(b"data").digest()
            assert counter.calls == 2
    finally:
        os.close(fd)


async def test_caller_may_close_fd_right_after_call_starts(tmp_path: Path) -> None:
    data = os.urandom(50_000)
    fd, key = open_key(write(tmp_path / "f", data))
    counter = CountingHasher(block=True)
    result: list[Digests] = []

    async def call() -> None:
        result.append(await cache.get(key, fd))

    with DigestCache(tmp_path / "d.sqlite3", hasher=counter) as cache:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call)
            await counter.wait_calls(1)
            os.close(fd)  # the worker reads its own duplicate
            counter.release.set()
    assert result[0].sha256 == hashlib.sha256(data).digest()


async def test_cancelled_leader_hands_over_to_a_waiter(tmp_path: Path) -> None:
    fd_a, key_a = open_key(write(tmp_path / "a", b"a" * 10))
    fd_b, key_b = open_key(write(tmp_path / "b", b"b" * 20))
    counter = CountingHasher(block=True)
    leader_scope = trio.CancelScope()
    leader_cancelled: list[bool] = []
    got_b: list[Digests] = []

    async def leader() -> None:
        with leader_scope:
            await cache.get(key_b, fd_b)
        leader_cancelled.append(leader_scope.cancelled_caught)

    async def waiter() -> None:
        got_b.append(await cache.get(key_b, fd_b))

    try:
        with DigestCache(tmp_path / "d.sqlite3", max_jobs=1, hasher=counter) as cache:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(cache.get, key_a, fd_a)
                await counter.wait_calls(1)  # A holds the only job slot
                nursery.start_soon(leader)
                await trio.testing.wait_all_tasks_blocked()  # B's leader waits for a slot
                nursery.start_soon(waiter)
                await trio.testing.wait_all_tasks_blocked()  # the waiter waits for B's leader
                assert counter.calls == 1
                leader_scope.cancel()
                await trio.testing.wait_all_tasks_blocked()  # the waiter now leads B
                assert cache.is_running(key_b)
                counter.release.set()
            assert leader_cancelled == [True]
            assert got_b[0].sha1 == hashlib.sha1(b"b" * 20).digest()
            assert cache.lookup(key_b) == got_b[0]
            assert counter.calls == 2
    finally:
        os.close(fd_a)
        os.close(fd_b)


async def test_schedule_warms_the_cache_in_the_background(tmp_path: Path) -> None:
    db = tmp_path / "d.sqlite3"
    data = os.urandom(7000)
    fd, key = open_key(write(tmp_path / "f", data))
    counter = CountingHasher(block=True)
    with DigestCache(db, hasher=counter) as cache:
        async with trio.open_nursery() as nursery:
            cache.schedule(nursery, key, fd)
            os.close(fd)  # at once: the background job has its own duplicate
            assert cache.is_running(key)
            assert cache.lookup(key) is None  # the caller is not blocked
            await counter.wait_calls(1)
            counter.release.set()
        warm = cache.lookup(key)
        assert warm is not None
        assert warm.sha256 == hashlib.sha256(data).digest()
        assert not cache.is_running(key)
    with DigestCache(db) as cache:
        assert cache.lookup(key) == warm


async def test_schedule_is_a_no_op_when_cached_or_running(tmp_path: Path) -> None:
    fd, key = open_key(write(tmp_path / "f", b"abc"))
    counter = CountingHasher(block=True)
    try:
        with DigestCache(tmp_path / "d.sqlite3", hasher=counter) as cache:
            async with trio.open_nursery() as nursery:
                for _ in range(5):
                    cache.schedule(nursery, key, fd)
                nursery.start_soon(cache.get, key, fd)
                await trio.testing.wait_all_tasks_blocked()
                cache.schedule(nursery, key, fd)
                counter.release.set()
            assert counter.calls == 1
            async with trio.open_nursery() as nursery:
                cache.schedule(nursery, key, fd)
                assert not cache.is_running(key)
            assert counter.calls == 1
    finally:
        os.close(fd)


async def test_schedule_never_raises_and_logs_failures(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fd, key = open_key(write(tmp_path / "f", b"abc"))
    counter = CountingHasher(fail=ValueError("hasher broke"))
    before = open_fds()
    try:
        with DigestCache(tmp_path / "d.sqlite3", hasher=counter) as cache:
            caplog.set_level(logging.WARNING, logger="slipstream.digests")
            async with trio.open_nursery() as nursery:
                cache.schedule(nursery, key, fd)
            assert counter.calls == 1
            assert "hasher broke" in caplog.text
            assert cache.lookup(key) is None
            # A bad descriptor or a closed nursery is logged, not raised.
            bad_fd = os.open(os.devnull, os.O_RDONLY)
            os.close(bad_fd)
            async with trio.open_nursery() as nursery:
                cache.schedule(nursery, key, bad_fd)
            cache.schedule(nursery, key, fd)
            assert not cache.is_running(key)
            assert counter.calls == 1
    finally:
        os.close(fd)
    assert open_fds() <= before - {str(fd)}
