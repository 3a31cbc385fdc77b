"""The digest cache: values, persistence, single flight, job limits, changed files."""

from __future__ import annotations

import hashlib
import logging
import os
import random
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio
import trio.testing
import xxhash

from slipstream import digests as digests_mod
from slipstream.digests import DigestCache, Digests, FileChanged, FileKey, hash_fd, hash_path
from slipstream.ext import ALGORITHMS
from slipstream.storage import FileStat
from tests.helpers.reference import REFLECTED_POLYS, reference_crc


def expected(data: bytes) -> dict[str, int | bytes]:
    out: dict[str, int | bytes] = {name: reference_crc(name, data) for name in REFLECTED_POLYS}
    out["sha1"] = hashlib.sha1(data).digest()
    out["sha256"] = hashlib.sha256(data).digest()
    out["xxh3_128"] = xxhash.xxh3_128(data).digest()
    return out


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def open_key(path: Path) -> tuple[int, FileKey]:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    return fd, FileKey.from_stat(os.fstat(fd))


def open_fds() -> set[str]:
    """Descriptor numbers open now.  Compared as sets: other tests' garbage may be
    collected (closing its descriptors) at any time, so counts alone would be flaky."""
    listed = os.listdir("/proc/self/fd")  # includes the fd of this very listing
    return {n for n in listed if os.path.lexists(f"/proc/self/fd/{n}")}


class CountingHasher:
    """Wraps ``hash_fd``; counts calls, tracks the peak of concurrent calls, can block."""

    def __init__(
        self, *, block: bool = False, fail: Exception | None = None, delay: float = 0.0
    ) -> None:
        self.delay = delay
        self.calls = 0
        self.running = 0
        self.peak = 0
        self.release = threading.Event()
        self.after: Callable[[], None] | None = None
        if not block:
            self.release.set()
        self.fail = fail
        self._lock = threading.Lock()

    async def wait_calls(self, n: int) -> None:
        """Wait until ``n`` calls have started in their worker threads."""
        with trio.fail_after(5):
            while self.calls < n:
                await trio.sleep(0.001)

    def __call__(self, fd: int, size: int) -> Digests:
        with self._lock:
            self.calls += 1
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            assert self.release.wait(10), "test never released the hasher"
            time.sleep(self.delay)
            if self.fail is not None:
                raise self.fail
            result = hash_fd(fd, size)
            if self.after is not None:
                self.after()
            return result
        finally:
            with self._lock:
                self.running -= 1


@pytest.fixture
def digest_cache(tmp_path: Path) -> Iterator[DigestCache]:
    with DigestCache(tmp_path / "state" / "digests.sqlite3") as c:
        yield c


# --- hashing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "chunk"),
    [(0, 4096), (1, 4096), (4096, 4096), (20_000, 8192), (70_000, digests_mod.CHUNK_SIZE)],
)
def test_hash_fd_matches_reference_libraries(tmp_path: Path, size: int, chunk: int) -> None:
    data = random.Random(size).randbytes(size)
    fd, key = open_key(write(tmp_path / "f", data))
    steps: list[int] = []
    try:
        got = hash_fd(fd, key.size, steps.append, chunk=chunk)
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0  # pread: the shared offset is untouched
    finally:
        os.close(fd)
    want = expected(data)
    assert got.size == size
    for name in ALGORITHMS:
        assert getattr(got, name) == want[name], name
    assert sum(steps) == size
    assert len(steps) == -(-size // chunk)
    assert zlib.crc32(data) == got.crc32  # zlib itself, not only the reference above


def test_check_values(tmp_path: Path) -> None:
    got = hash_path(write(tmp_path / "check", b"123456789"))
    assert got.crc32 == 0xCBF43926
    assert got.crc32c == 0xE3069283
    assert got.crc64xz == 0x995DC9BBDF1939FA
    assert got.crc64nvme == 0xAE8B14860A799888


def test_hash_fd_short_file_raises(tmp_path: Path) -> None:
    fd, key = open_key(write(tmp_path / "f", b"x" * 100))
    try:
        with pytest.raises(FileChanged):
            hash_fd(fd, key.size + 1)
    finally:
        os.close(fd)


def test_hash_path(tmp_path: Path) -> None:
    data = os.urandom(5000)
    got = hash_path(write(tmp_path / "f", data))
    assert got.sha256 == hashlib.sha256(data).digest()
    assert got.size == 5000
    with pytest.raises(IsADirectoryError):
        hash_path(tmp_path)
    with pytest.raises(FileNotFoundError):
        hash_path(tmp_path / "missing")


def test_digests_formatting(tmp_path: Path) -> None:
    got = hash_path(write(tmp_path / "empty", b""))
    assert got.crc32 == 0
    assert got.hex("crc32") == "00000000"
    assert got.hex("crc64xz") == "0" * 16
    assert got.raw("crc32c") == b"\0\0\0\0"
    assert got.hex("sha1") == hashlib.sha1(b"").hexdigest()
    as_dict = got.as_dict()
    assert list(as_dict) == ["size", *ALGORITHMS]
    assert as_dict["size"] == 0
    assert as_dict["sha256"] == hashlib.sha256(b"").hexdigest()
    with pytest.raises(KeyError):
        got.hex("md5")


def test_filekey_from_stat_and_filestat(tmp_path: Path) -> None:
    st = os.stat(write(tmp_path / "f", b"abc"))
    key = FileKey.from_stat(st)
    assert key == FileKey(st.st_dev, st.st_ino, 3, st.st_mtime_ns)
    assert FileKey.from_stat(FileStat.from_stat_result(st)) == key


# --- the cache -----------------------------------------------------------------------


async def test_get_computes_stores_and_survives_reopen(tmp_path: Path) -> None:
    db = tmp_path / "state" / "d.sqlite3"
    data = os.urandom(3000)
    fd, key = open_key(write(tmp_path / "f", data))
    counter = CountingHasher()
    try:
        with DigestCache(db, hasher=counter) as cache:
            assert cache.lookup(key) is None
            first = await cache.get(key, fd)
            assert await cache.get(key, fd) == first
            assert cache.lookup(key) == first
        assert counter.calls == 1
        assert first.sha256 == hashlib.sha256(data).digest()
        with DigestCache(db, hasher=CountingHasher(fail=AssertionError("no hashing"))) as again:
            assert again.lookup(key) == first
            assert await again.get(key, fd) == first
    finally:
        os.close(fd)
    journal = sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0]
    assert journal == "wal"


async def test_unsigned_64_bit_values_round_trip(tmp_path: Path) -> None:
    db = tmp_path / "d.sqlite3"
    big = (1 << 64) - 5
    key = FileKey(dev=big, ino=(1 << 63) + 7, size=9, mtime_ns=-1)
    values: dict[str, int | bytes] = {
        "crc32": 0xFFFFFFFF,
        "crc32c": 1,
        "crc64xz": big,
        "crc64nvme": 1 << 63,
        "sha1": b"\x01" * 20,
        "sha256": b"\x02" * 32,
        "xxh3_128": b"\x03" * 16,
    }
    stored = Digests.from_values(9, values)
    with DigestCache(db) as cache:
        cache.store(key, stored)
    with DigestCache(db) as cache:
        assert cache.lookup(key) == stored


async def test_changed_file_misses(tmp_path: Path, digest_cache: DigestCache) -> None:
    path = write(tmp_path / "f", b"one version")
    fd, key = open_key(path)
    try:
        old = await digest_cache.get(key, fd)
    finally:
        os.close(fd)
    path.write_bytes(b"another version, longer")
    fd, new_key = open_key(path)
    try:
        assert new_key != key
        assert digest_cache.lookup(new_key) is None
        new = await digest_cache.get(new_key, fd)
    finally:
        os.close(fd)
    assert new.sha1 == hashlib.sha1(b"another version, longer").digest()
    assert new != old
    # Same size, only the mtime differs: still a miss.
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert digest_cache.lookup(FileKey.from_stat(os.stat(path))) is None
    assert digest_cache.lookup(new_key) == new


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


async def test_trim_drops_the_oldest_rows(tmp_path: Path) -> None:
    db = tmp_path / "d.sqlite3"
    paths = [write(tmp_path / f"f{i}", bytes([i]) * (i + 1)) for i in range(5)]
    keys = [FileKey.from_stat(os.stat(p)) for p in paths]
    with DigestCache(db, max_rows=3, trim_every=1, lru_size=0) as cache:
        for path, key in zip(paths, keys, strict=True):
            cache.store(key, hash_path(path))
        assert [cache.lookup(k) is not None for k in keys] == [False, False, True, True, True]
    rows = sqlite3.connect(db).execute("SELECT count(*) FROM digests").fetchone()[0]
    assert rows == 3
    # Reopening with a smaller limit trims at once.
    with DigestCache(db, max_rows=1, lru_size=0) as cache:
        assert [cache.lookup(k) is not None for k in keys] == [False] * 4 + [True]


async def test_closed_cache(tmp_path: Path) -> None:
    fd, key = open_key(write(tmp_path / "f", b"abc"))
    cache = DigestCache(tmp_path / "d.sqlite3")
    try:
        await cache.get(key, fd)
        cache.close()
        cache.close()
        assert cache.closed
        assert cache.lookup(key) is not None  # still in memory
        other = FileKey(key.dev, key.ino, key.size, key.mtime_ns + 1)
        with pytest.raises(RuntimeError):
            await cache.get(other, fd)
    finally:
        os.close(fd)
