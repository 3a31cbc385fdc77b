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
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from .privatefiles import private_sqlite

__all__ = ["SQLiteFile"]


class SQLiteFile:
    """A WAL-mode SQLite database: a locked writer connection and a reader connection.

    ``schema`` is run once (``executescript``) on the writer.  ``busy_timeout`` bounds
    how long a statement waits for another process's lock (seconds); the reader waits at
    most ``read_timeout``, since it runs on the event loop.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        schema: str,
        *,
        busy_timeout: float = 5.0,
        read_timeout: float = 1.0,
    ) -> None:
        self.path = os.fspath(path)
        memory = self.path == ":memory:"
        private_sqlite(self.path)  # 0600, and so are SQLite's -wal/-shm
        writer = sqlite3.connect(
            self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        reader = writer
        try:
            writer.execute("PRAGMA journal_mode=WAL")
            writer.execute("PRAGMA synchronous=NORMAL")
            writer.executescript(schema)
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

    @contextlib.contextmanager
    def locked(self) -> Iterator[sqlite3.Connection]:
        """The writer connection, held for the block (from any one thread at a time).

        Raises ``sqlite3.ProgrammingError`` once the file is closed.
        """
        with self._lock:
            if self._closed:
                raise sqlite3.ProgrammingError("the database is closed")
            yield self._writer

    def read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """Every row of one read-only statement, on the reader connection."""
        with self._read_lock:
            if self._closed:
                raise sqlite3.ProgrammingError("the database is closed")
            return self._reader.execute(sql, args).fetchall()

    def read_one(self, sql: str, args: Sequence[Any] = ()) -> Any:
        """The first row of one read-only statement (None when there is none)."""
        with self._read_lock:
            if self._closed:
                raise sqlite3.ProgrammingError("the database is closed")
            return self._reader.execute(sql, args).fetchone()

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
