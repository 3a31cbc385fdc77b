"""``slipstream.zip.plan``: layout, rendering by pieces, CRC needs, zip64, ETags."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import slipstream.zip.plan as plan
from slipstream.filenames import deduplicate, safe_filename
from slipstream.zip.plan import DOS_EPOCH, ZipLayout, ZipMember, manifest_etag, plan_zip
from tests.helpers.zip_layout import full_zip, render

GiB = 1 << 30


names = st.lists(
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=12), min_size=0, max_size=6
).map(lambda raw: deduplicate([safe_filename(n) for n in raw]))


@st.composite
def manifests(draw: st.DrawFn) -> tuple[list[ZipMember], list[bytes]]:
    entry_names = draw(names)
    contents = [draw(st.binary(max_size=300)) for _ in entry_names]
    mtimes = [draw(st.none() | st.integers(0, 2**32 + 10)) for _ in entry_names]
    members = [
        ZipMember(n, len(c), m) for n, c, m in zip(entry_names, contents, mtimes, strict=True)
    ]
    return members, contents


@settings(max_examples=60, deadline=None)
@given(manifests())
def test_zipfile_reads_back_every_member(manifest: tuple[list[ZipMember], list[bytes]]) -> None:
    members, contents = manifest
    layout = plan_zip(members)
    blob = full_zip(layout, contents)
    assert len(blob) == layout.total
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert zf.testzip() is None
        infos = zf.infolist()
        assert [i.filename for i in infos] == [m.name for m in members]
        for i, (info, member, content) in enumerate(zip(infos, members, contents, strict=True)):
            assert zf.read(info) == content
            assert zlib.crc32(content) == info.CRC
            assert info.compress_type == zipfile.ZIP_STORED
            assert info.flag_bits & 0x0808 == 0x0808
            assert info.header_offset == layout.header_offset(i)
            expected_time = DOS_EPOCH if member.mtime is None else member.mtime
            assert _dos_to_unix(info.date_time) == _dos_clamp(expected_time)
    # determinism: a new plan of the same manifest gives the same bytes
    assert full_zip(plan_zip(list(members)), contents) == blob


def _dos_to_unix(date_time: tuple[int, int, int, int, int, int]) -> int:
    import calendar

    return calendar.timegm((*date_time, 0, 0, 0))


def _dos_clamp(mtime: int) -> int:
    last = 4354819198  # 2107-12-31 23:59:58
    return min(max(mtime, DOS_EPOCH), last) // 2 * 2


@settings(max_examples=80, deadline=None)
@given(manifests(), st.data())
def test_any_range_equals_the_slice_and_needs_exactly_its_crcs(
    manifest: tuple[list[ZipMember], list[bytes]], data: st.DataObject
) -> None:
    members, contents = manifest
    layout = plan_zip(members)
    blob = full_zip(layout, contents)
    start = data.draw(st.integers(0, layout.total), label="start")
    stop = data.draw(st.integers(start, layout.total), label="stop")
    used: set[int] = set()
    crcs = [zlib.crc32(c) for c in contents]

    def crc(i: int) -> int:
        used.add(i)
        return crcs[i]

    part = render(layout, start, stop, lambda i, s, n: contents[i][s : s + n], crc)
    assert part == blob[start:stop]
    assert layout.crcs_needed(start, stop) == sorted(used)


def test_every_range_around_piece_boundaries() -> None:
    contents = [b"abc", b"", b"z" * 5]
    members = [ZipMember(n, len(c), 0) for n, c in zip(["a", "e", "b"], contents, strict=True)]
    layout = plan_zip(members)
    blob = full_zip(layout, contents)
    crcs = [zlib.crc32(c) for c in contents]
    bounds = {layout.total, layout.central_offset}
    for i in range(len(members)):
        bounds |= {layout.header_offset(i), layout.data_offset(i), layout.descriptor_offset(i)}
    points = sorted({p + d for p in bounds for d in (-1, 0, 1) if 0 <= p + d <= layout.total})
    for start in points:
        for stop in (p for p in points if p >= start):
            used: set[int] = set()

            def crc(i: int, used: set[int] = used) -> int:
                used.add(i)
                return crcs[i]

            part = render(layout, start, stop, lambda i, s, n: contents[i][s : s + n], crc)
            assert part == blob[start:stop], (start, stop)
            assert layout.crcs_needed(start, stop) == sorted(used), (start, stop)
    central = layout.central_offset
    assert layout.crcs_needed(central, central + 1) == [0, 1, 2]
    assert layout.crcs_needed(central - 1, central) == [2]


def test_pieces_cover_the_layout_in_order() -> None:
    members = [ZipMember("a", 3, 0), ZipMember("empty", 0, 0), ZipMember("b", 2, 0)]
    layout = plan_zip(members)
    pieces = list(layout.pieces(0, layout.total))
    kinds = [(p.kind, p.index) for p in pieces]
    assert kinds == [
        ("header", 0),
        ("data", 0),
        ("descriptor", 0),
        ("header", 1),
        ("descriptor", 1),  # no empty data piece
        ("header", 2),
        ("data", 2),
        ("descriptor", 2),
        ("central", -1),
    ]
    assert all(p.skip == 0 for p in pieces)
    assert sum(p.length for p in pieces) == layout.total
    assert layout.data_offset(1) == layout.descriptor_offset(1)
    # a range starting inside a piece skips into it; an empty range has no pieces
    inside = list(layout.pieces(layout.data_offset(0) + 1, layout.data_offset(0) + 2))
    assert [(p.kind, p.index, p.skip, p.length) for p in inside] == [("data", 0, 1, 1)]
    assert list(layout.pieces(5, 5)) == []
    assert layout.crcs_needed(5, 5) == []
    assert layout.crcs_needed(layout.total - 1, layout.total) == [0, 1, 2]
    assert layout.crcs_needed(0, layout.header_offset(1)) == [0]
    assert layout.crcs_needed(0, layout.descriptor_offset(0)) == []


def test_empty_zip() -> None:
    layout = plan_zip([])
    blob = full_zip(layout, [])
    assert layout.total == len(blob) == 22
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert zf.infolist() == []


def test_range_and_index_checks() -> None:
    layout = plan_zip([ZipMember("a", 1, None)])
    for start, stop in [(-1, 2), (3, 2), (0, layout.total + 1)]:
        with pytest.raises(ValueError):
            list(layout.pieces(start, stop))
        with pytest.raises(ValueError):
            layout.crcs_needed(start, stop)
    with pytest.raises(IndexError):
        layout.header_bytes(1)
    with pytest.raises(IndexError):
        layout.descriptor_offset(-1)
    with pytest.raises(ValueError):
        layout.central_bytes([])


@pytest.mark.parametrize(
    "names",
    [
        ["../x"],
        ["/abs"],
        ["a\\b"],
        ["C:x"],
        ["CON"],
        ["nul.txt"],
        ["a/../b"],
        ["a//b"],
        ["dir/"],
        [""],
        ["x\x00y"],
        ["trailing."],
        ["a.txt", "A.TXT"],
        ["a", "a/b"],
        ["A/b", "a"],
    ],
)
def test_plan_refuses_unsafe_or_clashing_names(names: list[str]) -> None:
    with pytest.raises(ValueError):
        plan_zip([ZipMember(n, 1, None) for n in names])


def test_plan_refuses_negative_sizes() -> None:
    with pytest.raises(ValueError):
        plan_zip([ZipMember("a", -1, None)])


def test_plan_accepts_nested_paths() -> None:
    layout = plan_zip([ZipMember("dir/a.txt", 1, None), ZipMember("dir/b.txt", 1, None)])
    assert len(layout) == 2


# --- zip64, checked without real data -------------------------------------------------


class LayoutView(io.RawIOBase):
    """A read-only file over a layout; big members read as zeros (CRC given)."""

    def __init__(self, layout: ZipLayout, small: dict[int, bytes], crcs: Sequence[int]) -> None:
        self.layout, self.small, self.crcs, self.pos = layout, small, crcs, 0
        self.central = layout.central_bytes(crcs)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.layout.total}[whence]
        self.pos = base + offset
        return self.pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        stop = min(self.pos + len(buffer), self.layout.total)
        if self.pos >= stop:
            return 0
        chunk = render(self.layout, self.pos, stop, self._data, self.crcs.__getitem__)
        buffer[: len(chunk)] = chunk
        self.pos += len(chunk)
        return len(chunk)

    def _data(self, i: int, skip: int, length: int) -> bytes:
        if i in self.small:
            return self.small[i][skip : skip + length]
        return bytes(length)


def _eocd(tail: bytes) -> tuple[int, int, int, int]:
    """(entries, cd_size, cd_offset, comment length) from the classic end record."""
    sig, _, _, _, entries, size, offset, comment = struct.unpack("<IHHHHIIH", tail[-22:])
    assert sig == 0x06054B50
    return entries, size, offset, comment


def _zip64_end(tail: bytes, total: int) -> tuple[int, int, int, int]:
    """(zip64 record offset, entries, cd_size, cd_offset) via the locator."""
    sig, disk, record_offset, disks = struct.unpack("<IIQI", tail[-42:-22])
    assert (sig, disk, disks) == (0x07064B50, 0, 1)
    rec = tail[-98:-42]
    fields = struct.unpack("<IQHHIIQQQQ", rec)
    assert fields[0] == 0x06064B50 and fields[1] == 44
    assert fields[6] == fields[7]
    assert record_offset == total - 98
    return record_offset, fields[7], fields[8], fields[9]


def test_zip64_for_a_5_gib_member() -> None:
    big = 5 * GiB
    tail_data = b"after the big one"
    members = [
        ZipMember("before.txt", 3, 1_700_000_000),
        ZipMember("big.bin", big, 1_700_000_000),
        ZipMember("after.txt", len(tail_data), None),
    ]
    layout = plan_zip(members)
    assert [layout.is_zip64(i) for i in range(3)] == [False, True, True]  # after: offset
    assert layout.header_offset(2) > 0xFFFFFFFF
    assert layout.zip64_end  # the central directory's offset overflows
    small = {0: b"abc", 2: tail_data}
    crcs = [zlib.crc32(b"abc"), 0x12345678, zlib.crc32(tail_data)]
    view = LayoutView(layout, small, crcs)
    with zipfile.ZipFile(io.BufferedReader(view, 1 << 16)) as zf:
        infos = zf.infolist()
        assert [(i.filename, i.file_size) for i in infos] == [(m.name, m.size) for m in members]
        assert [i.header_offset for i in infos] == [layout.header_offset(i) for i in range(3)]
        assert zf.read("before.txt") == b"abc"
        assert zf.read("after.txt") == tail_data  # local header found beyond 4 GiB
        with zf.open("big.bin") as f:
            assert f.read(16) == bytes(16)
    tail = view.central
    entries, cd_size, cd_offset, comment = _eocd(tail)
    assert (entries, cd_size, cd_offset, comment) == (3, layout.central_size, 0xFFFFFFFF, 0)
    record_offset, entries64, size64, offset64 = _zip64_end(tail, layout.total)
    assert (entries64, size64, offset64) == (3, layout.central_size, layout.central_offset)
    assert record_offset == layout.central_offset + layout.central_size
    # the big member's data descriptor has 8-byte sizes
    desc = layout.descriptor_bytes(1, 0x12345678)
    assert struct.unpack("<IIQQ", desc) == (0x08074B50, 0x12345678, big, big)
    assert layout.descriptor_offset(1) == layout.data_offset(1) + big
    assert layout.header_offset(2) == layout.descriptor_offset(1) + len(desc)


def test_no_zip64_just_below_the_limits() -> None:
    members = [ZipMember("a", 0xFFFFFFFE, None)]
    layout = plan_zip(members)
    assert not layout.is_zip64(0)
    assert len(layout.descriptor_bytes(0, 0)) == 16
    members = [ZipMember("a", 0xFFFFFFFF, None)]
    assert plan_zip(members).is_zip64(0)


def test_zip64_end_for_more_than_65535_entries() -> None:
    count = 65536
    members = [ZipMember(f"f{i}", i % 2, None) for i in range(count)]
    layout = plan_zip(members)
    assert layout.zip64_end
    assert not any(layout.is_zip64(i) for i in (0, count - 1))
    crcs = [zlib.crc32(b"x") if i % 2 else 0 for i in range(count)]
    tail = layout.central_bytes(crcs)
    assert len(tail) == layout.total - layout.central_offset
    entries, cd_size, cd_offset, _ = _eocd(tail)
    assert (entries, cd_size, cd_offset) == (0xFFFF, layout.central_size, layout.central_offset)
    _, entries64, size64, offset64 = _zip64_end(tail, layout.total)
    assert (entries64, size64, offset64) == (count, layout.central_size, layout.central_offset)
    view = LayoutView(layout, {i: b"x" for i in range(1, count, 2)}, crcs)
    with zipfile.ZipFile(io.BufferedReader(view, 1 << 16)) as zf:
        infos = zf.infolist()
        assert len(infos) == count
        assert infos[-1].filename == f"f{count - 1}"
        assert zf.read(infos[-1]) == b"x"
        assert infos[-1].header_offset == layout.header_offset(count - 1)


def test_65534_entries_need_no_zip64_end() -> None:
    layout = plan_zip([ZipMember(f"f{i}", 0, None) for i in range(0xFFFE)])
    assert not layout.zip64_end
    assert layout.total == layout.central_offset + layout.central_size + 22


# --- ETag -----------------------------------------------------------------------------


def test_manifest_etag() -> None:
    members = [ZipMember("a.txt", 1, 5), ZipMember("b.txt", 2, None)]
    validators = ['"e1"', "Wed, 21 Oct 2015 07:28:00 GMT"]
    tag = manifest_etag(members, validators)
    assert tag.startswith('"z-') and tag.endswith('"') and len(tag) == 2 + 2 + 32
    assert tag == manifest_etag(list(members), list(validators))
    variants = [
        ([ZipMember("a.txt", 1, 5), ZipMember("c.txt", 2, None)], validators),
        ([ZipMember("a.txt", 1, 5), ZipMember("b.txt", 3, None)], validators),
        ([ZipMember("a.txt", 1, 6), ZipMember("b.txt", 2, None)], validators),
        ([ZipMember("a.txt", 1, 5), ZipMember("b.txt", 2, 0)], validators),
        (members, ['"e2"', validators[1]]),
        (list(reversed(members)), validators),
        # field boundaries are unambiguous
        ([ZipMember("a.txt", 1, 5), ZipMember("b.txt", 2, None)], ['"e1", "x"']),
    ]
    tags = {manifest_etag(m, v) for m, v in variants}
    assert tag not in tags and len(tags) == len(variants)


def test_first_past_names_the_member_that_crosses_a_limit() -> None:
    layout = plan_zip([ZipMember("a", 10), ZipMember("b", 20), ZipMember("c", 5)])
    assert layout.first_past(layout.total) is None
    assert layout.first_past(layout.header_offset(1)) == 1  # a ends exactly there
    assert layout.first_past(layout.header_offset(1) - 1) == 0
    assert layout.first_past(layout.data_offset(2)) == 2
    assert layout.first_past(layout.central_offset) == 2  # only the central part is past
    huge = plan_zip([ZipMember("x", 2**62), ZipMember("y", 2**62)])
    assert huge.first_past(2**63 - 1) == 1


# --- the same checks and layout as the member-by-member original ----------------------


def _reference_check(members: Sequence[ZipMember]) -> None:
    """The checks of the first plan_zip, one member at a time, every segment each time."""
    seen: set[str] = set()
    directories: set[str] = set()
    for member in members:
        name = member.name
        if not name or len(name.encode("utf-8")) > 0xFFFF:
            raise ValueError(f"invalid member name {name!r}")
        for segment in name.split("/"):
            if not segment or safe_filename(segment, default="") != segment:
                raise ValueError(f"unsafe member name {name!r}")
        if member.size < 0:
            raise ValueError(f"negative size for {name!r}")
        key = name.casefold()
        if key in seen:
            raise ValueError(f"duplicate member name {name!r}")
        seen.add(key)
        parts = key.split("/")
        directories.update("/".join(parts[:j]) for j in range(1, len(parts)))
    clash = seen & directories
    if clash:
        raise ValueError(f"member names used as directories too: {sorted(clash)}")


def _reference_layout(
    members: Sequence[ZipMember],
) -> tuple[list[tuple[int, int, int, bool]], int]:
    """(header, data, descriptor offset, zip64) of every member, one at a time, and the
    central directory's size."""
    out = []
    offset = 0
    central_size = 0
    for m in members:
        is64 = m.size >= 0xFFFFFFFF or offset >= 0xFFFFFFFF
        name = len(m.name.encode("utf-8"))
        data = offset + plan._LOCAL_BASE + name + (plan._LOCAL_ZIP64_EXTRA if is64 else 0)
        out.append((offset, data, data + m.size, is64))
        fields = (2 if m.size >= 0xFFFFFFFF else 0) + (1 if offset >= 0xFFFFFFFF else 0)
        extra = plan._ZIP64_EXTRA_BASE + 8 * fields if fields else 0
        central_size += plan._CENTRAL_BASE + name + extra
        offset = data + m.size + (plan._DESCRIPTOR_ZIP64 if is64 else plan._DESCRIPTOR)
    return out, central_size


_NEAR_SEGMENTS = ["a", "A", "b", "dir", "DIR", "CON", "con.txt", "x ", " x", "x.", "", "é"]
_NEAR_SEGMENTS += ["e\u0301", "a:b", "\ud800", "ß", "SS", "a" * 256]


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.sampled_from(_NEAR_SEGMENTS), min_size=1, max_size=3).map("/".join),
            st.sampled_from([0, 1, 7, -1, 0xFFFFFFFE, 0xFFFFFFFF, 5 * GiB]),
        ),
        max_size=6,
    )
)
def test_plan_checks_and_lays_out_as_the_original(raw: list[tuple[str, int]]) -> None:
    members = [ZipMember(name, size, None) for name, size in raw]
    try:
        _reference_check(members)
    except ValueError as expected:
        with pytest.raises(type(expected)) as got:
            plan_zip(members)
        assert str(got.value) == str(expected)
        return
    layout = plan_zip(members)
    starts = [
        (layout.header_offset(i), layout.data_offset(i), layout.descriptor_offset(i))
        for i in range(len(layout))
    ]
    reference, central_size = _reference_layout(members)
    assert starts == [r[:3] for r in reference]
    assert [layout.is_zip64(i) for i in range(len(layout))] == [r[3] for r in reference]
    assert layout.central_size == central_size
    assert layout.total == ZipLayout(members).total
    assert layout.central_bytes([0] * len(members)) == ZipLayout(members).central_bytes(
        [0] * len(members)
    )


def test_each_directory_is_checked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def counting(name: str, default: str = "download") -> str:
        calls.append(name)
        return safe_filename(name, default)

    monkeypatch.setattr(plan, "safe_filename", counting)
    members = [ZipMember(f"top/d{d}/f{f}.txt", 1, None) for d in range(10) for f in range(100)]
    assert len(plan_zip(members)) == 1000
    assert len(calls) <= 1000 + 10 * 2  # not two or three calls per member
    with pytest.raises(ValueError, match="unsafe member name 'top/d9/CON'"):
        plan_zip([*members, ZipMember("top/d9/CON", 1, None)])


@pytest.mark.parametrize("past", [-17, -16, -1, 0, 1, 15, 16, 17])
def test_zip64_from_the_first_header_at_the_limit(past: int) -> None:
    # member "a": its descriptor (16 bytes) ends `past` bytes after 0xFFFFFFFF, so the
    # limit falls in its data, in its descriptor, or exactly at the next header
    size = 0xFFFFFFFF - (plan._LOCAL_BASE + 1) - plan._DESCRIPTOR + past
    members = [ZipMember("a", size, None), ZipMember("b", 3, None), ZipMember("c", 0, None)]
    layout = plan_zip(members)
    reference, central_size = _reference_layout(members)
    assert [layout.header_offset(i) for i in range(3)] == [r[0] for r in reference]
    assert [layout.is_zip64(i) for i in range(3)] == [r[3] for r in reference]
    assert layout.central_size == central_size
    assert layout.is_zip64(1) == (layout.header_offset(1) >= 0xFFFFFFFF)


def test_crcs_before_data_are_the_leading_descriptors_or_every_member() -> None:
    layout = plan_zip([ZipMember("a", 3), ZipMember("b", 0), ZipMember("c", 4)])
    assert layout.crcs_before_data(0, layout.total) == []  # a header, then data
    first_descriptor = layout.descriptor_offset(0)
    # b is empty: a's descriptor, b's header and descriptor, then c's header and data
    assert layout.crcs_before_data(first_descriptor, layout.total) == [0, 1]
    assert layout.crcs_before_data(layout.data_offset(2), layout.total) == []
    end = layout.descriptor_offset(2)
    assert layout.crcs_before_data(end, layout.total) == [2, 0, 1]  # then the central part
    assert layout.crcs_before_data(layout.central_offset, layout.total) == [0, 1, 2]
