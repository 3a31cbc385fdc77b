"""The digest values: formatting of every checksum, a file version from a stat."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from slipstream.digests import FileKey, hash_path
from slipstream.ext import ALGORITHMS
from slipstream.storage import FileStat
from tests.helpers.digests import write


def test_digests_formatting(tmp_path: Path) -> None:
    got = hash_path(write(tmp_path / "empty", b""))
    assert got.crc32 == 0
    assert got.hex("crc32") == "00000000"
    assert got.hex("crc64xz") == "0" * 16
    assert got.raw("crc32c") == b"\0\0\0\0"
    assert got.hex("sha1") == hashlib.sha1(b"").hexdigest()
    as_dict = got.as_dict()
    assert list(as_dict) == ["size", *ALGORITHMS]
    assert as_dict["size"] == 0
    assert as_dict["sha256"] == hashlib.sha256(b"").hexdigest()
    with pytest.raises(KeyError):
        got.hex("md5")


def test_filekey_from_stat_and_filestat(tmp_path: Path) -> None:
    st = os.stat(write(tmp_path / "f", b"abc"))
    key = FileKey.from_stat(st)
    assert key == FileKey(st.st_dev, st.st_ino, 3, st.st_mtime_ns)
    assert FileKey.from_stat(FileStat.from_stat_result(st)) == key
