"""What each storage layer does on its own: LocalStorage (descriptors, stat, hidden dirs,
directories), MemoryStorage, and the fstype registry.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from slipstream.errors import (
    FileNotFound,
    FileNotReadable,
    FileSystemUnavailable,
    NotARegularFile,
    PathNotAllowed,
    SlipstreamError,
)
from slipstream.segments import FileSlice, Literal
from slipstream.storage import FileStat, LocalOpenFile, LocalStorage, MemoryStorage, StorageRegistry
from tests.helpers.fds import open_fd_count

# --- local only ---------------------------------------------------------------------------


@pytest.fixture
def base(tmp_path: Path) -> Path:
    b = tmp_path / "base"
    b.mkdir()
    (b / "data.bin").write_bytes(b"x" * 1234)
    return b


def test_local_stat_matches_os_stat(base: Path) -> None:
    st = os.stat(base / "data.bin")
    with LocalStorage(base).open("data.bin") as f:
        assert isinstance(f, LocalOpenFile)
        assert f.stat == FileStat(st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino)
        assert f.stat.last_modified == st.st_mtime_ns // 10**9
        assert f.stat.etag == f'"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"'
        assert os.fstat(f.fileno()).st_ino == st.st_ino
        assert os.get_blocking(f.fileno())
        seg = f.segment()
        assert isinstance(seg, FileSlice) and seg.source is f
    assert LocalStorage(base).stat("data.bin") == f.stat


def test_fifo_is_not_a_regular_file_and_does_not_block(base: Path) -> None:
    os.mkfifo(base / "pipe")
    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            LocalStorage(base).open("pipe").close()
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    before = open_fd_count()
    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout=5)
    assert not worker.is_alive(), "opening a FIFO blocked"
    assert len(outcome) == 1 and isinstance(outcome[0], NotARegularFile)
    assert outcome[0].message == "file is not a regular file"
    assert open_fd_count() == before


def test_socket_is_not_a_regular_file(tmp_path: Path) -> None:
    base = Path(os.path.relpath(tmp_path))  # keep the socket path short
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(base / "sock"))
        with pytest.raises(NotARegularFile):
            LocalStorage(base).open("sock")


def test_unreadable_file(base: Path) -> None:
    target = base / "data.bin"
    target.chmod(0)
    try:
        before = open_fd_count()
        with pytest.raises(FileNotReadable) as info:
            LocalStorage(base).open("data.bin")
        assert info.value.message == "file is not readable"
        assert open_fd_count() == before
    finally:
        target.chmod(0o644)


def test_no_fd_leak_on_any_path(base: Path) -> None:
    (base / "dir").mkdir()
    os.mkfifo(base / "pipe")
    (base / "locked").write_bytes(b"x")
    (base / "locked").chmod(0)
    (base / "loop").symlink_to("loop")
    (base / "out").symlink_to(base.parent)
    storage = LocalStorage(base)
    before = open_fd_count()
    for _ in range(3):
        for path in ("dir", "pipe", "locked", "loop", "out", "missing", "../x", "."):
            with pytest.raises(SlipstreamError):
                storage.open(path)
        storage.open("data.bin").close()
        with storage.open("data.bin"):
            pass
    assert open_fd_count() == before


def test_local_base_must_be_a_directory(base: Path) -> None:
    with pytest.raises(NotADirectoryError):
        LocalStorage(base / "data.bin")
    with pytest.raises(NotADirectoryError):
        LocalStorage(base / "missing")


def test_hidden_outside_base_and_listing_skips_specials(base: Path) -> None:
    os.mkfifo(base / "pipe")
    (base / "bad\\name").write_bytes(b"x")  # unreachable: backslash is a separator
    names = [e.name for e in LocalStorage(base).list_dir("")]
    assert names == ["data.bin"]


# --- memory only --------------------------------------------------------------------------


def test_memory_put_and_delete() -> None:
    mem = MemoryStorage()
    mem.put("a/b.txt", b"abc", mtime_ns=5 * 10**9 + 1)
    st = mem.stat("a/b.txt")
    assert (st.size, st.mtime_ns, st.last_modified) == (3, 5 * 10**9 + 1, 5)
    mem.put("a/b.txt", b"abc", mtime_ns=5 * 10**9 + 1)
    assert mem.stat("a/b.txt").ino != st.ino  # same bytes and time, still a new version
    assert mem.stat("a/b.txt").etag != st.etag
    with pytest.raises(ValueError):
        mem.put("a", b"x")  # a directory
    with pytest.raises(ValueError):
        mem.put("a/b.txt/c", b"x")  # below a file
    with pytest.raises(PathNotAllowed):
        mem.put("../x", b"x")
    mem.delete("a/b.txt")
    with pytest.raises(FileNotFound):
        mem.open("a/b.txt")
    with pytest.raises(FileNotFound):
        mem.delete("a/b.txt")
    assert mem.list_dir("") == []


def test_memory_segments_are_views() -> None:
    mem = MemoryStorage()
    data = bytes(range(100))
    mem.put("d", data)
    with mem.open("d") as f:
        seg = f.segment(5, 10)
        assert isinstance(seg, Literal)
        assert isinstance(seg.data, memoryview) and seg.data.obj is not None
        assert bytes(seg.data) == data[5:15]


# --- registry -----------------------------------------------------------------------------


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[StorageRegistry]:
    yield StorageRegistry({"OsFs": LocalStorage(tmp_path), "MemFs": MemoryStorage()})


def test_registry_default_and_lookup(registry: StorageRegistry) -> None:
    assert registry.get(None).name == "OsFs"
    assert registry.get("").name == "OsFs"
    assert registry.get("OsFs").name == "OsFs"
    assert registry.get("MemFs").name == "MemFs"
    assert set(registry.names) == {"OsFs", "MemFs"}
    assert StorageRegistry({"MemFs": MemoryStorage()}, default="MemFs").get(None).name == "MemFs"


def test_registry_unknown(registry: StorageRegistry) -> None:
    with pytest.raises(FileSystemUnavailable) as info:
        registry.get("S3Fs")
    assert info.value.message == "failed to get file system: unknown file system 'S3Fs'"
    assert info.value.status == 412
    with pytest.raises(ValueError):
        StorageRegistry({"MemFs": MemoryStorage()})
