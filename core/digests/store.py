"""Where digests are kept: an in-memory LRU in front of a small SQLite database.

:class:`DigestStore` maps a file version (:class:`~slipstream.digests.values.FileKey`) to its
:class:`~slipstream.digests.values.Digests` (table ``digests``), and, for a file only ever
zipped, to its CRC-32 alone (table ``crc32s``: a directory zip needs nothing else, so it
computes nothing else).  The database is in WAL mode in the state directory; a statement is
a single-row lookup or insert, a batched lookup or insert of many CRC-32s (one transaction),
or an occasional trim that deletes the oldest rows beyond ``max_rows``.  A failing
statement is logged and counts as a miss (it is only a cache).  Use from one thread only.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Sequence

from slipstream.ext import ALGORITHMS
from slipstream.statefiles import Kind, Schema, open_store

from .values import CRC_WIDTHS, ON_DEMAND, Digests, FileKey

__all__ = ["SCHEMA", "CrcReader", "DigestStore", "Version", "select_crc32s"]

log = logging.getLogger("slipstream.digests")

Version = tuple[int, int, int, int]
"""A file version as a plain tuple ``(dev, ino, size, mtime_ns)`` (a :class:`FileKey`'s
fields), for lookups of many files at once."""

_HASHES = ("sha1", "sha256", "xxh3_128")
_U64 = 1 << 64
_I64_MAX = (1 << 63) - 1

_COLUMNS = ("dev", "ino", "size", "mtime_ns", *ALGORITHMS, "created_at")
_TABLE = """CREATE TABLE {name} (
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    crc32 INTEGER NOT NULL,
    crc32c INTEGER NOT NULL,
    crc64xz INTEGER NOT NULL,       -- unsigned 64-bit stored as signed
    crc64nvme INTEGER NOT NULL,     -- unsigned 64-bit stored as signed
    sha1 BLOB{sha1_null},          -- NULL: not computed yet (version 2)
    sha256 BLOB NOT NULL,
    xxh3_128 BLOB NOT NULL,
    created_at INTEGER NOT NULL,    -- time.time_ns() of the insert (trims: oldest)
    PRIMARY KEY (dev, ino, size, mtime_ns)
)"""
SCHEMA = Schema(
    "digests.sqlite3",
    Kind.CACHE,
    (
        (
            _TABLE.format(name="IF NOT EXISTS digests", sha1_null=" NOT NULL"),
            "CREATE INDEX IF NOT EXISTS digests_created ON digests (created_at)",
        ),
        (  # version 2: a row may lack its SHA-1 (computed when first asked for)
            _TABLE.format(name="digests_v2", sha1_null=""),
            "INSERT INTO digests_v2 SELECT * FROM digests",
            "DROP TABLE digests",
            "ALTER TABLE digests_v2 RENAME TO digests",
            "CREATE INDEX digests_created ON digests (created_at)",
        ),
        (  # version 3: the CRC-32 alone of a file a directory zip read (see the module)
            """CREATE TABLE crc32s (
                dev INTEGER NOT NULL,
                ino INTEGER NOT NULL,
                size INTEGER NOT NULL,
                mtime_ns INTEGER NOT NULL,
                crc32 INTEGER NOT NULL,
                created_at INTEGER NOT NULL,
                PRIMARY KEY (dev, ino, size, mtime_ns)
            )""",
            "CREATE INDEX crc32s_created ON crc32s (created_at)",
        ),
    ),
)
"""The digest cache: rebuilt by hashing the files again, so a cache; version 3."""
_SELECT = (
    f"SELECT {', '.join(ALGORITHMS)} FROM digests"
    " WHERE dev = ? AND ino = ? AND size = ? AND mtime_ns = ?"
)
_KEY = ("dev", "ino", "size", "mtime_ns")
_INSERT = (
    f"INSERT INTO digests ({', '.join(_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(_COLUMNS))})"
    f" ON CONFLICT ({', '.join(_KEY)}) DO UPDATE SET "
    + ", ".join(
        # A row written without an on-demand value (another worker hashed the file
        # without it) keeps the one already stored: an upsert, never a lost update.
        f"{name} = coalesce(excluded.{name}, digests.{name})"
        if name in ON_DEMAND
        else f"{name} = excluded.{name}"
        for name in _COLUMNS
        if name not in _KEY
    )
)
_TRIM = (
    "DELETE FROM {table} WHERE rowid IN"
    " (SELECT rowid FROM {table} ORDER BY created_at, rowid LIMIT ?)"
)
_TABLES = ("digests", "crc32s")
_CRC32_ROWS_FACTOR = 10
_INODES_PER_QUERY = 2000
"""Inodes per batched CRC-32 lookup (each a seek in the primary key)."""
_SELECT_CRC32S = (
    "SELECT ino, size, mtime_ns, crc32 FROM {table} WHERE dev = ? AND ino IN ({inodes})"
)
_INSERT_CRC32 = (
    "INSERT OR REPLACE INTO crc32s (dev, ino, size, mtime_ns, crc32, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)


def _i64(value: int) -> int:
    """An unsigned 64-bit value as SQLite's signed INTEGER (two's complement)."""
    return value - _U64 if value > _I64_MAX else value


def _u64(value: int) -> int:
    return value + _U64 if value < 0 else value


def select_crc32s(
    db: sqlite3.Connection, versions: Sequence[Version], found: dict[Version, int]
) -> None:
    """Put in ``found`` the CRC-32 of every one of ``versions`` the database knows (its
    full digests or a CRC-32-only row); raises ``sqlite3.Error``.

    A few queries for any number of versions (one per :data:`_INODES_PER_QUERY` inodes
    of a device and table), and plain tuples rather than :class:`FileKey` objects: a
    directory of many thousand files is looked up in milliseconds.
    """
    devices: dict[int, list[int]] = {}
    for dev, ino, _, _ in versions:
        devices.setdefault(dev, []).append(_i64(ino))
    for table in _TABLES:
        for dev, inodes in devices.items():
            for start in range(0, len(inodes), _INODES_PER_QUERY):
                batch = inodes[start : start + _INODES_PER_QUERY]
                query = _SELECT_CRC32S.format(table=table, inodes=",".join("?" * len(batch)))
                for ino, size, mtime_ns, crc32 in db.execute(query, [_i64(dev), *batch]):
                    found[dev, _u64(ino), size, mtime_ns] = crc32


class CrcReader:
    """A read-only connection to the digest database for CRC-32 lookups in a worker
    thread (a directory zip asks about thousands of files without holding the event
    loop).  Use from one thread at a time; :meth:`close` when done."""

    def __init__(self, path: str) -> None:
        uri = f"file:{urllib.parse.quote(path)}?mode=ro"
        self._db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)

    def crc32s(self, versions: Sequence[Version]) -> list[int | None]:
        """As :meth:`DigestStore.crc32s`; a failing query is a miss (logged)."""
        found: dict[Version, int] = {}
        try:
            select_crc32s(self._db, versions, found)
        except sqlite3.Error as exc:
            log.warning("digest cache: a CRC-32 lookup failed: %s", exc)
        return [found.get(version) for version in versions]

    def close(self) -> None:
        """Close the connection."""
        self._db.close()


class DigestStore:
    """Digests of file versions: an in-memory LRU of ``lru_size``, then SQLite.

    ``path`` is the SQLite file (created with its parent directory if missing; WAL mode,
    ``synchronous=NORMAL``; set aside and started afresh when damaged, see
    :mod:`slipstream.statefiles`).  Each table is trimmed to its limit (``max_rows``; ten
    times that of CRC-32-only rows), oldest first, at open, and again whenever its inserts
    since the last count could have taken it past that (the count is an upper bound kept
    in memory: ``count(*)`` reads the whole table, which a directory zip storing
    thousands of CRCs cannot afford every thousand rows).
    ``busy_timeout`` bounds how long a statement may wait for another process's write
    lock.  After :meth:`close` the LRU still answers and remembers; nothing reaches the
    database.
    """

    def __init__(
        self,
        path: os.PathLike[str] | str,
        *,
        max_rows: int = 100_000,
        lru_size: int = 4096,
        busy_timeout: float = 0.25,
    ) -> None:
        if max_rows < 1 or lru_size < 0:
            raise ValueError("max_rows must be >= 1, lru_size >= 0")
        self._path = os.fspath(path)
        self._max_rows = max_rows
        self._lru_size = lru_size
        self._lru: OrderedDict[FileKey, Digests] = OrderedDict()
        self._rows = dict.fromkeys(_TABLES, 0)
        """Rows per table, at most (counted at the last trim, plus every insert since)."""
        self._failing = False
        self._db: sqlite3.Connection | None = self._open(busy_timeout)
        self._trim()

    @property
    def path(self) -> str:
        """The SQLite file."""
        return self._path

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._db is None

    def lookup(self, key: FileKey) -> Digests | None:
        """The kept digests of ``key``, or None (the LRU, then SQLite)."""
        hit = self._lru.get(key)
        if hit is not None:
            self._lru.move_to_end(key)
            return hit
        found = self._select(key)
        if found is not None:
            self._remember(key, found)
        return found

    def store(self, key: FileKey, digests: Digests) -> None:
        """Keep ``digests`` for ``key``; a ``ValueError`` if their sizes differ."""
        if digests.size != key.size:
            raise ValueError(f"digests of {digests.size} bytes for a key of {key.size}")
        self._remember(key, digests)
        if self._db is None:
            return
        crcs = [_i64(getattr(digests, name)) for name in CRC_WIDTHS]
        hashes = [getattr(digests, name) for name in _HASHES]
        row = (_i64(key.dev), _i64(key.ino), key.size, key.mtime_ns, *crcs, *hashes)
        try:
            self._db.execute(_INSERT, (*row, time.time_ns()))
        except sqlite3.Error as exc:
            self._failed("insert into", exc)
            return
        self._worked()
        self._inserted("digests", 1)

    def crc32s(self, versions: Sequence[Version]) -> list[int | None]:
        """The CRC-32 of every file version ``(dev, ino, size, mtime_ns)`` (from its full
        digests or a CRC-32-only row), or None (see :func:`select_crc32s`).  Only the
        database answers (the LRU mirrors what it holds)."""
        if self._db is None:
            return [None] * len(versions)
        found: dict[Version, int] = {}
        try:
            select_crc32s(self._db, versions, found)
        except sqlite3.Error as exc:
            self._failed("lookup in", exc)
        return [found.get(version) for version in versions]

    def crc32_reader(self) -> CrcReader | None:
        """A connection of its own for :meth:`CrcReader.crc32s` from a worker thread,
        beside this store's (WAL lets it read while this one writes); None when the
        store is closed or the connection cannot be opened."""
        if self._db is None:
            return None
        try:
            return CrcReader(self._path)
        except sqlite3.Error as exc:
            self._failed("opening a reader of", exc)
            return None

    def store_crc32s(self, rows: Sequence[tuple[Version, int]]) -> None:
        """Keep the CRC-32 alone of each ``(version, crc32)``, in one transaction."""
        for _, value in rows:
            if not 0 <= value <= 0xFFFFFFFF:
                raise ValueError(f"not a CRC-32: {value}")
        if self._db is None or not rows:
            return
        now = time.time_ns()
        params = [
            (_i64(dev), _i64(ino), size, mtime_ns, value, now)
            for (dev, ino, size, mtime_ns), value in rows
        ]
        try:
            with self._db:  # one transaction (the connection autocommits otherwise)
                self._db.execute("BEGIN")
                self._db.executemany(_INSERT_CRC32, params)
        except sqlite3.Error as exc:
            self._failed("insert into", exc)
            return
        self._worked()
        self._inserted("crc32s", len(rows))

    def close(self) -> None:
        """Close the database (idempotent)."""
        db, self._db = self._db, None
        if db is not None:
            db.close()

    def _open(self, busy_timeout: float) -> sqlite3.Connection:
        # A damaged or newer file is set aside and replaced by an empty one (a cache).
        return open_store(self._path, SCHEMA, timeout=busy_timeout)

    def _failed(self, what: str, exc: sqlite3.Error) -> None:
        """Log the first failure of a streak (a full disk fails every insert)."""
        if not self._failing:
            self._failing = True
            log.warning(
                "digest cache: %s %s failed: %s (digests are kept in memory until it works again)",
                what,
                self._path,
                exc,
            )

    def _worked(self) -> None:
        if self._failing:
            self._failing = False
            log.warning("digest cache: %s works again", self._path)

    def _limit(self, table: str) -> int:
        """Rows ``table`` may hold: ``max_rows``, ten times that of CRC-32-only rows
        (a tenth of the size each, and a directory zip may need hundreds of thousands)."""
        return self._max_rows * (_CRC32_ROWS_FACTOR if table == "crc32s" else 1)

    def _inserted(self, table: str, count: int) -> None:
        self._rows[table] += count
        if self._rows[table] > self._limit(table):
            self._trim(table)

    def _trim(self, *tables: str) -> None:
        """Count ``tables`` (every table by default) and delete their oldest rows beyond
        the limit, and a tenth more when there are any (so the next insert does not
        count the whole table again)."""
        if self._db is None:
            return
        try:
            for table in tables or _TABLES:
                limit = self._limit(table)
                (rows,) = self._db.execute(f"SELECT count(*) FROM {table}").fetchone()
                if rows > limit:
                    keep = limit - limit // 10
                    self._db.execute(_TRIM.format(table=table), (rows - keep,))
                    rows = keep
                self._rows[table] = rows
        except sqlite3.Error as exc:
            self._failed("trimming", exc)

    def _select(self, key: FileKey) -> Digests | None:
        if self._db is None:
            return None
        try:
            row = self._db.execute(
                _SELECT, (_i64(key.dev), _i64(key.ino), key.size, key.mtime_ns)
            ).fetchone()
        except sqlite3.Error as exc:
            self._failed("lookup in", exc)
            return None
        if row is None:
            return None
        values: dict[str, int | bytes] = {}
        for name, value in zip(ALGORITHMS, row, strict=True):
            if value is not None:  # NULL: an on-demand algorithm not computed yet
                values[name] = _u64(value) if name in CRC_WIDTHS else bytes(value)
        return Digests.from_values(key.size, values)

    def _remember(self, key: FileKey, digests: Digests) -> None:
        if self._lru_size == 0:
            return
        self._lru[key] = digests
        self._lru.move_to_end(key)
        while len(self._lru) > self._lru_size:
            self._lru.popitem(last=False)
