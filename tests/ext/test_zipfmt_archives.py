"""Whole archives built from the zip record builders (each twin), read back by Python's
``zipfile`` and the real tools ``unzip``, ``7z`` and ``bsdtar``."""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import time
import zipfile
import zlib
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers.zipfmt import MTIME, TOOLS_HINT, U16

pytestmark = pytest.mark.twins
"""Each twin is loaded by name, whatever twin the environment selected: run once, in the
first pass of ``make pytest`` (see the README, "The compiled extension and its twins")."""


Member = tuple[str, bytes, bool]  # name, data, force zip64


def build_zip(
    zf: ModuleType, members: list[Member], *, mtime: int, force_zip64_end: bool = False
) -> bytes:
    """The streamed layout: [local][data][descriptor]... [central dir][zip64 end][end]."""
    out = bytearray()
    central = []
    for name, data, force in members:
        raw = name.encode()
        offset = len(out)
        zip64 = force or zf.needs_zip64(len(data), offset)
        crc = zlib.crc32(data)
        out += zf.local_file_header(raw, mtime, zip64=zip64)
        out += data
        out += zf.data_descriptor(crc, len(data), zip64=zip64)
        central.append(zf.central_directory_header(raw, mtime, crc, len(data), offset, zip64=zip64))
    cd_offset = len(out)
    cd = b"".join(central)
    out += cd
    if force_zip64_end or zf.needs_zip64_end(len(members), len(cd), cd_offset):
        zip64_end_offset = len(out)
        out += zf.zip64_end_of_central_directory(len(members), len(cd), cd_offset)
        out += zf.zip64_end_of_central_directory_locator(zip64_end_offset)
    out += zf.end_of_central_directory(len(members), len(cd), cd_offset)
    return bytes(out)


def run_tool(
    *args: str | Path, cwd: Path | None = None, stdin: bytes | None = None
) -> tuple[bytes, str]:
    """Run a real zip reader (a missing tool fails the test); ``(stdout, all output)``."""
    if shutil.which(str(args[0])) is None:
        pytest.fail(f"{args[0]} is not installed: {TOOLS_HINT}")
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    proc = subprocess.run(
        [str(a) for a in args],
        input=stdin,
        capture_output=True,
        env=env,
        cwd=cwd,
        timeout=120,
        check=False,
    )
    output = proc.stdout.decode("utf-8", "replace") + proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0, f"{args[0]} exited {proc.returncode}:\n{output[-3000:]}"
    return proc.stdout, output


def tool(*args: str | Path, cwd: Path | None = None) -> str:
    return run_tool(*args, cwd=cwd)[1]


def check_with_tools(path: Path, names: list[str]) -> None:
    out = tool("unzip", "-t", path)
    assert "No errors detected" in out
    for name in names:
        assert f"testing: {name} " in out, name

    out = tool("7z", "t", path)
    assert "Everything is Ok" in out
    assert "WARNING" not in out.upper()
    listing = tool("7z", "l", "-slt", "-ba", path)
    listed = [line[len("Path = ") :] for line in listing.splitlines() if line.startswith("Path = ")]
    assert listed == names

    out = tool("bsdtar", "-tf", path)
    assert out.splitlines() == names


def check_streaming(data: bytes, members: list[Member]) -> None:
    """libarchive reading from a pipe walks local headers and data descriptors only, so
    it fails when a descriptor's width disagrees with its local header."""
    listing, _ = run_tool("bsdtar", "-tf", "-", stdin=data)
    assert listing.decode().splitlines() == [name for name, _, _ in members]
    contents, _ = run_tool("bsdtar", "-xOf", "-", stdin=data)
    assert contents == b"".join(content for _, content, _ in members)


def check_with_zipfile(data: bytes, members: list[Member], mtime: int) -> None:
    t = time.gmtime(mtime)
    date_time = (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec // 2 * 2)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == [name for name, _, _ in members]
        for info, (name, content, _) in zip(archive.infolist(), members, strict=True):
            assert info.filename == name
            assert info.flag_bits == 0x0808
            assert info.compress_type == zipfile.ZIP_STORED
            assert info.file_size == info.compress_size == len(content)
            assert zlib.crc32(content) == info.CRC
            assert info.date_time == date_time
            assert info.external_attr >> 16 == 0o100644
            assert archive.read(info) == content


MIXED: list[Member] = [
    ("hello.txt", b"hello, world\n", False),
    ("café/ü.txt", "grüße\n".encode() * 50, False),
    ("日本.txt", "こんにちは\n".encode(), False),
    ("empty.txt", b"", False),
    ("zip64/small.bin", bytes(range(256)) * 40, True),
    ("zip64/empty.bin", b"", True),
    ("last.txt", b"the end\n", False),
]


@pytest.mark.parametrize("force_zip64_end", [False, True])
def test_whole_archive_is_read_by_zipfile_and_tools(
    zf: ModuleType, tmp_path: Path, force_zip64_end: bool
) -> None:
    data = build_zip(zf, MIXED, mtime=MTIME, force_zip64_end=force_zip64_end)
    assert (b"PK\x06\x06" in data) == force_zip64_end
    check_with_zipfile(data, MIXED, MTIME)
    path = tmp_path / "mixed.zip"
    path.write_bytes(data)
    check_with_tools(path, [name for name, _, _ in MIXED])
    check_streaming(data, MIXED)


def test_all_zip64_archive(zf: ModuleType, tmp_path: Path) -> None:
    members = [(name, content, True) for name, content, _ in MIXED]
    data = build_zip(zf, members, mtime=MTIME, force_zip64_end=True)
    check_with_zipfile(data, members, MTIME)
    path = tmp_path / "zip64.zip"
    path.write_bytes(data)
    check_with_tools(path, [name for name, _, _ in members])
    check_streaming(data, members)


@pytest.mark.parametrize("extractor", ["unzip", "bsdtar"])
def test_extraction_restores_exact_mtime(zf: ModuleType, tmp_path: Path, extractor: str) -> None:
    """The 0x5455 extra carries the odd second the DOS time cannot hold."""
    path = tmp_path / "t.zip"
    path.write_bytes(build_zip(zf, MIXED, mtime=MTIME))
    target = tmp_path / "out"
    target.mkdir()
    if extractor == "unzip":
        tool("unzip", "-q", path, "-d", target)
    else:
        tool("bsdtar", "-xf", path, cwd=target)
    for name, content, _ in MIXED:
        extracted = target / name
        assert extracted.read_bytes() == content
        assert extracted.stat().st_mtime == MTIME, (extractor, name)


def test_entry_count_forces_zip64_end(zf: ModuleType, tmp_path: Path) -> None:
    count = U16  # the smallest count the 16-bit field cannot hold
    members: list[Member] = [(f"{i:05x}", b"", False) for i in range(count)]
    data = build_zip(zf, members, mtime=MTIME)
    end = data[-22:]
    assert struct.unpack("<IHHHHIIH", end)[3:5] == (U16, U16)
    locator = data[-42:-22]
    signature, _, zip64_end_offset, _ = struct.unpack("<IIQI", locator)
    assert signature == 0x07064B50
    assert struct.unpack_from("<IQHHIIQQ", data, zip64_end_offset)[6:] == (count, count)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        assert len(archive.infolist()) == count
        assert archive.namelist()[-1] == f"{count - 1:05x}"
    path = tmp_path / "many.zip"
    path.write_bytes(data)
    out = tool("unzip", "-t", path)
    assert "No errors detected" in out
    assert out.count(" OK\n") == count
    out = tool("7z", "t", path)
    assert "Everything is Ok" in out
    assert f"Files: {count}" in out
    listing = tool("bsdtar", "-tf", path).splitlines()
    assert listing == [name for name, _, _ in members]
    check_streaming(data, members)
