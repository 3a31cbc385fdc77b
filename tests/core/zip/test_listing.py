"""``slipstream.zip.listing``: which files a directory zip holds, named and ordered how.

No server: the lister is blocking and pure apart from reading the tree.  The reference
is the first implementation (``os.walk``, ``lstat`` and ``relpath`` per file), kept
below: the fast one must give the same entries on any tree.
"""

from __future__ import annotations

import os
import stat as stat_mod
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import slipstream.zip.listing as listing
from slipstream.digests import FileKey
from slipstream.filenames import deduplicate, is_part_file, part_name, safe_filename
from slipstream.zip.listing import LocalEntry, list_entries
from slipstream.zip.plan import ZipMember, manifest_etag, plan_zip

JOB = "0b4a5e0c-1d2e-4f3a-8b9c-0123456789ab"

Row = tuple[str, str, int, int, int, int, int]


def reference(directory: str, hidden: Sequence[str] = ()) -> list[Row]:
    """The entries of the first lister, as (name, path, dev, ino, size, mtime_ns, mtime)."""
    hidden_real = [os.path.realpath(h) for h in hidden]
    found: list[tuple[str, str, os.stat_result]] = []
    for top, dirs, files in os.walk(directory, followlinks=False):
        if any(top == h or top.startswith(h + os.sep) for h in hidden_real):
            dirs[:] = []
            continue
        dirs.sort()
        for name in sorted(files):
            if is_part_file(name):
                continue
            path = os.path.join(top, name)
            st = os.lstat(path)
            if stat_mod.S_ISREG(st.st_mode) and st.st_mode & 0o444:
                relative = os.path.relpath(path, directory).split(os.sep)
                found.append(("/".join(safe_filename(s) for s in relative), path, st))
    found.sort(key=lambda item: item[0])
    names = deduplicate([name for name, _, _ in found])
    return [
        (n, p, s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns, int(s.st_mtime))
        for n, (_, p, s) in zip(names, found, strict=True)
    ]


def rows(entries: Sequence[LocalEntry]) -> list[Row]:
    return [(e.name, e.path, e.dev, e.ino, e.size, e.mtime_ns, e.mtime) for e in entries]


def write(path: Path, data: bytes = b"x", mode: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mode is not None:
        path.chmod(mode)
    return path


# --- selection, names, order -----------------------------------------------------------


def test_readable_regular_files_only(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", b"abc")
    write(tmp_path / "sub" / "b.bin", b"")
    write(tmp_path / "write-only", mode=0o200)  # no read bit: skipped
    write(tmp_path / "owner-read", mode=0o400)
    write(tmp_path / f".{JOB}.part")  # a running download
    write(tmp_path / "sub" / part_name(JOB))
    write(tmp_path / "notes.part")  # an ordinary name
    (tmp_path / "link-to-file").symlink_to(tmp_path / "a.txt")
    (tmp_path / "link-to-dir").symlink_to(tmp_path / "sub")
    (tmp_path / "broken").symlink_to(tmp_path / "nowhere")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "empty-dir").mkdir()
    entries = list_entries(str(tmp_path))
    assert [e.name for e in entries] == ["a.txt", "notes.part", "owner-read", "sub/b.bin"]
    assert rows(entries) == reference(str(tmp_path))
    first = entries[0]
    st = os.lstat(tmp_path / "a.txt")
    assert first.path == str(tmp_path / "a.txt")
    assert (first.dev, first.ino, first.size, first.mtime_ns) == (
        st.st_dev,
        st.st_ino,
        3,
        st.st_mtime_ns,
    )
    assert first.version() == (st.st_dev, st.st_ino, 3, st.st_mtime_ns)
    assert first.key() == FileKey.from_stat(st)


def test_names_are_safe_sorted_and_unique(tmp_path: Path) -> None:
    write(tmp_path / "b.txt")
    write(tmp_path / "A.TXT")
    write(tmp_path / "a.txt")
    write(tmp_path / "CON" / "x.")
    write(tmp_path / "what?" / "is:this")
    write(tmp_path / "what_" / "is_this")
    write(tmp_path / "e\u0301.txt")  # NFD: the same name as é.txt once normalised
    write(tmp_path / "\u00e9.txt")
    entries = list_entries(str(tmp_path))
    names = [e.name for e in entries]
    assert names == [
        "A.TXT",
        "_CON/x",
        "a (1).txt",
        "b.txt",
        "what_/is_this",
        "what_/is_this (1)",
        "\u00e9.txt",
        "\u00e9 (1).txt",
    ]
    # equal names are numbered in raw path order: "what?" sorts before "what_"
    by_name = {e.name: e.path for e in entries}
    assert by_name["what_/is_this"] == str(tmp_path / "what?" / "is:this")
    assert by_name["\u00e9.txt"] == str(tmp_path / "e\u0301.txt")
    assert rows(entries) == reference(str(tmp_path))


def test_equal_names_are_numbered_in_raw_path_order(tmp_path: Path) -> None:
    variants = ["x:1", "x?1", "x*1", "x<1", "x>1", "x|1", 'x"1', "x_1"]  # all x_1
    for name in variants:
        write(tmp_path / "same-dir" / name)
        write(tmp_path / name / "f")
    entries = list_entries(str(tmp_path))
    raw = sorted(variants)
    expected = [("same-dir/x_1", str(tmp_path / "same-dir" / raw[0]))]
    expected += [(f"same-dir/x_1 ({n})", str(tmp_path / "same-dir" / raw[n])) for n in range(1, 8)]
    expected += [("x_1/f", str(tmp_path / raw[0] / "f"))]
    expected += [(f"x_1/f ({n})", str(tmp_path / raw[n] / "f")) for n in range(1, 8)]
    assert [(e.name, e.path) for e in entries] == expected
    assert rows(entries) == reference(str(tmp_path))


def test_hidden_directories_are_left_out(tmp_path: Path) -> None:
    write(tmp_path / "keep" / "a")
    write(tmp_path / ".slipstream" / "zip.sqlite3")
    write(tmp_path / "keep" / "state" / "deep" / "b")
    write(tmp_path / "keep" / "stateful" / "c")  # a sibling sharing the prefix stays
    (tmp_path / "alias").symlink_to(tmp_path / "keep" / "state")
    hidden = [str(tmp_path / ".slipstream"), str(tmp_path / "alias")]  # real paths taken
    entries = list_entries(str(tmp_path), hidden)
    assert [e.name for e in entries] == ["keep/a", "keep/stateful/c"]
    assert rows(entries) == reference(str(tmp_path), hidden)
    assert list_entries(str(tmp_path / "keep" / "state"), hidden) == []


def test_a_missing_or_unreadable_directory_lists_nothing(tmp_path: Path) -> None:
    assert list_entries(str(tmp_path / "missing")) == []
    write(tmp_path / "file")
    assert list_entries(str(tmp_path / "file")) == []


def test_each_directory_name_is_made_safe_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for d in range(3):
        for f in range(20):
            write(tmp_path / f"d{d}" / "inner" / f"f{f}")
    calls: list[str] = []

    def counting(name: str, default: str = "download") -> str:
        calls.append(name)
        return safe_filename(name, default)

    monkeypatch.setattr(listing, "safe_filename", counting)
    entries = list_entries(str(tmp_path))
    assert len(entries) == 60
    assert len(calls) == 3 + 3  # each directory once; plain file names never


# --- mtime: exactly int(st_mtime), as the zip's timestamps and ETag always used ----------


@pytest.mark.parametrize(
    "mtime_ns",
    [
        1_700_000_000_000_000_000,
        1_700_000_000_999_999_999,  # st_mtime rounds up to ...001.0
        1_700_000_000_999_999_000,
        1_700_000_000_999_999_880,
        1_700_000_000_999_999_900,
        1_000_000_000,
        999_999_999,
        0,
        -1,  # 1969: int() truncates toward zero
        -1_500_000_000,
        -2_000_000_000,
        4_102_444_800_999_999_999,  # 2100
    ],
)
def test_mtime_is_int_of_st_mtime(tmp_path: Path, mtime_ns: int) -> None:
    path = write(tmp_path / "f")
    os.utime(path, ns=(mtime_ns, mtime_ns))
    [entry] = list_entries(str(tmp_path))
    st = os.lstat(path)
    assert entry.mtime_ns == st.st_mtime_ns == mtime_ns
    assert entry.mtime == int(st.st_mtime)


# --- the same entries as the first implementation, on random trees -----------------------

_SEGMENTS = ["a", "A", "b", "a:b", "a_b", "CON", "con.txt", "x.", " y", "e\u0301", "\u00e9"]
_SEGMENTS += [f".{JOB}.part", "z.part", "a.txt", "A.txt", "a (1).txt"]

_KINDS = ["file", "file", "file", "empty", "unreadable", "symlink", "dir"]


@st.composite
def trees(draw: st.DrawFn) -> list[tuple[tuple[str, ...], str]]:
    """Up to 12 nodes: a path of 1-3 segments and what to create there."""
    paths = st.lists(st.sampled_from(_SEGMENTS), min_size=1, max_size=3).map(tuple)
    return draw(st.lists(st.tuples(paths, st.sampled_from(_KINDS)), max_size=12))


def _build(root: Path, tree: list[tuple[tuple[str, ...], str]]) -> None:
    for index, (segments, kind) in enumerate(tree):
        path = root.joinpath(*segments)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if kind == "dir":
                path.mkdir(exist_ok=True)
            elif kind == "symlink":
                path.symlink_to(root / segments[0])
            else:
                data = b"" if kind == "empty" else bytes(index + 1)
                path.write_bytes(data)
                os.utime(path, ns=(0, 1_700_000_000_000_000_000 + index * 999_999_937))
                if kind == "unreadable":
                    path.chmod(0o200)
        except OSError:  # the path is taken by another kind of node: keep the first
            continue


@settings(max_examples=150, deadline=None)
@given(trees(), st.booleans())
def test_same_entries_as_the_first_lister(
    tree: list[tuple[tuple[str, ...], str]], hide_a: bool
) -> None:
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        _build(root, tree)
        hidden = [str(root / "a")] if hide_a else []
        entries = list_entries(str(root), hidden)
        assert rows(entries) == reference(str(root), hidden)


def test_entries_are_members_of_a_plan_as_they_are(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", b"abc")
    write(tmp_path / "d" / "b", b"")
    os.utime(tmp_path / "a.txt", ns=(0, 1_700_000_000_999_999_999))
    entries = list_entries(str(tmp_path))
    members = [ZipMember(e.name, e.size, e.mtime) for e in entries]
    direct, copied = plan_zip(entries), plan_zip(members)
    assert direct.total == copied.total
    assert [direct.header_bytes(i) for i in range(2)] == [copied.header_bytes(i) for i in range(2)]
    assert direct.central_bytes([1, 2]) == copied.central_bytes([1, 2])
    assert manifest_etag(entries, ["v"]) == manifest_etag(members, ["v"])
