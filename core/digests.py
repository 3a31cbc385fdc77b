"""Every checksum of a file, computed once per file version and kept in SQLite.

A file version is a :class:`FileKey` ``(dev, ino, size, mtime_ns)``.  :func:`hash_fd` reads
the file once, into one reused buffer, and feeds every algorithm of
:data:`slipstream.ext.ALGORITHMS` from it; the result is a :class:`Digests`.

:class:`DigestCache` keeps those results in a small SQLite database (WAL mode) in the
state directory, with an in-memory LRU in front.  Hashing runs in ``trio.to_thread``
under a :class:`trio.CapacityLimiter`; concurrent requests for the same version share one
computation.  :meth:`DigestCache.schedule` warms the cache in the background, so a
reply never has to wait for a cold large file; such a task logs and contains its own
failure (:func:`slipstream.background.spawn`), since its nursery lives as long as the server.

Threads: the SQLite connection and the LRU are touched only by the thread that created
the cache (the Trio event-loop thread); worker threads only read and hash a duplicated
file descriptor.  Every statement the loop runs is a single-row lookup or insert, except
an occasional trim that deletes the oldest rows beyond ``max_rows``.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import stat as stat_mod
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import trio

from slipstream.ext import ALGORITHMS, MultiDigest
from slipstream.privatefiles import private_sqlite

from .background import spawn

__all__ = [
    "CHUNK_SIZE",
    "CRC_WIDTHS",
    "DigestCache",
    "Digests",
    "FileChanged",
    "FileKey",
    "Hasher",
    "hash_fd",
    "hash_path",
]

log = logging.getLogger("slipstream.digests")

CHUNK_SIZE = 4 * 1024 * 1024
"""Bytes read per ``preadv`` by :func:`hash_fd` (the one buffer it allocates)."""

CRC_WIDTHS: dict[str, int] = {"crc32": 32, "crc32c": 32, "crc64xz": 64, "crc64nvme": 64}
"""Bit width of every CRC value in :class:`Digests` (the others are byte strings)."""

_HASHES = ("sha1", "sha256", "xxh3_128")
_SCHEMA_VERSION = 1
_U64 = 1 << 64
_I64_MAX = (1 << 63) - 1


class FileChanged(Exception):
    """The file changed (size, mtime, or identity) before or while it was being hashed."""


@dataclass(frozen=True, slots=True)
class FileKey:
    """One version of one file: the cache key.  Any change to the file changes its key."""

    dev: int
    ino: int
    size: int
    mtime_ns: int

    @classmethod
    def from_stat(cls, st: Any) -> FileKey:
        """Build from an ``os.stat_result`` (``st_*`` attributes) or a ``FileStat``.

        Anything with ``st_dev``/``st_ino``/``st_size``/``st_mtime_ns`` or with
        ``dev``/``ino``/``size``/``mtime_ns`` attributes is accepted.
        """
        if hasattr(st, "st_ino"):
            return cls(int(st.st_dev), int(st.st_ino), int(st.st_size), int(st.st_mtime_ns))
        return cls(int(st.dev), int(st.ino), int(st.size), int(st.mtime_ns))


@dataclass(frozen=True, slots=True)
class Digests:
    """Every checksum of one file version: CRCs as ints, hashes as bytes."""

    size: int
    crc32: int
    crc32c: int
    crc64xz: int
    crc64nvme: int
    sha1: bytes
    sha256: bytes
    xxh3_128: bytes

    @classmethod
    def from_values(cls, size: int, values: dict[str, int | bytes]) -> Digests:
        """Build from a ``MultiDigest.digest()`` result covering every algorithm."""
        crcs: dict[str, int] = {}
        hashes: dict[str, bytes] = {}
        for name in ALGORITHMS:
            value = values[name]
            if name in CRC_WIDTHS:
                if not isinstance(value, int):
                    raise TypeError(f"{name} must be an int, got {type(value).__name__}")
                crcs[name] = value
            else:
                if not isinstance(value, bytes):
                    raise TypeError(f"{name} must be bytes, got {type(value).__name__}")
                hashes[name] = value
        return cls(
            size=size,
            crc32=crcs["crc32"],
            crc32c=crcs["crc32c"],
            crc64xz=crcs["crc64xz"],
            crc64nvme=crcs["crc64nvme"],
            sha1=hashes["sha1"],
            sha256=hashes["sha256"],
            xxh3_128=hashes["xxh3_128"],
        )

    def raw(self, name: str) -> bytes:
        """The value as bytes: CRCs big-endian at their full width (as in HTTP headers)."""
        value = self._value(name)
        if isinstance(value, int):
            return value.to_bytes(CRC_WIDTHS[name] // 8, "big")
        return value

    def hex(self, name: str) -> str:
        """The value as lower-case hex; CRCs zero-padded to their width."""
        return self.raw(name).hex()

    def as_dict(self) -> dict[str, str | int]:
        """``{"size": int, <algorithm>: hex, ...}`` in :data:`ALGORITHMS` order (for JSON)."""
        out: dict[str, str | int] = {"size": self.size}
        for name in ALGORITHMS:
            out[name] = self.hex(name)
        return out

    def _value(self, name: str) -> int | bytes:
        if name not in ALGORITHMS:
            raise KeyError(f"unknown digest {name!r}; expected one of {ALGORITHMS}")
        value: int | bytes = getattr(self, name)
        return value


Hasher = Callable[[int, int], Digests]
"""``hasher(fd, size) -> Digests``: what :class:`DigestCache` runs in its worker threads."""


def hash_fd(
    fd: int,
    size: int,
    progress: Callable[[int], None] | None = None,
    *,
    chunk: int = CHUNK_SIZE,
) -> Digests:
    """Hash the first ``size`` bytes of ``fd`` with every algorithm, in one read pass.

    Blocking.  Reads with ``os.preadv`` (the file offset is left alone, so a shared or
    duplicated descriptor is not disturbed) into one reused ``chunk``-sized buffer.
    ``progress(n)`` is called after each read with the number of bytes just hashed
    (an increment, as for ``rich``'s ``advance``).  Raises :class:`FileChanged` if the
    file ends before ``size`` bytes.
    """
    if size < 0:
        raise ValueError("size must be >= 0")
    if chunk <= 0:
        raise ValueError("chunk must be > 0")
    digest = MultiDigest(ALGORITHMS)
    buffer = bytearray(min(chunk, size))
    with memoryview(buffer) as view:
        done = 0
        while done < size:
            want = min(len(view), size - done)
            got = os.preadv(fd, [view[:want]], done)
            if got == 0:
                raise FileChanged(f"file ended after {done} of {size} bytes")
            digest.update(view[:got])
            done += got
            if progress is not None:
                progress(got)
    return Digests.from_values(size, digest.digest())


def hash_path(
    path: str | os.PathLike[str], progress: Callable[[int], None] | None = None
) -> Digests:
    """Open ``path`` and hash it with :func:`hash_fd` (for the ``slipstream digest`` command).

    Raises ``OSError`` for a path that cannot be opened or is not a regular file.  The
    open never blocks: ``O_NONBLOCK`` keeps a FIFO without a writer (or a device) from
    waiting forever, and the type is checked on the open descriptor before any read.
    """
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode):
            code = errno.EISDIR if stat_mod.S_ISDIR(st.st_mode) else errno.EINVAL
            raise OSError(code, "not a regular file", os.fspath(path))
        os.set_blocking(fd, True)
        return hash_fd(fd, st.st_size, progress)
    finally:
        os.close(fd)


def _i64(value: int) -> int:
    """An unsigned 64-bit value as SQLite's signed INTEGER (two's complement)."""
    return value - _U64 if value > _I64_MAX else value


def _u64(value: int) -> int:
    return value + _U64 if value < 0 else value


class _Flight:
    """One running computation; waiters read ``result`` or ``error`` once ``done`` is set.

    Neither set after ``done`` means the leader was cancelled: a waiter takes over.
    """

    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: Digests | None = None
        self.error: Exception | None = None


_COLUMNS = ("dev", "ino", "size", "mtime_ns", *ALGORITHMS, "created_at")
_CREATE = """
CREATE TABLE IF NOT EXISTS digests (
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    crc32 INTEGER NOT NULL,
    crc32c INTEGER NOT NULL,
    crc64xz INTEGER NOT NULL,       -- unsigned 64-bit stored as signed
    crc64nvme INTEGER NOT NULL,     -- unsigned 64-bit stored as signed
    sha1 BLOB NOT NULL,
    sha256 BLOB NOT NULL,
    xxh3_128 BLOB NOT NULL,
    created_at INTEGER NOT NULL,    -- time.time_ns() of the insert; trimming drops the oldest
    PRIMARY KEY (dev, ino, size, mtime_ns)
)
"""
_SELECT = (
    f"SELECT {', '.join(ALGORITHMS)} FROM digests"
    " WHERE dev = ? AND ino = ? AND size = ? AND mtime_ns = ?"
)
_INSERT = (
    f"INSERT OR REPLACE INTO digests ({', '.join(_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(_COLUMNS))})"
)
_TRIM = (
    "DELETE FROM digests WHERE rowid IN"
    " (SELECT rowid FROM digests ORDER BY created_at, rowid LIMIT ?)"
)


class DigestCache:
    """Digests of file versions: in-memory LRU, then SQLite, then a bounded worker pool.

    ``path`` is the SQLite file (created with its parent directory if missing; WAL mode,
    ``synchronous=NORMAL``).  At most ``max_jobs`` files are hashed at once.  The table is
    trimmed to ``max_rows`` (oldest first) at open and every ``trim_every`` inserts.
    ``hasher`` replaces :func:`hash_fd` in the workers (default: this module's
    ``hash_fd``, looked up at call time).  ``busy_timeout`` bounds how long a statement
    may wait for another process's write lock, since it runs on the event loop.

    Use from one thread only (the Trio thread that created it).
    """

    def __init__(
        self,
        path: os.PathLike[str] | str,
        *,
        max_jobs: int = 2,
        max_rows: int = 100_000,
        lru_size: int = 4096,
        trim_every: int = 1000,
        busy_timeout: float = 0.25,
        hasher: Hasher | None = None,
    ) -> None:
        if max_rows < 1 or lru_size < 0 or trim_every < 1:
            raise ValueError("max_rows and trim_every must be >= 1, lru_size >= 0")
        self._path = os.fspath(path)
        self._max_rows = max_rows
        self._lru_size = lru_size
        self._trim_every = trim_every
        self._hasher = hasher
        self._limiter = trio.CapacityLimiter(max_jobs)
        self._lru: OrderedDict[FileKey, Digests] = OrderedDict()
        self._flights: dict[FileKey, _Flight] = {}
        self._scheduled: set[FileKey] = set()
        self._inserts = 0
        self._stopping = threading.Event()
        self._db: sqlite3.Connection | None = self._open(busy_timeout)
        self._trim()

    # --- SQLite ------------------------------------------------------------------------

    def _open(self, busy_timeout: float) -> sqlite3.Connection:
        private_sqlite(self._path)  # 0600, and so are SQLite's -wal/-shm
        db = sqlite3.connect(self._path, timeout=busy_timeout, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            (version,) = db.execute("PRAGMA user_version").fetchone()
            if version not in (0, _SCHEMA_VERSION):  # another layout: it is only a cache
                db.execute("DROP TABLE IF EXISTS digests")
            db.execute(_CREATE)
            db.execute("CREATE INDEX IF NOT EXISTS digests_created ON digests (created_at)")
            db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        except BaseException:
            db.close()
            raise
        return db

    def _trim(self) -> None:
        if self._db is None:
            return
        try:
            (rows,) = self._db.execute("SELECT count(*) FROM digests").fetchone()
            if rows > self._max_rows:
                self._db.execute(_TRIM, (rows - self._max_rows,))
        except sqlite3.Error:
            log.warning("digest cache: trimming %s failed", self._path, exc_info=True)

    def _select(self, key: FileKey) -> Digests | None:
        if self._db is None:
            return None
        try:
            row = self._db.execute(
                _SELECT, (_i64(key.dev), _i64(key.ino), key.size, key.mtime_ns)
            ).fetchone()
        except sqlite3.Error:
            log.warning("digest cache: lookup in %s failed", self._path, exc_info=True)
            return None
        if row is None:
            return None
        values: dict[str, int | bytes] = {}
        for name, value in zip(ALGORITHMS, row, strict=True):
            values[name] = _u64(value) if name in CRC_WIDTHS else bytes(value)
        return Digests.from_values(key.size, values)

    # --- public API --------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The SQLite file."""
        return self._path

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._db is None

    def lookup(self, key: FileKey) -> Digests | None:
        """The cached digests of ``key``, or None.  Synchronous and fast (LRU, then SQLite)."""
        hit = self._lru.get(key)
        if hit is not None:
            self._lru.move_to_end(key)
            return hit
        found = self._select(key)
        if found is not None:
            self._remember(key, found)
        return found

    def is_running(self, key: FileKey) -> bool:
        """True while ``key`` is being hashed (or queued for hashing)."""
        return key in self._flights or key in self._scheduled

    def store(self, key: FileKey, digests: Digests) -> None:
        """Record ``digests`` for ``key`` (e.g. computed by :func:`hash_path`)."""
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
        except sqlite3.Error:
            log.warning("digest cache: insert into %s failed", self._path, exc_info=True)
            return
        self._inserts += 1
        if self._inserts % self._trim_every == 0:
            self._trim()

    async def get(self, key: FileKey, fd: int) -> Digests:
        """The digests of ``key``: cached, or computed from ``fd`` in a worker thread.

        ``fd`` is duplicated before this coroutine first yields, so the caller may close
        its own descriptor as soon as the call has started.  Concurrent calls for the same
        key share one computation and all see its result or its error.  Raises
        :class:`FileChanged` (and stores nothing) if ``fd`` does not match ``key`` before
        or after hashing.
        """
        while True:
            cached = self.lookup(key)
            if cached is not None:
                return cached
            if self._db is None:
                raise RuntimeError("DigestCache is closed")
            own = os.dup(fd)  # ours until we return: the caller may close ``fd`` meanwhile
            try:
                flight = self._flights.get(key)
                if flight is None:
                    return await self._lead(key, own)
                await flight.done.wait()
            finally:
                os.close(own)
            if flight.result is not None:
                return flight.result
            if flight.error is not None:
                raise flight.error
            # The leader was cancelled before finishing: try again (and maybe lead).

    async def _lead(self, key: FileKey, fd: int) -> Digests:
        flight = _Flight()
        self._flights[key] = flight
        try:
            digests = await trio.to_thread.run_sync(
                self._work, fd, key, self._hasher or hash_fd, self._stopping, limiter=self._limiter
            )
            self.store(key, digests)
            flight.result = digests
            return digests
        except Exception as exc:
            flight.error = exc
            raise
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]
            flight.done.set()

    @staticmethod
    def _work(fd: int, key: FileKey, hasher: Hasher, stopping: threading.Event) -> Digests:
        """Worker thread: check the key, hash, check the key again."""
        if FileKey.from_stat(os.fstat(fd)) != key:
            raise FileChanged("file does not match its key")
        if hasher is hash_fd:

            def check_stop(_: int) -> None:
                if stopping.is_set():
                    raise FileChanged("digest cache is shutting down")

            digests = hash_fd(fd, key.size, check_stop)
        else:
            digests = hasher(fd, key.size)
        if FileKey.from_stat(os.fstat(fd)) != key:
            raise FileChanged("file changed while it was being hashed")
        return digests

    def schedule(self, nursery: trio.Nursery, key: FileKey, fd: int) -> None:
        """Warm the cache for ``key`` in the background (in ``nursery``).

        Does nothing if ``key`` is cached or already being hashed.  ``fd`` is duplicated
        now, so the caller may close it at once.  Never raises; failures are logged.
        """
        try:
            if self._db is None or self.is_running(key) or self.lookup(key) is not None:
                return
            own = os.dup(fd)
        except Exception:
            log.warning("digest cache: cannot schedule %s", key, exc_info=True)
            return
        try:
            spawn(nursery, f"hashing {key}", self._background, key, own, logger=log)
        except Exception:
            os.close(own)
            log.warning("digest cache: cannot schedule %s", key, exc_info=True)
            return
        self._scheduled.add(key)

    async def _background(self, key: FileKey, fd: int) -> None:
        try:
            await self.get(key, fd)
        except FileChanged as exc:
            log.debug("digest cache: %s not stored: %s", key, exc)
        except Exception:
            log.warning("digest cache: hashing %s failed", key, exc_info=True)
        finally:
            os.close(fd)
            self._scheduled.discard(key)

    def stop(self) -> None:
        """Make running computations give up at their next chunk (for a prompt shutdown)."""
        self._stopping.set()

    def close(self) -> None:
        """Close the database (idempotent).  Running computations finish but are not stored."""
        db, self._db = self._db, None
        if db is not None:
            db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _remember(self, key: FileKey, digests: Digests) -> None:
        if self._lru_size == 0:
            return
        self._lru[key] = digests
        self._lru.move_to_end(key)
        while len(self._lru) > self._lru_size:
            self._lru.popitem(last=False)
