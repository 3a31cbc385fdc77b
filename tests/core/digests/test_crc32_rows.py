"""CRC-32-only rows: what a directory zip stores, looked up in batches."""

from __future__ import annotations

import sqlite3
import zlib
from pathlib import Path

import pytest

from slipstream.digests import DigestCache, FileKey, hash_path
from slipstream.digests.store import SCHEMA, Version
from tests.helpers.digests import write


def keys(count: int, dev: int = 7) -> list[Version]:
    return [(dev, 1000 + i, i, 1_700_000_000_000_000_000 + i) for i in range(count)]


def version(key: FileKey) -> Version:
    return (key.dev, key.ino, key.size, key.mtime_ns)


async def test_many_crc32s_round_trip_in_batches(tmp_path: Path) -> None:
    db = tmp_path / "d.sqlite3"
    wanted = keys(1234) + keys(3, dev=(1 << 64) - 1)  # two devices, one past int64
    rows = [(key, (key[1] * 2654435761) & 0xFFFFFFFF) for key in wanted[::2]]
    with DigestCache(db) as cache:
        assert cache.crc32s(wanted) == [None] * len(wanted)
        cache.store_crc32s(rows)
    with DigestCache(db) as cache:
        found = cache.crc32s(wanted)
    expected = dict(rows)
    assert found == [expected.get(key) for key in wanted]


async def test_a_row_matches_only_its_exact_version(tmp_path: Path) -> None:
    (key,) = keys(1)
    with DigestCache(tmp_path / "d.sqlite3") as cache:
        cache.store_crc32s([(key, 5)])
        dev, ino, size, mtime_ns = key
        newer = (dev, ino, size, mtime_ns + 1)
        longer = (dev, ino, size + 1, mtime_ns)
        assert cache.crc32s([newer, key, longer]) == [None, 5, None]


async def test_full_digests_answer_too(tmp_path: Path) -> None:
    path = write(tmp_path / "f", b"full digests")
    key = FileKey.from_stat(path.stat())
    with DigestCache(tmp_path / "d.sqlite3", lru_size=0) as cache:
        cache.store(key, hash_path(path))
        assert cache.crc32s([version(key)]) == [zlib.crc32(b"full digests")]
        assert cache.lookup(key) is not None


async def test_crc32_rows_are_trimmed_at_ten_times_max_rows(tmp_path: Path) -> None:
    db = tmp_path / "d.sqlite3"
    wanted = keys(50)
    with DigestCache(db, max_rows=4, lru_size=0) as cache:
        for key in wanted:
            cache.store_crc32s([(key, 1)])
            if key == wanted[40]:  # 41 rows passed the limit of 40: down to 36, oldest first
                assert cache.crc32s(wanted) == [None] * 5 + [1] * 36 + [None] * 9
        assert cache.crc32s(wanted) == [None] * 10 + [1] * 40  # and once more at 46
    with DigestCache(db, max_rows=1, lru_size=0) as cache:  # 40 at open: down to 9
        assert cache.crc32s(wanted) == [None] * 41 + [1] * 9


def test_a_value_that_is_not_a_crc32_is_refused(tmp_path: Path) -> None:
    with DigestCache(tmp_path / "d.sqlite3") as cache, pytest.raises(ValueError):
        cache.store_crc32s([(keys(1)[0], 1 << 32)])


def test_a_version_2_cache_gains_the_table_and_keeps_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "d.sqlite3"
    conn = sqlite3.connect(db)
    for statement in (*SCHEMA.migrations[0], *SCHEMA.migrations[1]):
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    path = write(tmp_path / "f", b"kept")
    key = FileKey.from_stat(path.stat())
    with DigestCache(db, lru_size=0) as cache:
        cache.store(key, hash_path(path))
    with DigestCache(db, lru_size=0) as cache:
        assert cache.lookup(key) is not None
        cache.store_crc32s([(keys(1)[0], 9)])
        assert cache.crc32s([keys(1)[0], version(key)]) == [9, zlib.crc32(b"kept")]
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone() == (3,)


async def test_a_closed_cache_finds_and_stores_nothing(tmp_path: Path) -> None:
    cache = DigestCache(tmp_path / "d.sqlite3")
    cache.close()
    cache.store_crc32s([(keys(1)[0], 1)])
    assert cache.crc32s(keys(1)) == [None]
