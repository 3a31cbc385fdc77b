"""What the digest cache tells its observer: hits, misses (one per computation, however
many wait for it) and the seconds each computation hashed."""

from __future__ import annotations

import os
from pathlib import Path

import trio
import trio.testing

from slipstream.digests import DigestCache
from tests.helpers.digests import CountingHasher, open_key, write


class Recorder:
    """A :class:`~slipstream.digests.cache.CacheObserver` that keeps what it is told."""

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.seconds: list[float] = []

    def hit(self) -> None:
        self.hits += 1

    def miss(self) -> None:
        self.misses += 1

    def hashed(self, seconds: float) -> None:
        self.seconds.append(seconds)


async def test_one_miss_per_computation_and_a_hit_per_cached_answer(tmp_path: Path) -> None:
    fd, key = open_key(write(tmp_path / "f", os.urandom(50_000)))
    hasher = CountingHasher(block=True)
    seen = Recorder()
    try:
        with DigestCache(tmp_path / "d.sqlite3", hasher=hasher, observer=seen) as cache:
            assert cache.lookup(key) is None  # a lookup that finds nothing is no miss yet
            assert (seen.hits, seen.misses) == (0, 0)
            async with trio.open_nursery() as nursery:
                for _ in range(5):  # five waiters, one computation
                    nursery.start_soon(cache.get, key, fd)
                await trio.testing.wait_all_tasks_blocked()
                hasher.release.set()
            assert (seen.hits, seen.misses, len(seen.seconds)) == (0, 1, 1)
            assert seen.seconds[0] >= 0
            await cache.get(key, fd)
            assert cache.lookup(key) is not None
            assert (seen.hits, seen.misses, len(seen.seconds)) == (2, 1, 1)
    finally:
        os.close(fd)
    assert hasher.calls == 1
