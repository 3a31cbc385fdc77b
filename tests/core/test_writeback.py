"""Early writeback (:mod:`slipstream.writeback`) and the ``.part`` files that use it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from slipstream import writeback
from slipstream.jobs.files import PartFile
from slipstream.writeback import WritebackWindows, start_writeback

MIB = 1024 * 1024


def test_start_writeback_is_accepted_on_linux_and_leaves_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    data = os.urandom(3 * MIB)
    path.write_bytes(data)
    fd = os.open(path, os.O_RDWR)
    try:
        accepted = start_writeback(fd, 0, len(data))
        assert accepted is sys.platform.startswith("linux")
        os.fsync(fd)
    finally:
        os.close(fd)
    assert path.read_bytes() == data


def test_start_writeback_is_advisory_never_raises() -> None:
    assert start_writeback(-1, 0, MIB) is False  # EBADF: refused, not raised
    assert start_writeback(0, 0, 0) is False  # nothing to write
    assert start_writeback(0, -1, MIB) is False


def record_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    calls: list[tuple[int, int]] = []

    def fake(fd: int, offset: int, length: int) -> bool:
        calls.append((offset, length))
        return True

    monkeypatch.setattr(writeback, "start_writeback", fake)
    return calls


def test_each_completed_window_is_started_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = record_calls(monkeypatch)
    windows = WritebackWindows(fd=7, window=8)
    for size in (3, 7, 8, 9, 15, 33, 33, 40):
        windows.written(size)
    assert calls == [(0, 8), (8, 24), (32, 8)]


def test_windows_count_from_the_start_of_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = record_calls(monkeypatch)
    windows = WritebackWindows(fd=7, size=13, window=8)  # a resumed file: 8 bytes predate us
    windows.written(20)
    windows.written(24)
    windows.restart()  # truncated: counting starts over
    windows.written(10)
    assert calls == [(8, 8), (16, 8), (0, 8)]
    with pytest.raises(ValueError):
        WritebackWindows(fd=7, window=0)


def test_part_file_starts_the_writeback_of_every_whole_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = record_calls(monkeypatch)
    assert writeback.WINDOW == 8 * MIB
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        part = PartFile(dir_fd, ".x.part", resume=False)
        data = os.urandom(3 * MIB)
        for _ in range(7):  # 21 MiB in 3 MiB appends
            part.write(data)
        part.sync()
        part.restart()
        part.write(data * 3)  # 9 MiB after a restart
        part.sync()
        part.close()
    finally:
        os.close(dir_fd)
    assert calls == [(0, 8 * MIB), (8 * MIB, 8 * MIB), (0, 8 * MIB)]
    assert (tmp_path / ".x.part").read_bytes() == data * 3
