"""``slipstream.buffers``: page-aligned, zero-filled, writable buffers."""

from __future__ import annotations

import ctypes
import mmap
import os
from pathlib import Path

import pytest

from slipstream.buffers import aligned_buffer


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4 * 2**20 + 3])
def test_a_buffer_is_page_aligned_zeroed_and_writable(size: int) -> None:
    with aligned_buffer(size) as view:
        assert len(view) == size and not view.readonly
        assert view.tobytes() == bytes(size)
        if size:
            view[-1] = 7
            address = ctypes.addressof(ctypes.c_char.from_buffer(view))
            assert address % mmap.PAGESIZE == 0
            assert view[-1] == 7


def test_a_file_is_read_into_it(tmp_path: Path) -> None:
    data = os.urandom(100_000)
    path = tmp_path / "f"
    with open(path, "wb") as out:
        out.write(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        with aligned_buffer(len(data)) as view:
            assert os.preadv(fd, [view], 0) == len(data)
            assert view.tobytes() == data
    finally:
        os.close(fd)


def test_a_negative_size_is_refused() -> None:
    with pytest.raises(ValueError):
        aligned_buffer(-1)
