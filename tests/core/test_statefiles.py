"""``slipstream.statefiles``: stores checked at open, migrated, set aside or refused when
damaged; the token and secret files; no server here."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from slipstream.errors import StateUnavailable
from slipstream.sqlitefile import SQLiteFile
from slipstream.statefiles import (
    Kind,
    Schema,
    StateDamaged,
    busy,
    examine,
    examine_secret,
    load_or_create_secret,
    open_store,
)
from tests.helpers.damage import DAMAGES

V1 = ("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)",)
V2 = ("ALTER TABLE t ADD COLUMN w TEXT", "CREATE INDEX t_w ON t (w)")


def schema(kind: Kind, *migrations: tuple[str, ...]) -> Schema:
    return Schema("t.sqlite3", kind, migrations or (V1,))


def filled(path: Path, rows: int = 2000) -> Path:
    """A store of version 1 with ``rows`` rows (many pages), closed cleanly."""
    db = open_store(path, schema(Kind.RECORD))
    db.executemany("INSERT INTO t VALUES (?, ?)", ((k, "x" * 100) for k in range(rows)))
    db.close()
    return path


EXPECTED = {
    "random header": "header is damaged",
    "truncated": "",
    "zero length": "empty",
    "directory": "directory",
    "newer schema": "newer slipstream (schema version 99; this one knows up to 1)",
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_record_store_is_refused_with_one_line(tmp_path: Path, damage: str) -> None:
    path = filled(tmp_path / "t.sqlite3")
    DAMAGES[damage](path)
    expected = EXPECTED[damage]
    assert examine(path, schema(Kind.RECORD)).problem is not None
    with pytest.raises(StateDamaged) as raised:
        open_store(path, schema(Kind.RECORD))
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{path} ") and expected in message
    assert f"slipstream state quarantine t --state-dir {tmp_path}" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.sqlite3"]  # nothing moved


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_cache_is_set_aside_and_started_empty(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = filled(tmp_path / "t.sqlite3")
    DAMAGES[damage](path)
    with caplog.at_level(logging.WARNING, logger="slipstream.state"):
        db = open_store(path, schema(Kind.CACHE))
    try:
        assert db.execute("SELECT count(*) FROM t").fetchone() == (0,)
        db.execute("INSERT INTO t VALUES (1, 'works')")
    finally:
        db.close()
    aside = [p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1 and aside[0].startswith("t.sqlite3.corrupt-2"), aside
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and aside[0] in warnings[0] and "\n" not in warnings[0]
    assert examine(path, schema(Kind.CACHE), full=True).problem is None


def test_a_new_store_is_private_complete_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "t.sqlite3"
    db = open_store(path, schema(Kind.RECORD, V1, V2))
    db.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    health = examine(path, schema(Kind.RECORD, V1, V2), full=True)
    assert (health.exists, health.problem, health.version) == (True, None, 2)
    assert [p.name for p in path.parent.iterdir()] == ["t.sqlite3"]  # no temporary left


def test_an_older_store_is_migrated_in_place(tmp_path: Path) -> None:
    path = filled(tmp_path / "t.sqlite3", rows=10)
    db = open_store(path, schema(Kind.RECORD, V1, V2))
    try:
        assert db.execute("PRAGMA user_version").fetchone() == (2,)
        assert db.execute("SELECT count(*), count(w) FROM t").fetchone() == (10, 0)
    finally:
        db.close()


def test_a_failing_migration_leaves_the_previous_version(tmp_path: Path) -> None:
    path = filled(tmp_path / "t.sqlite3", rows=10)
    broken = ("ALTER TABLE t ADD COLUMN w TEXT", "CREATE INDEX t_w ON missing (w)")
    with pytest.raises(sqlite3.OperationalError):
        open_store(path, schema(Kind.RECORD, V1, broken))
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone() == (1,)
        columns = [row[1] for row in db.execute("PRAGMA table_info(t)")]
        assert columns == ["k", "v"]  # the half-done step was rolled back
    finally:
        db.close()


def test_a_missing_store_is_healthy_and_check_creates_nothing(tmp_path: Path) -> None:
    health = examine(tmp_path / "t.sqlite3", schema(Kind.RECORD), full=True)
    assert (health.exists, health.problem) == (False, None)
    assert list(tmp_path.iterdir()) == []


def test_a_full_store_fails_as_state_unavailable_then_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLite's own "database or disk is full" (``max_page_count`` reached): 503 errors,
    one log line for the streak, and the next write works once there is room."""
    db = SQLiteFile(tmp_path / "t.sqlite3", schema(Kind.RECORD))
    try:
        with db.locked() as writer:
            (pages,) = writer.execute("PRAGMA page_count").fetchone()
            writer.execute(f"PRAGMA max_page_count = {pages}")
        with caplog.at_level(logging.WARNING, logger="slipstream.state"):
            for attempt in range(3):
                with pytest.raises(StateUnavailable) as raised, db.locked() as writer:
                    writer.execute("BEGIN")
                    rows = ((attempt * 1000 + k, "y" * 500) for k in range(100))
                    writer.executemany("INSERT INTO t VALUES (?, ?)", rows)
                    writer.execute("COMMIT")
                assert raised.value.status == 503 and raised.value.code == "STATE_UNAVAILABLE"
                assert "full" in str(raised.value.__cause__)
            assert db.read_one("SELECT count(*) FROM t") == (0,)  # rolled back, readable
            with db.locked() as writer:
                writer.execute("PRAGMA max_page_count = 1000000")
                writer.execute("INSERT INTO t VALUES (1, 'room again')")
        assert db.read_one("SELECT v FROM t WHERE k = 1") == ("room again",)
        messages = [r.getMessage() for r in caplog.records]
        assert len(messages) == 2, messages
        assert "failed" in messages[0] and "works again" in messages[1]
    finally:
        db.close()


# --- the token and the secret ---------------------------------------------------------


def test_a_secret_is_made_once_privately_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    made = iter(["first-value", "second-value"])
    assert load_or_create_secret(path, lambda: next(made)) == "first-value"
    assert load_or_create_secret(path, lambda: next(made)) == "first-value"
    assert path.read_text() == "first-value\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "is empty"),
        (b"\n\n", "is empty"),
        (b"\x00\x17\xfe\xff garbage", "damaged"),
        (b"two words\n", "damaged"),
        (b"x" * 5000, "damaged"),
        (b"a-token-cut-shor", "truncated"),
    ],
)
def test_a_damaged_secret_is_refused_never_replaced(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / "token"
    path.write_bytes(content)
    value, found = examine_secret(path)
    assert value is None and found is not None and problem in found
    with pytest.raises(StateDamaged) as raised:
        load_or_create_secret(path, lambda: "never-used")
    message = str(raised.value)
    assert problem in message and "\n" not in message
    assert "slipstream state quarantine token" in message and "new access token" in message
    assert path.read_bytes() == content


def test_a_directory_where_the_secret_belongs_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret").mkdir()
    with pytest.raises(StateDamaged, match="is a directory"):
        load_or_create_secret(tmp_path / "secret", lambda: "never-used")


def test_a_write_ahead_log_without_its_database_is_set_aside_not_replayed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A ``-wal`` left where the database file was deleted holds another file's pages:
    SQLite would replay them into the new store."""
    other = open_store(tmp_path / "other.sqlite3", schema(Kind.RECORD))
    try:
        other.execute("PRAGMA wal_autocheckpoint=0")
        other.executemany("INSERT INTO t VALUES (?, 'stale')", ((k,) for k in range(50)))
        (tmp_path / "t.sqlite3-wal").write_bytes((tmp_path / "other.sqlite3-wal").read_bytes())
    finally:
        other.close()
    with caplog.at_level(logging.WARNING, logger="slipstream.state"):
        db = open_store(tmp_path / "t.sqlite3", schema(Kind.RECORD))
    try:
        assert db.execute("SELECT count(*) FROM t").fetchone() == (0,)
    finally:
        db.close()
    assert any(p.name.startswith("t.sqlite3-wal.corrupt-") for p in tmp_path.iterdir())
    assert "has no database beside it" in caplog.text
    assert examine(tmp_path / "t.sqlite3", schema(Kind.RECORD), full=True).problem is None


def test_a_store_locked_by_another_process_is_busy_not_damaged(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)  # a rollback journal, not WAL
    try:
        holder.execute("CREATE TABLE t (k INTEGER)")
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(sqlite3.OperationalError) as raised:
            examine(path, schema(Kind.CACHE), timeout=0.05)
        assert busy(raised.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert examine(path, schema(Kind.CACHE)).problem is None
    assert not busy(sqlite3.OperationalError("database or disk is full"))


def test_what_a_killed_creator_left_is_removed_and_a_live_ones_is_not(tmp_path: Path) -> None:
    """A SIGKILL while a store or a secret is being made leaves ``NAME.new-<pid>`` (and a
    ``-journal``); the next open removes those of dead processes only."""
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    litter = [
        f"t.sqlite3.new-{dead_pid}",
        f"t.sqlite3.new-{dead_pid}-journal",
        f"token.new-{dead_pid}",
    ]
    alive = f"t.sqlite3.new-{os.getppid()}"  # our parent: alive, maybe creating right now
    for name in [*litter, alive]:
        (tmp_path / name).write_bytes(b"half made")
    open_store(tmp_path / "t.sqlite3", schema(Kind.RECORD)).close()
    load_or_create_secret(tmp_path / "token", lambda: "a-new-token")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["t.sqlite3", "token", alive])
