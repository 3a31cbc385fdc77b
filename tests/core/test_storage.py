"""Storage layers: traversal corpus against a real LocalStorage, behaviour of both layers
(each layer alone: ``test_storage_layers.py``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slipstream.errors import FileNotFound, IsADirectory, PathNotAllowed
from slipstream.segments import FileSlice, Literal
from slipstream.storage import (
    DirEntry,
    LocalOpenFile,
    LocalStorage,
    MemoryStorage,
    OpenFile,
    Storage,
)
from tests.helpers.fds import open_fd_count

SECRET = b"TOP SECRET: outside the base"
STATE_SECRET = b"TOP SECRET: server state"
STATE_DIR = ".slipstream-state"


def read_all(f: OpenFile) -> bytes:
    """The whole content of an open file, whatever kind of segment it gives."""
    seg = f.segment()
    if isinstance(seg, FileSlice):
        return os.pread(seg.source.fileno(), seg.length, seg.offset)
    assert isinstance(seg, Literal)
    return bytes(seg.data)


# --- the traversal corpus ------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """tmp/secret.txt, tmp/root/secret.txt, tmp/root/base/... (the base)."""
    (tmp_path / "secret.txt").write_bytes(SECRET)
    root = tmp_path / "root"
    root.mkdir()
    (root / "secret.txt").write_bytes(SECRET)
    base = root / "base"
    base.mkdir()
    state = base / STATE_DIR
    state.mkdir()
    (state / "state.db").write_bytes(STATE_SECRET)
    # Legitimate content.
    (base / "with space.txt").write_bytes(b"space")
    (base / "café.txt").write_bytes(b"cafe")
    (base / "100%.txt").write_bytes(b"percent")
    (base / "a..b.txt").write_bytes(b"dots")
    (base / ".hidden").write_bytes(b"dotfile")
    (base / "nested" / "deep").mkdir(parents=True)
    (base / "nested" / "deep" / "file.txt").write_bytes(b"deep")
    (base / "sub").mkdir()
    # Symlinks that stay inside the base.
    (base / "inside_link").symlink_to("nested/deep/file.txt")
    (base / "inside_dir_link").symlink_to("nested")
    (base / "sub" / "up_link").symlink_to("../a..b.txt")
    # Symlinks that leave the base or point into the hidden state dir.
    (base / "escape_link").symlink_to("../secret.txt")
    (base / "escape_abs_link").symlink_to(tmp_path / "secret.txt")
    (base / "escape_dir").symlink_to(root)
    (base / "sub" / "hop").symlink_to("../../../secret.txt")
    (base / "chain_link").symlink_to("sub/hop")
    (base / "state_link").symlink_to(f"{STATE_DIR}/state.db")
    (base / "state_dir_link").symlink_to(STATE_DIR)
    (base / "loop_link").symlink_to("loop_link")
    return tmp_path


def local_storage(tree: Path) -> LocalStorage:
    base = tree / "root" / "base"
    return LocalStorage(base, hidden=[base / STATE_DIR])


LONG = "a/" * 100 + "../" * 101 + "secret.txt"
CORPUS = [
    # plain and backslash traversal
    "../secret.txt",
    "../../secret.txt",
    "../" * 12 + "etc/passwd",
    "sub/../../secret.txt",
    "sub/./../../secret.txt",
    "./../secret.txt",
    "..\\secret.txt",
    "sub\\..\\..\\secret.txt",
    "..\\..\\secret.txt",
    "....//secret.txt",
    "....//....//secret.txt",
    "..././secret.txt",
    ".../secret.txt",
    # absolute, drive letters, UNC
    "/etc/passwd",
    "//etc/passwd",
    "\\etc\\passwd",
    "C:\\Windows\\win.ini",
    "C:/secret.txt",
    "c:..\\secret.txt",
    "\\\\server\\share\\secret.txt",
    "//server/share/secret.txt",
    "\\\\?\\C:\\secret.txt",
    "\\\\.\\pipe\\x",
    # percent-encoded, mixed case, double and triple encoded
    "%2e%2e/secret.txt",
    "%2E%2E/secret.txt",
    "%2e%2E%2fsecret.txt",
    "%2e%2e%2f%2e%2e%2fsecret.txt",
    "..%2fsecret.txt",
    "..%5csecret.txt",
    "%2e%2e%5csecret.txt",
    "%2fetc%2fpasswd",
    "sub/..%2f..%2fsecret.txt",
    "%252e%252e%252fsecret.txt",
    "..%252fsecret.txt",
    "%2e%2e%252fsecret.txt",
    "%25252e%25252e%25252fsecret.txt",
    "%2525252e%2525252e%2525252fsecret.txt",
    # overlong / invalid UTF-8
    "%c0%ae%c0%ae/secret.txt",
    "..%c0%afsecret.txt",
    "..%c1%9csecret.txt",
    "%e0%80%ae%e0%80%ae/secret.txt",
    "%f0%80%80%ae%f0%80%80%ae/secret.txt",
    "%c0%2e%c0%2e/secret.txt",
    "..%c0%2fsecret.txt",
    "%ed%a0%80/../secret.txt",
    # Unicode lookalikes
    "\uff0e\uff0e/secret.txt",
    "\u2024\u2024/secret.txt",
    "\u2025/secret.txt",
    "\ufe52\ufe52/secret.txt",
    "..\uff0fsecret.txt",
    "\uff0e\uff0e\uff0fsecret.txt",
    "%ef%bc%8e%ef%bc%8e/secret.txt",
    "\uff05\uff12\uff45\uff05\uff12\uff45/secret.txt",
    # NUL and control characters, lone surrogates
    "../secret.txt\x00.png",
    "../secret.txt%00.png",
    "%00../secret.txt",
    "\x00",
    "..\x00/secret.txt",
    "../secret.txt\n",
    "\ud800/../secret.txt",
    # trailing dots / spaces (Windows trims them), stream names
    ".. /secret.txt",
    "..%20/secret.txt",
    "..%2e/secret.txt",
    ". ./secret.txt",
    "secret.txt.",
    "secret.txt::$DATA",
    "../secret.txt.",
    "..;/secret.txt",
    # very long paths
    LONG,
    "a/" * 3000 + "../secret.txt",
    "x" * 300 + "/../../secret.txt",
    "x" * 300,
    # symlinks leaving the base, loops, and the hidden state dir
    "escape_link",
    "escape_abs_link",
    "escape_dir/secret.txt",
    "escape_dir",
    "sub/hop",
    "chain_link",
    "loop_link",
    "state_link",
    "state_dir_link/state.db",
    f"{STATE_DIR}/state.db",
    f"./{STATE_DIR}/state.db",
    f"{STATE_DIR}",
    f"nested/../{STATE_DIR}/state.db",
]


def test_corpus_is_large_and_aimed(tree: Path) -> None:
    """The corpus is big enough, and its simplest payloads do reach the secret naively."""
    assert len(CORPUS) >= 60
    base = tree / "root" / "base"
    for payload in ("../secret.txt", "../../secret.txt", "escape_link", "escape_dir/secret.txt"):
        assert (base / payload).read_bytes() == SECRET
    assert (base / "state_link").read_bytes() == STATE_SECRET


@pytest.mark.parametrize("payload", CORPUS)
def test_traversal_corpus_never_leaks(tree: Path, payload: str) -> None:
    storage = local_storage(tree)
    before = open_fd_count()
    with pytest.raises((PathNotAllowed, FileNotFound)) as info:
        leaked = storage.open(payload)
        # Only reached on failure: show what leaked.
        content = read_all(leaked)
        leaked.close()
        pytest.fail(f"{payload!r} opened a file: {content[:40]!r}")
    assert open_fd_count() == before
    # Messages show the client's path at most, never the server's.
    assert str(tree) not in info.value.message
    with pytest.raises((PathNotAllowed, FileNotFound)):
        storage.stat(payload)


@pytest.mark.parametrize(
    ("path", "content"),
    [
        ("with space.txt", b"space"),
        ("café.txt", b"cafe"),
        ("100%.txt", b"percent"),
        ("a..b.txt", b"dots"),
        (".hidden", b"dotfile"),
        ("nested/deep/file.txt", b"deep"),
        ("./nested//deep/file.txt", b"deep"),
        ("nested\\deep\\file.txt", b"deep"),
        ("inside_link", b"deep"),
        ("inside_dir_link/deep/file.txt", b"deep"),
        ("sub/up_link", b"dots"),
    ],
)
def test_legit_names_work(tree: Path, path: str, content: bytes) -> None:
    with local_storage(tree).open(path) as f:
        assert read_all(f) == content
        assert f.name == path.replace("\\", "/").rsplit("/", 1)[-1]


def test_listing_hides_escapes_and_state(tree: Path) -> None:
    names = [e.name for e in local_storage(tree).list_dir("")]
    assert names == sorted(names)
    for hidden in ("escape_link", "escape_abs_link", "escape_dir", "chain_link", "loop_link"):
        assert hidden not in names
    for hidden in (STATE_DIR, "state_link", "state_dir_link"):
        assert hidden not in names
    for shown in ("café.txt", "inside_link", "inside_dir_link", "nested", ".hidden"):
        assert shown in names
    with pytest.raises(FileNotFound):
        local_storage(tree).list_dir(STATE_DIR)
    with pytest.raises(PathNotAllowed):
        local_storage(tree).list_dir("escape_dir")
    with pytest.raises(PathNotAllowed):
        local_storage(tree).list_dir("..")


def test_listing_hides_running_downloads(tree: Path) -> None:
    part = ".0d7c4a52-2f8e-4c4f-9d2e-3b1f5e6a7b8c.part"  # a download job's file in progress
    base = tree / "root" / "base"
    (base / part).write_bytes(b"half a file")
    (base / ".not-a-job.part").write_bytes(b"an ordinary dotfile")
    names = [e.name for e in local_storage(tree).list_dir("")]
    assert part not in names
    assert ".not-a-job.part" in names


def test_swapped_directory_is_caught_after_open(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If resolution is fooled (a race), the check on the opened descriptor still refuses."""
    storage = local_storage(tree)
    monkeypatch.setattr(os.path, "realpath", lambda p: os.path.normpath(p))
    before = open_fd_count()
    with pytest.raises(PathNotAllowed):
        storage.open("escape_dir/secret.txt")
    with pytest.raises(FileNotFound):
        storage.open("state_dir_link/state.db")
    assert open_fd_count() == before


# --- behaviour of both layers ----------------------------------------------------------------

FILES = {
    "hello.txt": b"hello world",
    "sub/inner.txt": b"inner",
    "sub/deeper/x.bin": bytes(range(256)) * 4,
    "empty.txt": b"",
}


@pytest.fixture(params=["local", "memory"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "memory":
        mem = MemoryStorage()
        for path, data in FILES.items():
            mem.put(path, data)
        return mem
    base = tmp_path / "base"
    for path, data in FILES.items():
        (base / path).parent.mkdir(parents=True, exist_ok=True)
        (base / path).write_bytes(data)
    return LocalStorage(base)


def test_open_reads_content(storage: Storage) -> None:
    for path, data in FILES.items():
        with storage.open(path) as f:
            assert read_all(f) == data
            assert f.stat.size == len(data)
            assert f.path == path
            assert f.name == path.rsplit("/", 1)[-1]


def test_segment_ranges(storage: Storage) -> None:
    with storage.open("sub/deeper/x.bin") as f:
        whole = FILES["sub/deeper/x.bin"]
        seg = f.segment(10, 20)
        assert seg.length == 20
        if isinstance(seg, FileSlice):
            assert isinstance(f, LocalOpenFile)
            assert seg.source is f and seg.offset == 10
            assert os.pread(f.fileno(), 20, 10) == whole[10:30]
        else:
            assert isinstance(seg, Literal)
            assert bytes(seg.data) == whole[10:30]
        assert f.segment(1000).length == len(whole) - 1000
        assert f.segment(len(whole)).length == 0
        for bad in ((-1, 1), (0, len(whole) + 1), (len(whole), 1), (5, -2)):
            with pytest.raises(ValueError):
                f.segment(*bad)


def test_missing(storage: Storage) -> None:
    for path in ("nope.txt", "sub/nope.txt", "nope/inner.txt", "hello.txt/x"):
        with pytest.raises(FileNotFound) as info:
            storage.open(path)
        assert info.value.message == f"file not found at {path}"
        assert info.value.status == 404
        with pytest.raises(FileNotFound):
            storage.stat(path)


def test_directory(storage: Storage) -> None:
    for path in ("sub", "sub/", "sub/deeper", ".", "./sub/."):
        with pytest.raises(IsADirectory) as info:
            storage.open(path)
        assert info.value.message == f"{path} is a directory and not a file"


def test_traversal_refused(storage: Storage) -> None:
    for path in ("../hello.txt", "sub/../../x", "%2e%2e/x", "/hello.txt", ""):
        with pytest.raises(PathNotAllowed):
            storage.open(path)


def test_close_is_idempotent_and_final(storage: Storage) -> None:
    f = storage.open("hello.txt")
    assert f.segment().length == len(FILES["hello.txt"])
    f.close()
    f.close()
    assert f.closed
    with pytest.raises(ValueError):
        f.segment()
    with storage.open("hello.txt") as g:
        pass
    assert g.closed


def test_etag_changes_on_rewrite(storage: Storage, tmp_path: Path) -> None:
    first = storage.stat("hello.txt")
    assert storage.stat("hello.txt") == first  # stable while unchanged
    if isinstance(storage, MemoryStorage):
        storage.put("hello.txt", b"hello again, longer")
    else:
        path = tmp_path / "base" / "hello.txt"
        path.write_bytes(b"hello again, longer")
        os.utime(path, ns=(first.mtime_ns + 10**9, first.mtime_ns + 10**9))
    second = storage.stat("hello.txt")
    assert second.etag != first.etag
    assert second.size == len(b"hello again, longer")
    for etag in (first.etag, second.etag):
        assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")


def test_list_dir(storage: Storage) -> None:
    root = storage.list_dir("")
    assert [(e.name, e.is_dir) for e in root] == [
        ("empty.txt", False),
        ("hello.txt", False),
        ("sub", True),
    ]
    assert root[1].size == len(FILES["hello.txt"])
    assert root[2].size == 0
    assert storage.list_dir(".") == root
    sub = storage.list_dir("sub")
    assert [(e.name, e.is_dir, e.size) for e in sub] == [
        ("deeper", True, 0),
        ("inner.txt", False, 5),
    ]
    assert all(isinstance(e, DirEntry) for e in sub)
    with pytest.raises(FileNotFound):
        storage.list_dir("nope")
    with pytest.raises(FileNotFound):
        storage.list_dir("hello.txt")
    with pytest.raises(PathNotAllowed):
        storage.list_dir("../x")
