"""Where the digest cache keeps digests: persistence, 64-bit values, misses, trimming, closing."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from slipstream.digests import DigestCache, Digests, FileKey, hash_path
from tests.helpers.digests import CountingHasher, open_key, write


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


async def test_trim_drops_the_oldest_rows(tmp_path: Path) -> None:
    db = tmp_path / "d.sqlite3"
    paths = [write(tmp_path / f"f{i}", bytes([i]) * (i + 1)) for i in range(5)]
    keys = [FileKey.from_stat(os.stat(p)) for p in paths]
    with DigestCache(db, max_rows=3, lru_size=0) as cache:
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
