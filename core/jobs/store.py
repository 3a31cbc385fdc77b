"""Durable records of remote-download jobs (SQLite in the state dir), and their views.

One row per job, active or finished.  Active rows (``queued``, ``starting``,
``downloading``) are what a restart resumes; finished rows (``completed``, ``failed``,
``cancelled``) are the history, newest first, trimmed to ``history_limit``.  Writes are
small and happen on state changes and checkpoints, not per chunk; the database runs in
WAL mode with ``synchronous=NORMAL``, so a process crash loses nothing committed.

Threads (see :mod:`slipstream.sqlitefile`): every method may be called from any thread.
:meth:`JobStore.save`, :meth:`~JobStore.finish` and :meth:`~JobStore.history` use the
writer connection under its lock, and a Trio caller runs them with
``trio.to_thread.run_sync``: a write can wait for a checkpoint, and the whole history
(up to ``history_limit`` rows, 0.1 s for 10,000 here) is no small read.
:meth:`~JobStore.get` and :meth:`~JobStore.active` are small indexed reads on the reader
connection, cheap enough for the event loop.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Final

from slipstream.sqlitefile import SQLiteFile
from slipstream.statefiles import Kind, Schema

__all__ = [
    "ACTIVE",
    "FINISHED",
    "SCHEMA",
    "JobRecord",
    "JobStore",
    "active_fields",
    "history_fields",
]

ACTIVE: Final = ("queued", "starting", "downloading")
FINISHED: Final = ("completed", "failed", "cancelled")

SCHEMA: Final = Schema(
    "downloads.sqlite3",
    Kind.RECORD,
    (
        (
            """CREATE TABLE IF NOT EXISTS jobs (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT UNIQUE NOT NULL,
                url TEXT NOT NULL,
                directory TEXT NOT NULL,
                filename TEXT NOT NULL,
                name_given INTEGER NOT NULL,
                status TEXT NOT NULL,
                current_size INTEGER NOT NULL,
                expected_size INTEGER,
                total_bytes INTEGER,
                start_time INTEGER NOT NULL,
                end_time INTEGER,
                error TEXT,
                sha256 TEXT,
                expected_sha256 TEXT,
                timeout REAL NOT NULL,
                validator TEXT
            )""",
            "CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, end_time)",
        ),
        (  # version 2: several workers share the store (slipstream serve --workers)
            "ALTER TABLE jobs ADD COLUMN owner INTEGER",
            "ALTER TABLE jobs ADD COLUMN speed REAL",
            """CREATE TABLE job_events (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                owner INTEGER NOT NULL,
                at REAL NOT NULL,
                event TEXT NOT NULL
            )""",
            "CREATE TABLE job_cancels (id TEXT PRIMARY KEY)",
        ),
    ),
)
"""The jobs store: a record (nothing else knows a job's history); version 2.

Version 2 is what workers share: the ``owner`` (worker slot) running each active job
and its last ``speed``, the progress events of every worker (``job_events``, read by
the others) and the cancel requests for jobs running in another worker
(``job_cancels``)."""


@dataclass(slots=True)
class JobRecord:
    """The persistent fields of one job (see the seed for the public ones)."""

    id: str
    url: str
    directory: str
    filename: str
    name_given: bool
    status: str
    current_size: int = 0
    expected_size: int | None = None
    total_bytes: int | None = None
    start_time: int = 0
    end_time: int | None = None
    error: str | None = None
    sha256: str | None = None
    expected_sha256: str | None = None
    timeout: float = 300.0
    validator: str | None = None
    """The ``ETag`` (strong) or ``Last-Modified`` seen when the body started: ``If-Range``."""
    owner: int | None = None
    """The worker slot running the job (None: a single-process server)."""
    speed: float | None = None
    """Bytes per second when last shared with the other workers."""

    @property
    def file_path(self) -> str:
        """``directory/filename`` (just the name in the root)."""
        return f"{self.directory}/{self.filename}" if self.directory else self.filename


def _identity(record: JobRecord) -> dict[str, Any]:
    """The fields the active list and the history share (which job, where, its status)."""
    return {
        "id": record.id,
        "filename": record.filename,
        "file_path": record.file_path,
        "directory": record.directory,
        "url": record.url,
        "status": record.status,
    }


def active_fields(record: JobRecord, speed: float | None = None) -> dict[str, Any]:
    """The seed's active-download fields plus ``speed_bytes_per_s`` and ``eta_s``."""
    expected = record.expected_size
    progress = None
    if expected:
        progress = round(100.0 * record.current_size / expected, 2)
    elif expected == 0:
        progress = 100.0
    eta = None
    if speed and expected is not None:
        eta = round(max(expected - record.current_size, 0) / speed, 1)
    return {
        **_identity(record),
        "current_size": record.current_size,
        "expected_size": expected,
        "progress_percentage": progress,
        "start_time": record.start_time,
        "speed_bytes_per_s": round(speed) if speed is not None else None,
        "eta_s": eta,
    }


def history_fields(record: JobRecord) -> dict[str, Any]:
    """The seed's history fields plus ``sha256``."""
    return {
        **_identity(record),
        "total_bytes": record.total_bytes,
        "start_time": record.start_time,
        "end_time": record.end_time,
        "error": record.error,
        "sha256": record.sha256,
    }


_COLUMNS: Final = tuple(f.name for f in fields(JobRecord))


class JobStore:
    """The jobs table (thread-safe; see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str], *, history_limit: int = 10_000) -> None:
        self.path = os.fspath(path)
        self.history_limit = history_limit
        self._db = SQLiteFile(self.path, SCHEMA)

    def save(self, record: JobRecord) -> None:
        """Insert or update ``record`` (by id)."""
        values = asdict(record)
        values["name_given"] = int(record.name_given)
        names = ", ".join(_COLUMNS)
        marks = ", ".join(f":{c}" for c in _COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c != "id")
        with self._db.locked() as db:
            db.execute(
                f"INSERT INTO jobs ({names}) VALUES ({marks})"
                f" ON CONFLICT(id) DO UPDATE SET {updates}",
                values,
            )

    def finish(self, record: JobRecord) -> None:
        """Save a finished record and trim the history to ``history_limit``."""
        self.save(record)
        if self.history_limit >= 0:
            with self._db.locked() as db:
                db.execute(
                    "DELETE FROM jobs WHERE status IN (?, ?, ?) AND seq NOT IN ("
                    " SELECT seq FROM jobs WHERE status IN (?, ?, ?)"
                    " ORDER BY end_time DESC, seq DESC LIMIT ?)",
                    (*FINISHED, *FINISHED, self.history_limit),
                )

    def active(self) -> list[JobRecord]:
        """Rows of jobs that had not finished, oldest first (what a restart resumes)."""
        return self._select("status IN (?, ?, ?) ORDER BY seq", ACTIVE, small=True)

    def history(self, directory: str | None = None, limit: int | None = None) -> list[JobRecord]:
        """Finished jobs, newest first; only those in ``directory`` when given."""
        where = "status IN (?, ?, ?)"
        args: tuple[Any, ...] = FINISHED
        if directory is not None:
            where += " AND directory = ?"
            args = (*args, directory)
        where += " ORDER BY end_time DESC, seq DESC"
        if limit is not None:
            where += " LIMIT ?"
            args = (*args, limit)
        return self._select(where, args, small=False)

    def get(self, job_id: str) -> JobRecord | None:
        """The record with ``job_id``, if any."""
        rows = self._select("id = ?", (job_id,), small=True)
        return rows[0] if rows else None

    def _select(self, where: str, args: tuple[Any, ...], *, small: bool) -> list[JobRecord]:
        """Rows as records: a ``small`` read on the reader, a large one on the writer
        (in the caller's worker thread, serialised with the writes)."""
        sql = f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE {where}"
        if small:
            rows = self._db.read(sql, args)
        else:
            with self._db.locked() as db:
                rows = db.execute(sql, args).fetchall()
        out = []
        for row in rows:
            values = dict(zip(_COLUMNS, row, strict=True))
            values["name_given"] = bool(values["name_given"])
            out.append(JobRecord(**values))
        return out

    # -- several workers ------------------------------------------------------------------

    def share(self, progress: Sequence[JobRecord], owner: int, events: Sequence[str]) -> None:
        """One transaction: the size and speed of ``progress`` (rows still active only:
        a finished row is never overwritten) and ``events`` (JSON) from worker ``owner``."""
        if not progress and not events:
            return
        now = time.time()
        with self._db.locked() as db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "UPDATE jobs SET current_size = ?, expected_size = ?, speed = ?"
                " WHERE id = ? AND status IN (?, ?, ?)",
                [(r.current_size, r.expected_size, r.speed, r.id, *ACTIVE) for r in progress],
            )
            db.executemany(
                "INSERT INTO job_events (owner, at, event) VALUES (?, ?, ?)",
                [(owner, now, event) for event in events],
            )
            db.execute("COMMIT")

    def last_event(self) -> int:
        """The newest event's sequence number (0 when there is none)."""
        row = self._db.read_one("SELECT max(seq) FROM job_events")
        return int(row[0] or 0) if row else 0

    def events_after(self, seq: int, owner: int, limit: int = 1000) -> list[tuple[int, str]]:
        """Events after ``seq`` written by workers other than ``owner``, oldest first.

        Writers commit one at a time and each takes the next number, so a reader that
        asks for numbers above the last it saw never misses one."""
        rows = self._db.read(
            "SELECT seq, event FROM job_events WHERE seq > ? AND owner != ? ORDER BY seq LIMIT ?",
            (seq, owner, limit),
        )
        return [(int(n), str(event)) for n, event in rows]

    def trim_events(self, older_than: float) -> None:
        """Forget events written more than ``older_than`` seconds ago."""
        with self._db.locked() as db:
            db.execute("DELETE FROM job_events WHERE at < ?", (time.time() - older_than,))

    def request_cancel(self, job_id: str) -> bool:
        """Ask whichever worker runs ``job_id`` to cancel it; False if it is not active."""
        with self._db.locked() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute(
                "SELECT 1 FROM jobs WHERE id = ? AND status IN (?, ?, ?)", (job_id, *ACTIVE)
            ).fetchone()
            if row is not None:
                db.execute("INSERT OR IGNORE INTO job_cancels (id) VALUES (?)", (job_id,))
            db.execute("COMMIT")
        return row is not None

    def cancel_requests(self) -> list[str]:
        """Ids of jobs some worker was asked to cancel."""
        return [str(row[0]) for row in self._db.read("SELECT id FROM job_cancels")]

    def forget_cancels(self, ids: Sequence[str]) -> None:
        """Drop handled cancel requests (and any for a job no longer active)."""
        with self._db.locked() as db:
            db.executemany("DELETE FROM job_cancels WHERE id = ?", [(i,) for i in ids])
            db.execute(
                "DELETE FROM job_cancels WHERE id NOT IN"
                " (SELECT id FROM jobs WHERE status IN (?, ?, ?))",
                ACTIVE,
            )

    def close(self) -> None:
        """Close the database."""
        self._db.close()
