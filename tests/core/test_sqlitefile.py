"""One SQLite file used by the event loop (reads) and worker threads (writes)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from slipstream.errors import StateUnavailable
from slipstream.sqlitefile import SQLiteFile
from slipstream.statefiles import Kind, Schema

SCHEMA = Schema(
    "x.sqlite3",
    Kind.RECORD,
    (("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)",),),
)


def test_reads_see_committed_writes_and_never_wait_for_the_writer(tmp_path: Path) -> None:
    db = SQLiteFile(tmp_path / "x.sqlite3", SCHEMA)
    try:
        with db.locked() as writer:
            writer.execute("INSERT INTO t VALUES (1, 'one')")
        assert db.read("SELECT v FROM t WHERE k = 1") == [("one",)]
        holding = threading.Event()
        release = threading.Event()

        def long_write() -> None:
            with db.locked() as writer:
                writer.execute("BEGIN IMMEDIATE")
                writer.execute("INSERT INTO t VALUES (2, 'two')")
                holding.set()
                release.wait(10)
                writer.execute("COMMIT")

        thread = threading.Thread(target=long_write)
        thread.start()
        try:
            assert holding.wait(10)
            started = time.monotonic()
            assert db.read_one("SELECT v FROM t WHERE k = 1") == ("one",)
            assert db.read_one("SELECT v FROM t WHERE k = 2") is None  # not committed yet
            assert time.monotonic() - started < 0.5, "a read waited for the writer"
        finally:
            release.set()
            thread.join(10)
        assert db.read_one("SELECT v FROM t WHERE k = 2") == ("two",)
    finally:
        db.close()


def test_the_reader_cannot_write(tmp_path: Path) -> None:
    db = SQLiteFile(tmp_path / "x.sqlite3", SCHEMA)
    try:
        with pytest.raises(StateUnavailable) as raised:
            db.read("INSERT INTO t VALUES (1, 'x')")
        assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
        assert "readonly" in str(raised.value.__cause__)
    finally:
        db.close()


def test_writes_from_many_threads_are_serialised(tmp_path: Path) -> None:
    db = SQLiteFile(tmp_path / "x.sqlite3", SCHEMA)
    errors: list[BaseException] = []

    def writes(base: int) -> None:
        try:
            for k in range(base, base + 200):
                with db.locked() as writer:
                    writer.execute("INSERT INTO t VALUES (?, 'v')", (k,))
        except BaseException as exc:  # collected for the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writes, args=(n * 1000,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    try:
        assert errors == []
        assert db.read_one("SELECT count(*) FROM t") == (800,)
    finally:
        db.close()


def test_memory_databases_share_one_connection_and_close_is_idempotent() -> None:
    db = SQLiteFile(":memory:", SCHEMA)
    with db.locked() as writer:
        writer.execute("INSERT INTO t VALUES (1, 'one')")
    assert db.read("SELECT v FROM t") == [("one",)]
    db.close()
    db.close()
    with pytest.raises(sqlite3.ProgrammingError):
        db.read("SELECT v FROM t")
    with pytest.raises(sqlite3.ProgrammingError), db.locked():
        pass
