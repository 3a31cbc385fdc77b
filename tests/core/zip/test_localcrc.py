"""The CRC book of a directory zip: cached, computed in batches and pieces, stored, failed."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest
import trio

from slipstream.digests import DigestCache, FileChanged
from slipstream.zip import localcrc
from slipstream.zip.listing import list_entries
from slipstream.zip.localcrc import LocalCrcBook


def tree(root: Path, sizes: list[int]) -> dict[str, bytes]:
    """Files ``f00.bin``... of ``sizes`` random bytes under ``root``; name -> bytes."""
    root.mkdir(exist_ok=True)
    out = {}
    for i, size in enumerate(sizes):
        data = os.urandom(size)
        (root / f"f{i:02}.bin").write_bytes(data)
        out[f"f{i:02}.bin"] = data
    return out


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pieces and batches small enough for a few KiB to need several of each."""
    monkeypatch.setattr(localcrc, "SMALL_FILE", 1000)
    monkeypatch.setattr(localcrc, "CHUNK", 4096)
    monkeypatch.setattr(localcrc, "BATCH_FILES", 3)


@pytest.mark.usefixtures("small_pieces")
async def test_computed_crcs_match_and_are_stored_crc32_only(tmp_path: Path) -> None:
    files = tree(tmp_path / "d", [0, 1, 999, 1000, 1001, 4096, 4097, 20_000, 5, 6, 7])
    entries = list_entries(str(tmp_path / "d"))
    expected = [zlib.crc32(files[e.name]) for e in entries]
    with DigestCache(tmp_path / "digests.sqlite3") as cache:
        book = LocalCrcBook(entries, cache)
        assert [book.known(i) for i in range(len(entries))] == [0] + [None] * 10
        async with trio.open_nursery() as nursery:
            book.ensure(nursery, range(len(entries)))
            assert [await book.get(i, nursery) for i in range(len(entries))] == expected
        book.close()
        assert cache.crc32s([e.version() for e in entries]) == [None, *expected[1:]]
        assert all(cache.lookup(e.key()) is None for e in entries)  # no other digest
        again = LocalCrcBook(entries, cache)
        assert again.known(1) is None  # looked up in the background, not by the constructor
        await again.load()
        assert [again.known(i) for i in range(len(entries))] == expected


@pytest.mark.usefixtures("small_pieces")
async def test_a_changed_file_fails_only_its_own_crc(tmp_path: Path) -> None:
    files = tree(tmp_path / "d", [10, 20, 30, 9000])
    entries = list_entries(str(tmp_path / "d"))
    (tmp_path / "d" / "f01.bin").write_bytes(b"other bytes")
    with (tmp_path / "d" / "f03.bin").open("r+b") as big:
        big.truncate(8000)
    book = LocalCrcBook(entries, None)
    async with trio.open_nursery() as nursery:
        book.ensure(nursery, range(4))
        assert await book.get(0, nursery) == zlib.crc32(files["f00.bin"])
        assert await book.get(2, nursery) == zlib.crc32(files["f02.bin"])
        for index in (1, 3):
            with pytest.raises(FileChanged):
                await book.get(index, nursery)
    book.close()


async def test_a_vanished_file_fails(tmp_path: Path) -> None:
    tree(tmp_path / "d", [10])
    entries = list_entries(str(tmp_path / "d"))
    (tmp_path / "d" / "f00.bin").unlink()
    book = LocalCrcBook(entries, None)
    async with trio.open_nursery() as nursery:
        with pytest.raises(FileChanged, match="cannot be opened"):
            await book.get(0, nursery)


async def test_a_recorded_crc_that_contradicts_the_cache_is_a_change(tmp_path: Path) -> None:
    tree(tmp_path / "d", [10])
    entries = list_entries(str(tmp_path / "d"))
    with DigestCache(tmp_path / "digests.sqlite3") as cache:
        cache.store_crc32s([(entries[0].version(), 1234)])
        book = LocalCrcBook(entries, cache)
        await book.load()
        assert book.known(0) == 1234
        with pytest.raises(FileChanged):
            book.record(0, 99)
        book.close()
        assert cache.crc32s([entries[0].version()]) == [99]  # the next request starts right


@pytest.mark.usefixtures("small_pieces")
async def test_close_stops_the_workers_and_wakes_waiters(tmp_path: Path) -> None:
    tree(tmp_path / "d", [9000] * 4)
    entries = list_entries(str(tmp_path / "d"))
    book = LocalCrcBook(entries, None)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            book.ensure(nursery, range(4))
            book.close()
            with pytest.raises(trio.ClosedResourceError):
                await book.get(3, nursery)
    book.ensure(nursery, range(4))  # closed: nothing is started
    book.close()


@pytest.mark.usefixtures("small_pieces")
async def test_what_the_cache_knows_is_never_computed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = tree(tmp_path / "d", [9000, 10])
    entries = list_entries(str(tmp_path / "d"))
    expected = [zlib.crc32(files[e.name]) for e in entries]

    def unexpected(*args: object) -> None:
        raise AssertionError("a cached CRC was computed again")

    monkeypatch.setattr(localcrc, "crc_range", unexpected)
    monkeypatch.setattr(localcrc, "read_files", unexpected)
    with DigestCache(tmp_path / "digests.sqlite3") as cache:
        cache.store_crc32s(
            [(e.version(), value) for e, value in zip(entries, expected, strict=True)]
        )
        book = LocalCrcBook(entries, cache)
        async with trio.open_nursery() as nursery:
            book.ensure(nursery, [0, 1])  # queued before the lookup answered
            assert [await book.get(i, nursery) for i in (0, 1)] == expected
        book.close()


async def test_every_crc_of_many_small_files_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply that needs every CRC (a range into the central directory) asks for each in
    turn: each of thousands of requests finds its batch queued, first or already read."""
    monkeypatch.setattr(localcrc, "BATCH_FILES", 8)
    files = tree(tmp_path / "d", [3] * 3000)
    entries = list_entries(str(tmp_path / "d"))
    book = LocalCrcBook(entries, None)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            values = await book.every(nursery)
    assert list(values) == [zlib.crc32(files[e.name]) for e in entries]
    book.close()
