"""One SQLite file shared by a Trio event loop and its worker threads.

A Trio program must not block its event loop on disk writes.  A commit in WAL mode with
``synchronous=NORMAL`` usually takes tens of microseconds, but one that triggers a
checkpoint waits for the disk: for the zip and job stores on this machine, writes took a
median 30-120 us, a 99th percentile of 4-6 ms and a maximum of 30-110 ms.  So a
:class:`SQLiteFile` has two connections:

* the *writer*, only used inside :meth:`SQLiteFile.locked`, whose lock serialises it (two
  threads never use it at once).  Code on the event loop runs its writes, and its large
  reads, in ``trio.to_thread.run_sync``;
* the *reader* (``PRAGMA query_only``) for small indexed reads made on the event-loop
  thread with :meth:`SQLiteFile.read`.  In WAL mode a reader never waits for the
  writer, so such a read costs what it costs (measured: a point lookup by primary key or
  unique index has a median of 6-9 us and a 99th percentile under 40 us) whatever a
  worker thread is writing.  It sees every transaction committed before it starts.

A ``:memory:`` database (tests) is one connection, so both paths share the lock.
No trio here: callers choose where each call runs.

The file is opened by :func:`slipstream.statefiles.open_store` (checked, migrated; a
damaged record store raises :class:`~slipstream.statefiles.StateDamaged`).  Once open, a
statement that fails for a reason outside the program (disk full, an I/O error, a lock
held past the timeout, damage found mid-run) raises
:class:`~slipstream.errors.StateUnavailable` (503): the caller's request fails, the next
one tries again, and the first failure and the recovery are each logged once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from .errors import StateUnavailable
from .statefiles import Schema, open_store

__all__ = ["SQLiteFile", "outside_failure"]

log = logging.getLogger("slipstream.state")


def outside_failure(exc: BaseException) -> bool:
    """True for a SQLite error the program did not cause (disk, I/O, locks, damage),
    False for a bug such as a constraint or a misuse (those stay what they are)."""
    return isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError


class SQLiteFile:
    """A WAL-mode SQLite database: a locked writer connection and a reader connection.

    ``schema`` names the store, its kind and its migrations.  ``busy_timeout`` bounds
    how long a statement waits for another process's lock (seconds); the reader waits at
    most ``read_timeout``, since it runs on the event loop.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        schema: Schema,
        *,
        busy_timeout: float = 5.0,
        read_timeout: float = 1.0,
    ) -> None:
        self.path = os.fspath(path)
        memory = self.path == ":memory:"
        writer = open_store(self.path, schema, timeout=busy_timeout)
        reader = writer
        try:
            if not memory:
                reader = sqlite3.connect(
                    self.path, timeout=read_timeout, isolation_level=None, check_same_thread=False
                )
                reader.execute("PRAGMA query_only=1")
        except BaseException:
            writer.close()
            raise
        self._writer = writer
        self._reader = reader
        self._lock = threading.Lock()
        self._read_lock = self._lock if memory else threading.Lock()
        self._closed = False
        self._failing = False

    @contextlib.contextmanager
    def locked(self) -> Iterator[sqlite3.Connection]:
        """The writer connection, held for the block (from any one thread at a time).

        Raises ``sqlite3.ProgrammingError`` once the file is closed, and
        :class:`~slipstream.errors.StateUnavailable` when a statement fails for an
        outside reason (an open transaction is rolled back first).
        """
        with self._lock:
            if self._closed:
                raise sqlite3.ProgrammingError("the database is closed")
            try:
                yield self._writer
            except sqlite3.Error as exc:
                if not outside_failure(exc):
                    raise
                if self._writer.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._writer.execute("ROLLBACK")
                raise self._failed(exc) from exc
            self._worked()

    def read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """Every row of one read-only statement, on the reader connection."""
        # try/except inline, not a context manager: these reads run on the event loop
        # per request, and a generator-based one would cost 2 us more (40 %) each.
        with self._read_lock:
            if self._closed:
                raise sqlite3.ProgrammingError("the database is closed")
            try:
                return self._reader.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                if not outside_failure(exc):
                    raise
                raise self._failed(exc) from exc

    def read_one(self, sql: str, args: Sequence[Any] = ()) -> Any:
        """The first row of one read-only statement (None when there is none)."""
        with self._read_lock:
            if self._closed:
                raise sqlite3.ProgrammingError("the database is closed")
            try:
                return self._reader.execute(sql, args).fetchone()
            except sqlite3.Error as exc:
                if not outside_failure(exc):
                    raise
                raise self._failed(exc) from exc

    def _failed(self, exc: sqlite3.Error) -> StateUnavailable:
        """The error to raise for ``exc``; the first of a streak is logged."""
        if not self._failing:
            self._failing = True
            log.warning(
                "state store %s failed: %s; what needs it fails (503 STATE_UNAVAILABLE) "
                "until it works again",
                self.path,
                exc,
            )
        return StateUnavailable()

    def _worked(self) -> None:
        if self._failing:
            self._failing = False
            log.warning("state store %s works again", self.path)

    def close(self) -> None:
        """Close both connections (idempotent); waits for a write in progress."""
        with self._lock, contextlib.ExitStack() as stack:
            if self._read_lock is not self._lock:
                stack.enter_context(self._read_lock)
            if self._closed:
                return
            self._closed = True
            if self._reader is not self._writer:
                self._reader.close()
            self._writer.close()
