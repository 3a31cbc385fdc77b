"""SHA-1 on demand: a row without it (what a download job stores) is kept as it is, and
completed with one read of the missing algorithm when a caller needs it."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from slipstream.digests import DigestCache, Digests, FileKey, hash_path
from slipstream.digests import hashing as hashing_module
from slipstream.digests.hashing import complete_digests
from slipstream.digests.store import SCHEMA, DigestStore
from slipstream.ext import ALGORITHMS, MultiDigest
from slipstream.statefiles import Schema, open_store

DATA = os.urandom(300_000)


def partial_of(data: bytes) -> Digests:
    """What a job computes inline: every algorithm but SHA-1."""
    names = [name for name in ALGORITHMS if name != "sha1"]
    digest = MultiDigest(names)
    digest.update(data)
    return Digests.from_values(len(data), digest.digest())


def written(tmp_path: Path) -> tuple[Path, FileKey]:
    path = tmp_path / "file.bin"
    path.write_bytes(DATA)
    return path, FileKey.from_stat(path.stat())


def test_a_partial_value_says_what_it_lacks() -> None:
    partial = partial_of(DATA)
    assert partial.sha1 is None and partial.missing == ("sha1",)
    assert partial.has(["sha256", "crc64xz"]) and not partial.has(["sha1"])
    assert (
        "sha1" not in partial.as_dict()
        and partial.hex("sha256") == hashlib.sha256(DATA).hexdigest()
    )
    with pytest.raises(LookupError):
        partial.raw("sha1")
    values = partial.values()
    del values["sha256"]
    with pytest.raises(KeyError):  # only the on-demand algorithms may be missing
        Digests.from_values(len(DATA), values)


def test_completing_reads_the_missing_algorithm_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = written(tmp_path)
    asked: list[tuple[str, ...]] = []

    def recording(names: Any) -> MultiDigest:
        asked.append(tuple(names))
        return MultiDigest(names)

    monkeypatch.setattr(hashing_module, "MultiDigest", recording)
    fd = os.open(path, os.O_RDONLY)
    try:
        complete = complete_digests(fd, partial_of(DATA))
    finally:
        os.close(fd)
    assert asked == [("sha1",)]
    assert complete == hash_path(path)
    assert complete.sha1 == hashlib.sha1(DATA).digest()


def test_the_store_keeps_a_partial_row_and_then_the_complete_one(tmp_path: Path) -> None:
    path, key = written(tmp_path)
    store = DigestStore(tmp_path / "digests.sqlite3", lru_size=0)
    try:
        store.store(key, partial_of(DATA))
        assert store.lookup(key) == partial_of(DATA)
        store.store(key, hash_path(path))
        assert store.lookup(key) == hash_path(path)
    finally:
        store.close()


def test_a_version_1_store_is_migrated_with_its_rows(tmp_path: Path) -> None:
    """Version 1 required a SHA-1 in every row; version 2 allows NULL and keeps the rows."""
    path, key = written(tmp_path)
    full = hash_path(path)
    first = Schema(SCHEMA.name, SCHEMA.kind, SCHEMA.migrations[:1])
    db = open_store(tmp_path / "digests.sqlite3", first)
    crcs = [
        v - (1 << 64) if v >= 1 << 63 else v
        for v in (full.crc32, full.crc32c, full.crc64xz, full.crc64nvme)
    ]
    db.execute(
        "INSERT INTO digests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
        (key.dev, key.ino, key.size, key.mtime_ns, *crcs, full.sha1, full.sha256, full.xxh3_128),
    )
    db.close()
    store = DigestStore(tmp_path / "digests.sqlite3", lru_size=0)
    try:
        assert store.lookup(key) == full
        other = FileKey(key.dev, key.ino, key.size, key.mtime_ns + 1)
        store.store(other, partial_of(DATA))  # NULL is accepted now
        assert store.lookup(other) == partial_of(DATA)
        store.store(key, partial_of(DATA))  # and never replaces a computed value
        assert store.lookup(key) == full
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "digests.sqlite3") as check:
        assert check.execute("PRAGMA user_version").fetchone() == (SCHEMA.version,)


async def test_the_cache_completes_a_row_when_asked_and_only_then(tmp_path: Path) -> None:
    path, key = written(tmp_path)
    cache = DigestCache(tmp_path / "digests.sqlite3")
    try:
        cache.store(key, partial_of(DATA))
        fd = os.open(path, os.O_RDONLY)
        try:
            assert await cache.get(key, fd) == partial_of(DATA)  # not needed: no read
            complete = await cache.get(key, fd, need=("sha1",))
        finally:
            os.close(fd)
        assert complete == hash_path(path)
        assert cache.lookup(key) == complete
    finally:
        cache.close()


def test_a_partial_row_from_another_process_never_erases_a_computed_sha1(tmp_path: Path) -> None:
    # Two workers of one server share the cache: one computed the SHA-1 on demand, the
    # other (which hashed the file earlier, without it) writes its row afterwards.
    path, key = written(tmp_path)
    database = tmp_path / "digests.sqlite3"
    first, second = DigestStore(database), DigestStore(database)
    try:
        second.store(key, partial_of(DATA))
        first.store(key, hash_path(path))
        second.store(key, partial_of(DATA))
    finally:
        first.close()
        second.close()
    again = DigestStore(database)
    try:
        found = again.lookup(key)
    finally:
        again.close()
    assert found is not None
    assert found.sha1 == hashlib.sha1(DATA).digest()
    assert found == hash_path(path)
