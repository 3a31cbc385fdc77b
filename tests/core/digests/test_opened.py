"""Digests of an opened file, and the three policies for a file that changes meanwhile."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from slipstream.digests import (
    DigestCache,
    Digests,
    FileChanged,
    OnChange,
    hash_fd,
    opened_file_digests,
)
from slipstream.errors import FileNotFound
from slipstream.storage import LocalStorage, MemoryStorage, OpenFile


class Rewriter:
    """A hasher that appends to the file while it hashes it, the first ``times`` calls
    (the cache then finds the file changed), and hashes normally afterwards."""

    def __init__(self, path: Path, times: int) -> None:
        self.path = path
        self.times = times
        self.calls = 0

    def __call__(self, fd: int, size: int) -> Digests:
        self.calls += 1
        digests = hash_fd(fd, size)
        if self.calls <= self.times:
            with self.path.open("ab") as handle:
                handle.write(b"+")
        return digests


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[LocalStorage]:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "f.bin").write_bytes(b"version one")
    yield LocalStorage(tmp_path / "files")


def cache_with(tmp_path: Path, hasher: Rewriter | None = None) -> DigestCache:
    return DigestCache(tmp_path / "digests.sqlite3", hasher=hasher)


def sha256_of(storage: LocalStorage) -> bytes:
    return hashlib.sha256(Path(storage.base, "f.bin").read_bytes()).digest()


@pytest.mark.parametrize("policy", [OnChange.NONE, OnChange.FAIL])
async def test_an_unchanged_file_is_hashed_and_cached(
    tmp_path: Path, storage: LocalStorage, policy: OnChange
) -> None:
    with cache_with(tmp_path) as cache, storage.open("f.bin") as opened:
        if policy is OnChange.NONE:
            file, digests = await opened_file_digests(cache, opened, on_change=OnChange.NONE)
        else:
            file, digests = await opened_file_digests(cache, opened, on_change=OnChange.FAIL)
        assert file is opened and not opened.closed
        assert digests is not None and digests.sha256 == sha256_of(storage)
        assert digests.size == len(b"version one")


async def test_none_gives_no_digests_for_a_changed_file(
    tmp_path: Path, storage: LocalStorage
) -> None:
    hasher = Rewriter(Path(storage.base, "f.bin"), times=1)
    with cache_with(tmp_path, hasher) as cache, storage.open("f.bin") as opened:
        file, digests = await opened_file_digests(cache, opened, on_change=OnChange.NONE)
        assert (file, digests) == (opened, None)
        assert not opened.closed
    assert hasher.calls == 1


async def test_fail_raises_for_a_changed_file(tmp_path: Path, storage: LocalStorage) -> None:
    hasher = Rewriter(Path(storage.base, "f.bin"), times=1)
    with cache_with(tmp_path, hasher) as cache, storage.open("f.bin") as opened:
        with pytest.raises(FileChanged):
            await opened_file_digests(cache, opened, on_change=OnChange.FAIL)
        assert not opened.closed  # the caller's to close
    assert hasher.calls == 1


async def test_retry_hashes_the_version_that_holds_still(
    tmp_path: Path, storage: LocalStorage
) -> None:
    hasher = Rewriter(Path(storage.base, "f.bin"), times=2)
    opened_files: list[OpenFile] = []

    def reopen() -> OpenFile:
        opened_files.append(storage.open("f.bin"))
        return opened_files[-1]

    with cache_with(tmp_path, hasher) as cache:
        first = reopen()
        file, digests = await opened_file_digests(
            cache, first, on_change=OnChange.RETRY, reopen=reopen
        )
        with file:
            assert file is opened_files[-1] and len(opened_files) == 3
            assert [f.closed for f in opened_files] == [True, True, False]
            assert digests.sha256 == sha256_of(storage)
            assert digests.size == len(b"version one++")
    assert hasher.calls == 3


async def test_retry_gives_up_after_its_attempts(tmp_path: Path, storage: LocalStorage) -> None:
    hasher = Rewriter(Path(storage.base, "f.bin"), times=5)
    opened_files: list[OpenFile] = []

    def reopen() -> OpenFile:
        opened_files.append(storage.open("f.bin"))
        return opened_files[-1]

    with cache_with(tmp_path, hasher) as cache, pytest.raises(FileChanged):
        await opened_file_digests(cache, reopen(), on_change=OnChange.RETRY, reopen=reopen)
    assert hasher.calls == 3  # the default: three versions in all
    assert len(opened_files) == 3 and all(f.closed for f in opened_files)


async def test_retry_closes_what_it_holds_when_reopening_fails(
    tmp_path: Path, storage: LocalStorage
) -> None:
    hasher = Rewriter(Path(storage.base, "f.bin"), times=1)
    first = storage.open("f.bin")

    def reopen() -> OpenFile:
        os.unlink(Path(storage.base, "f.bin"))
        return storage.open("f.bin")

    with cache_with(tmp_path, hasher) as cache, pytest.raises(FileNotFound):
        await opened_file_digests(cache, first, on_change=OnChange.RETRY, reopen=reopen)
    assert first.closed


async def test_retry_needs_a_way_to_reopen(tmp_path: Path, storage: LocalStorage) -> None:
    with (
        cache_with(tmp_path) as cache,
        storage.open("f.bin") as opened,
        pytest.raises(ValueError),
    ):
        await opened_file_digests(
            cache, opened, on_change=OnChange.RETRY, reopen=lambda: opened, attempts=0
        )


async def test_a_file_without_a_descriptor(tmp_path: Path) -> None:
    memory = MemoryStorage()
    memory.put("m.bin", b"in memory")
    with cache_with(tmp_path) as cache, memory.open("m.bin") as opened:
        assert await opened_file_digests(cache, opened, on_change=OnChange.NONE) == (opened, None)
        with pytest.raises(TypeError):
            await opened_file_digests(cache, opened, on_change=OnChange.FAIL)
