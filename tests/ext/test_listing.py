"""``scan_directory``: both twins agree on real directories, and a name they call plain
is one ``safe_filename`` keeps (so entries built in C are named as Python would)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from slipstream.ext._listing_py import PlainRule, is_plain
from slipstream.filenames import (
    DEVICE_PREFIXES,
    PART_SUFFIX,
    PLAIN_BYTES,
    is_part_file,
    safe_filename,
)
from tests.helpers.twins import load_twin

pytestmark = pytest.mark.twins
"""Each twin is loaded by name, whatever twin the environment selected: run once, in the
first pass of ``make pytest`` (see the README, "The compiled extension and its twins")."""

RULE = PlainRule(PLAIN_BYTES, DEVICE_PREFIXES, PART_SUFFIX.encode("ascii"))


@pytest.fixture
def ls(twin_kind: str) -> ModuleType:
    """The ``listing`` twin of this parametrisation."""
    return load_twin("listing", twin_kind)


def both(path: Path, prefix: str = "p/", where: str | None = None) -> tuple[Any, Any]:
    """The two twins' scans of ``path``, each list sorted (the same directory order
    either way, but a test need not rely on it)."""
    scans = []
    for kind in ("py", "c"):
        found = load_twin("listing", kind).scan_directory(
            str(path), prefix, "/base/", where, {}, RULE
        )
        scans.append(tuple(sorted(part) for part in found))
    return scans[0], scans[1]


def test_compiled_twin_is_an_extension_module() -> None:
    c = load_twin("listing", "c")
    assert c.__file__ is not None
    assert c.__file__.endswith(".so")


# ------------------------------------------------------------------- plain names

NAMES = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=12),
    st.text(min_size=1, max_size=12).filter(lambda n: "/" not in n and "\0" not in n),
    st.sampled_from(["con", "Con.txt", "lpt1", "comma", "nul.", "a.part", "x ", " x", "."]),
)


@given(NAMES)
@example("a" * 255)
@example("a" * 256)
@example(".0123abcd-0000-0000-0000-000000000000.part")
def test_a_plain_name_is_one_safe_filename_keeps(name: str) -> None:
    raw = os.fsencode(name)
    if is_plain(raw, RULE):
        assert safe_filename(name) == name
        assert not is_part_file(name)
        assert raw.isascii()


@given(NAMES.filter(lambda n: "/" not in n and "\0" not in n and n not in (".", "..")))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)
def test_twins_agree_on_which_names_are_plain(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "plain"
    folder.mkdir(exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    path = folder / name
    assert path.parent == folder  # one path component: never a file outside the folder
    try:
        path.write_bytes(b"x")
    except (OSError, ValueError):  # not a valid file name here ("." and the like)
        return
    py, c = both(folder)
    assert py == c
    _, plain, others = py
    assert len(plain) + len(others) == 1
    assert bool(plain) == is_plain(os.fsencode(name), RULE)


# ------------------------------------------------------------------- what is listed


def test_files_directories_and_what_is_left_out(ls: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_bytes(b"abc")
    (tmp_path / "b:c").write_bytes(b"12345")
    (tmp_path / "unreadable").write_bytes(b"")
    (tmp_path / "unreadable").chmod(0)
    (tmp_path / "link").symlink_to("a.txt")
    (tmp_path / "dirlink").symlink_to("sub")
    os.mkfifo(tmp_path / "fifo")
    os.utime(tmp_path / "a.txt", ns=(0, 1_600_000_000_999_999_999))
    found = ls.scan_directory(str(tmp_path), "top/", "/base/", None, {}, RULE)
    assert found.directories == ["sub"]
    st_a = os.lstat(tmp_path / "a.txt")
    assert found.entries == [
        ("top/a.txt", "/base/", None, st_a.st_dev, st_a.st_ino, 3, st_a.st_mtime_ns, 1600000001)
    ]
    st_b = os.lstat(tmp_path / "b:c")
    assert found.others == [
        ("b:c", st_b.st_dev, st_b.st_ino, 5, st_b.st_mtime_ns, int(st_b.st_mtime))
    ]


def test_where_names_the_file_when_given(ls: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    found = ls.scan_directory(str(tmp_path), "x/", "/b/", "/real/dir/", {}, RULE)
    assert [entry[:3] for entry in found.entries] == [("x/f", "/b/", "/real/dir/f")]


@pytest.mark.parametrize(
    "mtime_ns",
    [
        0,
        1,
        999_999_999,
        1_700_000_000_123_456_789,
        1_700_000_000_999_999_999,  # st_mtime rounds up to the next second
        -1,
        -1_500_000_001,
        -(10**9),
        2**62,
    ],
)
def test_mtimes_are_as_os_stat_gives_them(tmp_path: Path, mtime_ns: int) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"")
    os.utime(path, ns=(0, mtime_ns))  # all within ext4's and tmpfs's range
    expected = os.lstat(path)
    py, c = both(tmp_path)
    assert py == c
    (entry,) = c[1]
    assert entry[6:] == (expected.st_mtime_ns, int(expected.st_mtime))


def test_equal_numbers_are_shared(ls: ModuleType, tmp_path: Path) -> None:
    for n in range(5):
        (tmp_path / f"f{n}").write_bytes(b"x" * 100_000)
        os.utime(tmp_path / f"f{n}", (1_700_000_000, 1_700_000_000))
    shared: dict[int, int] = {}
    found = ls.scan_directory(str(tmp_path), "", "/b/", None, shared, RULE)
    assert len({id(entry[5]) for entry in found.entries}) == 1  # size
    assert len({id(entry[7]) for entry in found.entries}) == 1  # mtime
    assert len({id(entry[3]) for entry in found.entries}) == 1  # dev
    again = ls.scan_directory(str(tmp_path), "", "/b/", None, shared, RULE)
    assert again.entries[0][5] is found.entries[0][5]


def test_a_directory_that_cannot_be_read(ls: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ls.scan_directory(str(tmp_path / "gone"), "", "/b/", None, {}, RULE)
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        ls.scan_directory(str(tmp_path / "file"), "", "/b/", None, {}, RULE)
    with pytest.raises(ValueError, match="null"):
        ls.scan_directory(str(tmp_path) + "\0x", "", "/b/", None, {}, RULE)


def test_an_undecodable_name_round_trips(tmp_path: Path) -> None:
    raw = os.fsencode(str(tmp_path)) + b"/caf\xe9"
    with open(raw, "wb"):
        pass
    py, c = both(tmp_path)
    assert py == c
    assert c[2][0][0] == "caf\udce9"
    assert os.fsencode(c[2][0][0]) == b"caf\xe9"


@given(
    st.lists(
        st.tuples(
            st.text(
                st.characters(min_codepoint=0x20, max_codepoint=0x2FF), min_size=1, max_size=8
            ).filter(lambda n: "/" not in n and n not in (".", "..")),
            st.sampled_from(["file", "dir", "link", "empty", "private"]),
        ),
        max_size=12,
        unique_by=lambda item: item[0],
    )
)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=40)
def test_twins_agree_on_a_directory(tmp_path: Path, items: list[tuple[str, str]]) -> None:
    folder = tmp_path / "tree"
    if folder.exists():
        for path in sorted(folder.rglob("*"), reverse=True):
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink()
        folder.rmdir()
    folder.mkdir()
    for name, kind in items:
        path = folder / name
        try:
            if kind == "dir":
                path.mkdir()
            elif kind == "link":
                path.symlink_to("elsewhere")
            else:
                path.write_bytes(b"" if kind == "empty" else name.encode())
                if kind == "private":
                    path.chmod(stat.S_IWUSR)
        except OSError:  # a name two of them share on this filesystem
            continue
    py, c = both(folder)
    assert py == c
    py, c = both(folder, prefix="", where=str(folder) + "/")
    assert py == c
