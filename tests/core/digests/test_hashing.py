"""Hashing a file: every algorithm in one pass, checked against independent references."""

from __future__ import annotations

import hashlib
import os
import random
import zlib
from pathlib import Path

import pytest
import xxhash

from slipstream.digests.hashing import CHUNK_SIZE, hash_fd, hash_path
from slipstream.digests.values import FileChanged
from slipstream.ext import ALGORITHMS
from tests.helpers.digests import open_key, write
from tests.helpers.reference import REFLECTED_POLYS, reference_crc


def expected(data: bytes) -> dict[str, int | bytes]:
    out: dict[str, int | bytes] = {name: reference_crc(name, data) for name in REFLECTED_POLYS}
    out["sha1"] = hashlib.sha1(data).digest()
    out["sha256"] = hashlib.sha256(data).digest()
    out["xxh3_128"] = xxhash.xxh3_128(data).digest()
    return out


@pytest.mark.parametrize(
    ("size", "chunk"),
    [(0, 4096), (1, 4096), (4096, 4096), (20_000, 8192), (70_000, CHUNK_SIZE)],
)
def test_hash_fd_matches_reference_libraries(tmp_path: Path, size: int, chunk: int) -> None:
    data = random.Random(size).randbytes(size)
    fd, key = open_key(write(tmp_path / "f", data))
    steps: list[int] = []
    try:
        got = hash_fd(fd, key.size, steps.append, chunk=chunk)
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0  # pread: the shared offset is untouched
    finally:
        os.close(fd)
    want = expected(data)
    assert got.size == size
    for name in ALGORITHMS:
        assert getattr(got, name) == want[name], name
    assert sum(steps) == size
    assert len(steps) == -(-size // chunk)
    assert zlib.crc32(data) == got.crc32  # zlib itself, not only the reference above


def test_check_values(tmp_path: Path) -> None:
    got = hash_path(write(tmp_path / "check", b"123456789"))
    assert got.crc32 == 0xCBF43926
    assert got.crc32c == 0xE3069283
    assert got.crc64xz == 0x995DC9BBDF1939FA
    assert got.crc64nvme == 0xAE8B14860A799888


def test_hash_fd_short_file_raises(tmp_path: Path) -> None:
    fd, key = open_key(write(tmp_path / "f", b"x" * 100))
    try:
        with pytest.raises(FileChanged):
            hash_fd(fd, key.size + 1)
    finally:
        os.close(fd)


def test_hash_path(tmp_path: Path) -> None:
    data = os.urandom(5000)
    got = hash_path(write(tmp_path / "f", data))
    assert got.sha256 == hashlib.sha256(data).digest()
    assert got.size == 5000
    with pytest.raises(IsADirectoryError):
        hash_path(tmp_path)
    with pytest.raises(FileNotFoundError):
        hash_path(tmp_path / "missing")
