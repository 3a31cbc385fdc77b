"""The open-file cache: reuse only while the path names the same file, shared descriptors
closed by their last holder, LRU and idle limits (no server needed)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from slipstream.errors import FileNotFound, FileNotReadable, PathNotAllowed
from slipstream.openfiles import OpenFileCache
from slipstream.storage import LocalOpenFile, LocalStorage


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def open_inodes() -> set[int]:
    """Inodes this process holds open."""
    found = set()
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            found.add(os.stat(f"/proc/self/fd/{name}").st_ino)
    return found


def read_all(opened: object) -> bytes:
    assert isinstance(opened, LocalOpenFile)
    return os.pread(opened.fileno(), opened.stat.size + 1, 0)


@pytest.fixture
def cache() -> OpenFileCache:
    return OpenFileCache(4, inactive=10.0, clock=Clock())


@pytest.fixture
def storage(tmp_path: Path, cache: OpenFileCache) -> LocalStorage:
    (tmp_path / "a.txt").write_bytes(b"first")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_bytes(b"bee")
    return LocalStorage(tmp_path, open_files=cache)


def test_a_second_open_reuses_the_descriptor(storage: LocalStorage, cache: OpenFileCache) -> None:
    with storage.open("a.txt") as first:
        fd = first.fileno()
    assert is_open(fd)  # kept by the cache after the reply is done
    with storage.open("./a.txt") as second:
        assert second.fileno() == fd
        assert read_all(second) == b"first"
    assert (cache.hits, len(cache)) == (1, 1)


def test_concurrent_holders_share_one_descriptor(
    storage: LocalStorage, cache: OpenFileCache
) -> None:
    first = storage.open("sub/b.txt")
    second = storage.open("sub/b.txt")
    assert first.fileno() == second.fileno()
    fd = first.fileno()
    cache.close()  # the cache lets go: the holders still read
    assert is_open(fd)
    first.close()
    assert is_open(fd) and read_all(second) == b"bee"
    second.close()
    assert not is_open(fd)


def test_a_file_replaced_by_rename_is_opened_afresh(
    storage: LocalStorage, tmp_path: Path, cache: OpenFileCache
) -> None:
    with storage.open("a.txt") as old:
        old_ino, old_etag = old.stat.ino, old.stat.etag
    assert old_ino in open_inodes()
    (tmp_path / "new").write_bytes(b"second!")
    os.replace(tmp_path / "new", tmp_path / "a.txt")
    with storage.open("a.txt") as new:
        assert read_all(new) == b"second!"
        assert new.stat.etag != old_etag
    assert old_ino not in open_inodes()  # the stale descriptor was dropped and closed
    assert len(cache) == 1


def test_a_file_rewritten_in_place_has_its_new_size_and_etag(
    storage: LocalStorage, tmp_path: Path
) -> None:
    with storage.open("a.txt") as old:
        etag = old.stat.etag
    with open(tmp_path / "a.txt", "ab") as f:
        f.write(b" and more")
    with storage.open("a.txt") as new:
        assert new.stat.size == len(b"first and more")
        assert read_all(new) == b"first and more"
        assert new.stat.etag != etag


def test_a_deleted_file_is_not_found_and_its_descriptor_closes(
    storage: LocalStorage, tmp_path: Path, cache: OpenFileCache
) -> None:
    with storage.open("a.txt") as opened:
        fd = opened.fileno()
    (tmp_path / "a.txt").unlink()
    with pytest.raises(FileNotFound):
        storage.open("a.txt")
    assert not is_open(fd) and len(cache) == 0


def test_a_file_that_lost_its_read_bits_is_refused(storage: LocalStorage, tmp_path: Path) -> None:
    storage.open("a.txt").close()
    os.chmod(tmp_path / "a.txt", 0)
    try:
        with pytest.raises(FileNotReadable):
            storage.open("a.txt")
    finally:
        os.chmod(tmp_path / "a.txt", 0o644)


def test_a_path_swapped_for_a_symlink_out_of_the_base_is_refused(
    tmp_path: Path, cache: OpenFileCache
) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "a.txt").write_bytes(b"inside")
    (tmp_path / "secret").write_bytes(b"outside")
    storage = LocalStorage(base, open_files=cache)
    storage.open("a.txt").close()
    (base / "a.txt").unlink()
    (base / "a.txt").symlink_to(tmp_path / "secret")
    with pytest.raises(PathNotAllowed):
        storage.open("a.txt")


def test_files_through_a_final_symlink_are_served_but_not_kept(
    storage: LocalStorage, tmp_path: Path, cache: OpenFileCache
) -> None:
    (tmp_path / "link.txt").symlink_to(tmp_path / "a.txt")
    with storage.open("link.txt") as opened:
        assert read_all(opened) == b"first"
        fd = opened.fileno()
    assert not is_open(fd) and len(cache) == 0


def test_least_recently_used_entries_leave_first(tmp_path: Path) -> None:
    cache = OpenFileCache(2, clock=Clock())
    storage = LocalStorage(tmp_path, open_files=cache)
    fds = {}
    for name in ("x", "y", "z"):
        (tmp_path / name).write_bytes(name.encode())
    for name in ("x", "y", "x", "z"):  # y is the least recently used when z comes
        with storage.open(name) as opened:
            fds[name] = opened.fileno()
    assert len(cache) == 2
    assert not is_open(fds["y"]) and is_open(fds["x"]) and is_open(fds["z"])


def test_idle_entries_are_swept(storage: LocalStorage) -> None:
    clock = Clock()
    cache = OpenFileCache(8, inactive=10.0, clock=clock)
    storage = LocalStorage(storage.base, open_files=cache)
    with storage.open("a.txt") as opened:
        old = opened.fileno()
    clock.now += 6
    with storage.open("sub/b.txt") as opened:
        recent = opened.fileno()
    clock.now += 5  # a.txt idle 11 s, b.txt 5 s
    assert cache.sweep() == 1
    assert not is_open(old) and is_open(recent)
    assert len(cache) == 1


def test_a_cache_of_zero_keeps_nothing(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"a")
    storage = LocalStorage(tmp_path, open_files=OpenFileCache(0))
    with storage.open("a") as opened:
        fd = opened.fileno()
    assert not is_open(fd)


def test_after_close_nothing_is_kept(storage: LocalStorage, cache: OpenFileCache) -> None:
    cache.close()
    with storage.open("a.txt") as opened:
        fd = opened.fileno()
    assert not is_open(fd) and len(cache) == 0


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        OpenFileCache(-1)
    with pytest.raises(ValueError):
        OpenFileCache(1, inactive=0)
