"""``O_DIRECT`` writes (:mod:`slipstream.directio`) and the ``.part`` files that use them."""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slipstream import directio
from slipstream.buffers import aligned_buffer
from slipstream.directio import ALIGN, DIRECT_FLAG, direct_length, set_direct
from slipstream.jobs import files
from slipstream.jobs.files import PartFile

MIB = 1024 * 1024


@pytest.fixture
def dir_fd(tmp_path: Path) -> Iterator[int]:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield fd
    finally:
        os.close(fd)


def takes_direct_writes(directory: Path) -> bool:
    """Whether files in ``directory`` accept an aligned ``O_DIRECT`` write."""
    probe = directory / ".probe"
    try:
        fd = os.open(probe, os.O_RDWR | os.O_CREAT | DIRECT_FLAG, 0o644)
    except OSError:
        return False
    try:
        os.write(fd, aligned_buffer(ALIGN))
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
        probe.unlink()


def filled(size: int, seed: int = 0) -> memoryview:
    block = aligned_buffer(size)
    block[:] = bytes((seed + i * 7) % 251 for i in range(256)) * (size // 256) + bytes(size % 256)
    return block


def test_direct_length_needs_offset_length_and_address_aligned() -> None:
    block = aligned_buffer(3 * ALIGN + 100)
    assert direct_length(block, 0) == 3 * ALIGN  # the tail past the last whole unit is left
    assert direct_length(block, 5 * ALIGN) == 3 * ALIGN
    assert direct_length(block, 100) == 0  # file offset not aligned
    assert direct_length(block[1:], 0) == 0  # memory not aligned
    assert direct_length(block[: ALIGN - 1], 0) == 0  # less than one unit
    assert direct_length(block[ALIGN:], 0) == 2 * ALIGN
    assert direct_length(memoryview(bytes(2 * ALIGN)), 0) == 0  # read-only: address unknown
    assert direct_length(block[:0], 0) == 0
    assert direct_length(block[: 2 * ALIGN].cast("I"), 0) == 0  # not a byte view


def test_set_direct_switches_the_flag_or_says_the_file_refuses(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if set_direct(fd, True):
            assert fcntl.fcntl(fd, fcntl.F_GETFL) & DIRECT_FLAG
            assert takes_direct_writes(tmp_path)
        else:
            assert not takes_direct_writes(tmp_path)
        assert set_direct(fd, False)
        assert not fcntl.fcntl(fd, fcntl.F_GETFL) & DIRECT_FLAG
    finally:
        os.close(fd)


def test_part_file_writes_aligned_blocks_directly_and_the_rest_through_the_cache(
    tmp_path: Path, dir_fd: int
) -> None:
    direct = takes_direct_writes(tmp_path)
    part = PartFile(dir_fd, ".x.part", resume=False)
    a, b, c = filled(MIB, 1), filled(MIB, 2), filled(MIB, 3)
    part.write(a)  # offset 0, aligned: direct
    part.write(b[:100])  # a short tail: through the page cache
    part.write(c)  # aligned memory, but at offset 1 MiB + 100: through the page cache
    part.write(bytes(b))  # read-only bytes: through the page cache
    part.sync()
    part.close()
    assert part.size == 3 * MIB + 100
    assert part.direct_bytes == (MIB if direct else 0)
    assert part.direct is direct
    assert (tmp_path / ".x.part").read_bytes() == bytes(a) + bytes(b[:100]) + bytes(c) + bytes(b)


def test_part_file_goes_back_to_direct_writes_once_the_offset_is_aligned_again(
    tmp_path: Path, dir_fd: int
) -> None:
    direct = takes_direct_writes(tmp_path)
    part = PartFile(dir_fd, ".x.part", resume=False)
    block = filled(2 * MIB, 4)
    part.write(block[: ALIGN - 10])
    part.write(block[ALIGN - 10 : ALIGN])  # the file is aligned again after this one
    part.write(block[ALIGN:])  # aligned offset, memory and length: direct
    part.sync()
    part.restart()  # truncated to 0: aligned again
    part.write(block[:MIB])
    part.sync()
    part.close()
    expected_direct = (2 * MIB - ALIGN) + MIB if direct else 0
    assert part.direct_bytes == expected_direct
    assert (tmp_path / ".x.part").read_bytes() == bytes(block[:MIB])


def test_part_file_resumed_at_an_odd_size_appends_exactly(tmp_path: Path, dir_fd: int) -> None:
    (tmp_path / ".x.part").write_bytes(b"x" * 1000)
    part = PartFile(dir_fd, ".x.part", resume=True)
    block = filled(MIB, 5)
    part.write(block)  # offset 1000: not aligned, through the page cache
    part.sync()
    part.close()
    assert (tmp_path / ".x.part").read_bytes() == b"x" * 1000 + bytes(block)


def test_a_file_that_refuses_direct_writes_is_written_through_the_cache(
    tmp_path: Path, dir_fd: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    refusals: list[int] = []
    real_write = os.write

    def refusing_write(fd: int, data: memoryview) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & DIRECT_FLAG:
            refusals.append(len(data))
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(files.os, "write", refusing_write)
    part = PartFile(dir_fd, ".x.part", resume=False)
    blocks = [filled(MIB, i) for i in range(3)]
    for block in blocks:
        part.write(block)
    part.sync()
    part.close()
    if takes_direct_writes(tmp_path):
        assert refusals == [MIB]  # refused once, then never tried again
    assert part.direct is False
    assert part.direct_bytes == 0
    assert (tmp_path / ".x.part").read_bytes() == b"".join(bytes(b) for b in blocks)


def test_a_real_write_error_is_raised_not_taken_for_a_refusal(
    tmp_path: Path, dir_fd: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_write(fd: int, data: memoryview) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "write", failing_write)
    part = PartFile(dir_fd, ".x.part", resume=False)
    with pytest.raises(OSError) as caught:
        part.write(filled(MIB))
    assert caught.value.errno == errno.ENOSPC
    part.remove()


def test_without_direct_every_write_goes_through_the_cache(tmp_path: Path, dir_fd: int) -> None:
    part = PartFile(dir_fd, ".x.part", resume=False, direct=False)
    block = filled(2 * MIB, 6)
    part.write(block)
    part.sync()
    part.close()
    assert part.direct_bytes == 0
    assert not directio.refused(OSError(errno.EIO, "I/O error"))
    assert (tmp_path / ".x.part").read_bytes() == bytes(block)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3 * ALIGN), st.integers(0, 2 * ALIGN + 7), st.booleans()),
        max_size=12,
    )
)
def test_any_sequence_of_writes_leaves_exactly_the_bytes_written(
    tmp_path_factory: pytest.TempPathFactory, writes: list[tuple[int, int, bool]]
) -> None:
    directory = tmp_path_factory.mktemp("direct")
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        part = PartFile(fd, ".x.part", resume=False)
        source = filled(6 * ALIGN, len(writes))
        expected = bytearray()
        for start, length, readonly in writes:
            piece = source[start : start + length]
            part.write(bytes(piece) if readonly else piece)
            expected += piece
        part.sync()
        part.close()
        assert part.size == len(expected)
        assert (directory / ".x.part").read_bytes() == bytes(expected)
    finally:
        os.close(fd)
