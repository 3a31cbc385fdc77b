"""``slipstream.privatefiles``: owner-only state dirs and SQLite files, without a server."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from slipstream.privatefiles import private_dir, private_sqlite

pytestmark = pytest.mark.usefixtures("loose_umask")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_new_database_and_the_files_sqlite_adds_are_0600(tmp_path: Path) -> None:
    path = tmp_path / "new" / "store.sqlite3"
    private_sqlite(path)
    assert mode(path.parent) == 0o700 and mode(path) == 0o600
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (x)")
    db.execute("INSERT INTO t VALUES (1)")
    sidecars = [p for p in tmp_path.joinpath("new").iterdir() if p != path]
    assert {p.name for p in sidecars} == {"store.sqlite3-wal", "store.sqlite3-shm"}
    assert all(mode(p) == 0o600 for p in sidecars)
    db.close()


def test_existing_database_is_tightened_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (x)")
    db.execute("INSERT INTO t VALUES (42)")
    db.commit()
    db.close()
    journal = tmp_path / "old.sqlite3-journal"
    journal.write_bytes(b"")
    for file in (path, journal):
        file.chmod(0o664)
    private_sqlite(path)
    assert mode(path) == 0o600 and mode(journal) == 0o600
    assert sqlite3.connect(path).execute("SELECT x FROM t").fetchall() == [(42,)]


def test_symlinks_are_not_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("someone else's\n")
    elsewhere.chmod(0o644)
    state = tmp_path / "state"
    state.mkdir()
    (state / "link.sqlite3").symlink_to(elsewhere)
    (state / "link.txt").symlink_to(elsewhere)
    private_sqlite(state / "link.sqlite3")
    private_dir(state)
    assert mode(elsewhere) == 0o644


def test_private_dir_tightens_dir_and_files_only_one_level(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "sub").mkdir(parents=True)
    (state / "sub" / "inner.txt").write_text("x")
    (state / "token").write_text("t\n")
    (state / "run.sh").write_text("#!/bin/sh\n")
    (state / "run.sh").chmod(0o755)
    (state / "readonly").write_text("r\n")
    (state / "readonly").chmod(0o444)
    state.chmod(0o777)
    assert private_dir(state) == state
    assert mode(state) == 0o700
    assert mode(state / "token") == 0o600
    assert mode(state / "run.sh") == 0o600  # no group/other bits, no exec bit
    assert mode(state / "readonly") == 0o400  # bits are only removed, never added
    assert mode(state / "sub") == 0o755 and mode(state / "sub" / "inner.txt") == 0o644


def test_memory_databases_are_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    private_sqlite(":memory:")
    private_sqlite("")
    assert list(tmp_path.iterdir()) == []
