"""Zip record builders: field-level checks and twin equality (whole archives read back by
real tools: ``test_zipfmt_archives.py``)."""

from __future__ import annotations

import struct
import time
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.twins import load_twin
from tests.helpers.zipfmt import MTIME, U16, U32, U64

pytestmark = pytest.mark.twins
"""Each twin is loaded by name, whatever twin the environment selected: run once, in the
first pass of ``make pytest`` (see the README, "The compiled extension and its twins")."""


def test_compiled_twin_is_an_extension_module() -> None:
    c = load_twin("zipfmt", "c")
    assert c.__file__ is not None
    assert c.__file__.endswith(".so")


# ---------------------------------------------------------------- field level


def parse_extras(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    while data:
        header_id, size = struct.unpack_from("<HH", data)
        out.append((header_id, data[4 : 4 + size]))
        assert len(data) >= 4 + size
        data = data[4 + size :]
    return out


def ut_extra(mtime: int) -> tuple[int, bytes]:
    return (0x5455, bytes([1]) + mtime.to_bytes(4, "little"))


@pytest.mark.parametrize(
    ("unix", "expected"),
    [
        (315532800, (0, (0 << 9) | (1 << 5) | 1)),  # 1980-01-01 00:00:00
        (315532801, (0, (0 << 9) | (1 << 5) | 1)),  # odd second rounds down
        (315532803, (1, (0 << 9) | (1 << 5) | 1)),
        (0, (0, (0 << 9) | (1 << 5) | 1)),  # before 1980: clamped
        (-(10**30), (0, (0 << 9) | (1 << 5) | 1)),
        (1700000000, ((22 << 11) | (13 << 5) | 10, (43 << 9) | (11 << 5) | 14)),
        (1709208000, (12 << 11, (44 << 9) | (2 << 5) | 29)),  # 2024-02-29 12:00:00
        (951868799, ((23 << 11) | (59 << 5) | 29, (20 << 9) | (2 << 5) | 29)),  # 2000-02-29
        (4354819199, ((23 << 11) | (59 << 5) | 29, (127 << 9) | (12 << 5) | 31)),  # 2107-12-31
        (4354819200, ((23 << 11) | (59 << 5) | 29, (127 << 9) | (12 << 5) | 31)),  # clamped
        (10**30, ((23 << 11) | (59 << 5) | 29, (127 << 9) | (12 << 5) | 31)),
    ],
)
def test_dos_datetime_known_values(zf: ModuleType, unix: int, expected: tuple[int, int]) -> None:
    assert zf.dos_datetime(unix) == expected


@pytest.mark.parametrize("kind", ["py", "c"])
@settings(max_examples=200, deadline=None)
@given(unix=st.integers(315532800, 4354819199))
def test_dos_datetime_matches_gmtime(kind: str, unix: int) -> None:
    zf = load_twin("zipfmt", kind)
    t = time.gmtime(unix)
    dos_time, dos_date = zf.dos_datetime(unix)
    assert dos_time == (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2)
    assert dos_date == ((t.tm_year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday


def test_dos_datetime_rejects_non_integers(zf: ModuleType) -> None:
    with pytest.raises(TypeError):
        zf.dos_datetime(1.5)


def test_extended_timestamp_extra(zf: ModuleType) -> None:
    assert zf.extended_timestamp_extra(MTIME) == struct.pack("<HHBI", 0x5455, 5, 1, MTIME)
    assert zf.extended_timestamp_extra(0) == bytes.fromhex("5554 0500 01 00000000")
    assert zf.extended_timestamp_extra(-5) == zf.extended_timestamp_extra(0)
    assert zf.extended_timestamp_extra(U32) == bytes.fromhex("5554 0500 01 ffffffff")
    assert zf.extended_timestamp_extra(2**70) == zf.extended_timestamp_extra(U32)


def test_zip64_extra(zf: ModuleType) -> None:
    assert zf.zip64_extra(0, 0) == bytes.fromhex("0100 1000") + bytes(16)
    assert zf.zip64_extra(U64) == bytes.fromhex("0100 0800") + b"\xff" * 8
    three = zf.zip64_extra(1, 2, 2**40 + 3)
    assert struct.unpack("<HHQQQ", three) == (1, 24, 1, 2, 2**40 + 3)
    for bad in [(), (1, 2, 3, 4)]:
        with pytest.raises(ValueError):
            zf.zip64_extra(*bad)
    for value in [-1, U64 + 1]:
        with pytest.raises(ValueError):
            zf.zip64_extra(value)


LFH = "<IHHHHHIIIHH"


@pytest.mark.parametrize("zip64", [False, True])
def test_local_file_header_fields(zf: ModuleType, zip64: bool) -> None:
    name = "café/ü.txt".encode()
    record = zf.local_file_header(name, MTIME, zip64=zip64)
    fixed = struct.calcsize(LFH)
    assert fixed == 30
    (sig, needed, flags, method, dtime, ddate, crc, csize, usize, nlen, xlen) = struct.unpack_from(
        LFH, record
    )
    assert sig == 0x04034B50
    assert needed == (45 if zip64 else 20)
    assert flags == 0x0808  # data descriptor + UTF-8
    assert method == 0
    assert dtime == (22 << 11) | (13 << 5) | 10  # 21 s -> 20 s
    assert ddate == (43 << 9) | (11 << 5) | 14
    assert crc == 0
    assert csize == usize == (U32 if zip64 else 0)
    assert nlen == len(name)
    assert record[fixed : fixed + nlen] == name
    extras = parse_extras(record[fixed + nlen :])
    assert xlen == len(record) - fixed - nlen
    expected = [(0x0001, bytes(16))] if zip64 else []
    assert extras == [*expected, ut_extra(MTIME)]


@pytest.mark.parametrize("zip64", [False, True])
def test_data_descriptor_fields(zf: ModuleType, zip64: bool) -> None:
    record = zf.data_descriptor(0xDEADBEEF, 1234, zip64=zip64)
    if zip64:
        assert struct.unpack("<IIQQ", record) == (0x08074B50, 0xDEADBEEF, 1234, 1234)
        big = zf.data_descriptor(1, 2**40 + 5, zip64=True)
        assert struct.unpack("<IIQQ", big) == (0x08074B50, 1, 2**40 + 5, 2**40 + 5)
    else:
        assert struct.unpack("<IIII", record) == (0x08074B50, 0xDEADBEEF, 1234, 1234)
        assert len(zf.data_descriptor(0, U32 - 1, zip64=False)) == 16
        with pytest.raises(ValueError):  # such a member is zip64 by the rule
            zf.data_descriptor(0, U32, zip64=False)


def test_data_descriptor_validation(zf: ModuleType) -> None:
    for crc in [-1, U32 + 1]:
        with pytest.raises(ValueError):
            zf.data_descriptor(crc, 0, zip64=False)
    with pytest.raises(ValueError):
        zf.data_descriptor(0, -1, zip64=True)
    with pytest.raises(ValueError):
        zf.data_descriptor(0, U64 + 1, zip64=True)


CDH = "<IHHHHHHIIIHHHHHII"


@pytest.mark.parametrize(
    ("size", "offset", "zip64_fields"),
    [
        (0, 0, []),
        (1234, 5678, []),
        (U32 - 1, U32 - 1, []),
        (U32, 10, [U32, U32]),
        (2**40, 10, [2**40, 2**40]),
        (10, U32, [U32]),
        (10, 2**45, [2**45]),
        (2**33, 2**34 + 1, [2**33, 2**33, 2**34 + 1]),
    ],
)
def test_central_directory_header_fields(
    zf: ModuleType, size: int, offset: int, zip64_fields: list[int]
) -> None:
    name = "日本.txt".encode()
    record = zf.central_directory_header(name, MTIME, 0xCAFEF00D, size, offset)
    fixed = struct.calcsize(CDH)
    assert fixed == 46
    (
        sig,
        made_by,
        needed,
        flags,
        method,
        dtime,
        ddate,
        crc,
        csize,
        usize,
        nlen,
        xlen,
        clen,
        disk,
        internal,
        external,
        local_offset,
    ) = struct.unpack_from(CDH, record)
    zip64 = bool(zip64_fields)
    assert sig == 0x02014B50
    assert made_by == (0x032D if zip64 else 0x031E)
    assert needed == (45 if zip64 else 20)
    assert flags == 0x0808
    assert method == 0
    assert (dtime, ddate) == zf.dos_datetime(MTIME)
    assert crc == 0xCAFEF00D
    assert csize == usize == (U32 if size >= U32 else size)
    assert nlen == len(name)
    assert xlen == len(record) - fixed - nlen
    assert (clen, disk, internal) == (0, 0, 0)
    assert external == 0o100644 << 16
    assert local_offset == (U32 if offset >= U32 else offset)
    assert record[fixed : fixed + nlen] == name
    extras = parse_extras(record[fixed + nlen :])
    if zip64_fields:
        body = struct.pack(f"<{len(zip64_fields)}Q", *zip64_fields)
        assert extras == [(0x0001, body), ut_extra(MTIME)]
    else:
        assert extras == [ut_extra(MTIME)]


def test_central_directory_header_forced_zip64(zf: ModuleType) -> None:
    forced = zf.central_directory_header(b"a", MTIME, 0, 5, 7, zip64=True)
    assert struct.unpack_from("<HH", forced, 4) == (0x032D, 45)
    assert parse_extras(forced[46 + 1 :]) == [ut_extra(MTIME)]  # nothing overflows
    plain = zf.central_directory_header(b"a", MTIME, 0, 5, 7, zip64=False)
    assert plain == zf.central_directory_header(b"a", MTIME, 0, 5, 7)
    with pytest.raises(ValueError):
        zf.central_directory_header(b"a", MTIME, 0, U32, 7, zip64=False)


def test_name_validation(zf: ModuleType) -> None:
    longest = b"n" * 0xFFFF
    assert len(zf.local_file_header(longest, 0, zip64=False)) == 30 + 0xFFFF + 9
    assert len(zf.central_directory_header(longest, 0, 0, 0, 0)) == 46 + 0xFFFF + 9
    with pytest.raises(ValueError):
        zf.local_file_header(b"n" * 0x10000, 0, zip64=False)
    with pytest.raises(ValueError):
        zf.central_directory_header(b"n" * 0x10000, 0, 0, 0, 0)
    with pytest.raises(TypeError):
        zf.local_file_header("str-name", 0, zip64=False)
    with pytest.raises(TypeError):
        zf.central_directory_header(None, 0, 0, 0, 0)


def test_central_directory_header_validation(zf: ModuleType) -> None:
    for args in [(-1, 0, 0), (U32 + 1, 0, 0), (0, -1, 0), (0, U64 + 1, 0), (0, 0, -1)]:
        with pytest.raises(ValueError):
            zf.central_directory_header(b"a", 0, *args)


def test_zip64_end_of_central_directory(zf: ModuleType) -> None:
    record = zf.zip64_end_of_central_directory(70000, 2**33, 2**34)
    assert len(record) == 56
    assert struct.unpack("<IQHHIIQQQQ", record) == (
        0x06064B50,
        44,  # size of the remaining record
        0x032D,
        45,
        0,
        0,
        70000,
        70000,
        2**33,
        2**34,
    )
    with pytest.raises(ValueError):
        zf.zip64_end_of_central_directory(-1, 0, 0)


def test_zip64_end_of_central_directory_locator(zf: ModuleType) -> None:
    record = zf.zip64_end_of_central_directory_locator(2**35 + 9)
    assert struct.unpack("<IIQI", record) == (0x07064B50, 0, 2**35 + 9, 1)
    with pytest.raises(ValueError):
        zf.zip64_end_of_central_directory_locator(U64 + 1)


@pytest.mark.parametrize(
    ("entries", "cd_size", "cd_offset", "fields"),
    [
        (3, 200, 5000, (3, 200, 5000)),
        (U16 - 1, U32 - 1, U32 - 1, (U16 - 1, U32 - 1, U32 - 1)),
        (U16, 10, 10, (U16, 10, 10)),
        (100000, 2**40, 2**41, (U16, U32, U32)),
        (1, 10, U32, (1, 10, U32)),
    ],
)
def test_end_of_central_directory(
    zf: ModuleType, entries: int, cd_size: int, cd_offset: int, fields: tuple[int, int, int]
) -> None:
    record = zf.end_of_central_directory(entries, cd_size, cd_offset)
    n, size, offset = fields
    assert struct.unpack("<IHHHHIIH", record) == (0x06054B50, 0, 0, n, n, size, offset, 0)


def test_zip64_decisions(zf: ModuleType) -> None:
    assert not zf.needs_zip64(U32 - 1, U32 - 1)
    assert zf.needs_zip64(U32, 0)
    assert zf.needs_zip64(0, U32)
    assert not zf.needs_zip64_end(U16 - 1, U32 - 1, U32 - 1)
    assert zf.needs_zip64_end(U16, 0, 0)
    assert zf.needs_zip64_end(0, U32, 0)
    assert zf.needs_zip64_end(0, 0, U32)


# ---------------------------------------------------------------- twins agree

names = st.binary(max_size=300)
mtimes = st.one_of(st.integers(-(2**40), 2**40), st.integers(-(2**80), 2**80))
u32s = st.integers(0, U32)
u64s = st.one_of(st.integers(0, U64), st.integers(U32 - 3, U32 + 3), st.integers(0, 1000))


def outcome(fn: object, *args: object, **kwargs: object) -> object:
    assert callable(fn)
    try:
        return fn(*args, **kwargs)
    except (ValueError, TypeError) as exc:
        return (type(exc), str(exc))


@settings(max_examples=300, deadline=None)
@given(
    name=names,
    mtime=mtimes,
    crc=st.one_of(u32s, st.integers(-3, U32 + 3)),
    size=u64s,
    offset=u64s,
    zip64=st.sampled_from([None, False, True]),
)
def test_twins_agree(
    name: bytes, mtime: int, crc: int, size: int, offset: int, zip64: bool | None
) -> None:
    c = load_twin("zipfmt", "c")
    py = load_twin("zipfmt", "py")
    calls: list[tuple[str, tuple[object, ...], dict[str, object]]] = [
        ("dos_datetime", (mtime,), {}),
        ("extended_timestamp_extra", (mtime,), {}),
        ("local_file_header", (name, mtime), {"zip64": bool(zip64)}),
        ("data_descriptor", (crc, size), {"zip64": bool(zip64)}),
        ("central_directory_header", (name, mtime, crc, size, offset), {"zip64": zip64}),
        ("zip64_extra", (size, offset, crc), {}),
        ("zip64_extra", (size,), {}),
        ("zip64_end_of_central_directory", (crc, size, offset), {}),
        ("zip64_end_of_central_directory_locator", (offset,), {}),
        ("end_of_central_directory", (crc, size, offset), {}),
        ("needs_zip64", (size, offset), {}),
        ("needs_zip64_end", (crc, size, offset), {}),
    ]
    for fn, args, kwargs in calls:
        expected = outcome(getattr(py, fn), *args, **kwargs)
        assert outcome(getattr(c, fn), *args, **kwargs) == expected, fn
