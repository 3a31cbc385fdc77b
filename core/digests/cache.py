"""Digests on demand: :class:`DigestCache` answers from the store or hashes the file once.

A lookup goes to the :class:`~slipstream.digests.store.DigestStore` (LRU, then SQLite).  A
miss is hashed by :func:`~slipstream.digests.hashing.hash_fd` in ``trio.to_thread`` under a
:class:`trio.CapacityLimiter`; concurrent requests for the same file version share one
computation (one "flight").  :meth:`DigestCache.schedule` warms the cache in the
background, so a reply never has to wait for a cold large file; such a task logs and
contains its own failure (:func:`slipstream.background.spawn`), since its nursery lives as
long as the server.

Threads: the store and the flights are touched only by the thread that created the cache
(the Trio event-loop thread); worker threads only read and hash a duplicated file
descriptor.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Protocol, Self

import trio

from slipstream.background import spawn

from .hashing import Hasher, complete_digests, hash_fd
from .store import CrcReader, DigestStore, Version
from .values import Digests, FileChanged, FileKey

__all__ = ["CacheObserver", "DigestCache"]

log = logging.getLogger("slipstream.digests")


class CacheObserver(Protocol):
    """What a :class:`DigestCache` reports (operators' counters); called on the Trio thread."""

    def hit(self) -> None:
        """A request for a file version's digests was answered from the cache."""

    def miss(self) -> None:
        """A file version had to be hashed (concurrent requests share one computation)."""

    def hashed(self, seconds: float) -> None:
        """A computation ended after ``seconds`` of hashing in a worker thread."""


class _Flight:
    """One running computation; waiters read ``result`` or ``error`` once ``done`` is set.

    Neither set after ``done`` means the leader was cancelled: a waiter takes over.
    """

    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: Digests | None = None
        self.error: Exception | None = None


class DigestCache:
    """Digests of file versions: in-memory LRU, then SQLite, then a bounded worker pool.

    ``path`` is the SQLite file, ``max_rows``, ``lru_size`` and
    ``busy_timeout`` are those of its :class:`~slipstream.digests.store.DigestStore` (a
    statement runs on the event loop, so ``busy_timeout`` keeps another process's write
    lock from stalling it for long).  At most ``max_jobs`` files are hashed at once.
    ``hasher`` replaces :func:`~slipstream.digests.hashing.hash_fd` in the workers.
    ``observer`` is told of hits, misses and hashing time (nothing is counted without one).

    Use from one thread only (the Trio thread that created it).
    """

    def __init__(
        self,
        path: os.PathLike[str] | str,
        *,
        max_jobs: int = 2,
        max_rows: int = 100_000,
        lru_size: int = 4096,
        busy_timeout: float = 0.25,
        hasher: Hasher | None = None,
        observer: CacheObserver | None = None,
    ) -> None:
        self._hasher = hasher
        self._observer = observer
        self._limiter = trio.CapacityLimiter(max_jobs)
        self._flights: dict[FileKey, _Flight] = {}
        self._scheduled: set[FileKey] = set()
        self._stopping = threading.Event()
        self._store = DigestStore(
            path,
            max_rows=max_rows,
            lru_size=lru_size,
            busy_timeout=busy_timeout,
        )

    @property
    def path(self) -> str:
        """The SQLite file."""
        return self._store.path

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._store.closed

    def lookup(self, key: FileKey) -> Digests | None:
        """The cached digests of ``key``, or None.  Synchronous and fast (LRU, then SQLite).

        A found row counts as a hit for the observer; a miss is counted when the file
        version is hashed (:meth:`get`), so a lookup followed by a computation counts once.
        """
        found = self._store.lookup(key)
        if found is not None and self._observer is not None:
            self._observer.hit()
        return found

    def is_running(self, key: FileKey) -> bool:
        """True while ``key`` is being hashed (or queued for hashing)."""
        return key in self._flights or key in self._scheduled

    def store(self, key: FileKey, digests: Digests) -> None:
        """Record ``digests`` for ``key`` (e.g. computed by :func:`hash_path`)."""
        self._store.store(key, digests)

    def crc32s(self, versions: Sequence[Version]) -> list[int | None]:
        """The cached CRC-32 of every ``(dev, ino, size, mtime_ns)``, or None (a few
        queries for any number of files)."""
        return self._store.crc32s(versions)

    def crc32_reader(self) -> CrcReader | None:
        """A read-only connection for CRC-32 lookups from a worker thread (see
        :meth:`~slipstream.digests.store.DigestStore.crc32_reader`), or None."""
        return self._store.crc32_reader()

    def store_crc32s(self, rows: Sequence[tuple[Version, int]]) -> None:
        """Record the CRC-32 alone of each ``((dev, ino, size, mtime_ns), crc32)`` (one
        transaction): what a directory zip computes, without the other digests."""
        self._store.store_crc32s(rows)

    async def get(self, key: FileKey, fd: int, *, need: Iterable[str] = ()) -> Digests:
        """The digests of ``key``: cached, or computed from ``fd`` in a worker thread.

        A cached row that lacks an algorithm of ``need`` (one of
        :data:`~slipstream.digests.values.ON_DEMAND`, such as the SHA-1 a download job
        leaves out) is completed: only the missing algorithms are computed, in one read.
        A computed result is always complete.

        ``fd`` is duplicated before this coroutine first yields, so the caller may close
        its own descriptor as soon as the call has started.  Concurrent calls for the same
        key share one computation and all see its result or its error.  Raises
        :class:`FileChanged` (and stores nothing) if ``fd`` does not match ``key`` before
        or after hashing.
        """
        need = tuple(need)
        first = True
        while True:
            cached = self._store.lookup(key)
            if cached is not None and cached.has(need):
                if first and self._observer is not None:
                    self._observer.hit()
                return cached
            first = False
            if self.closed:
                raise RuntimeError("DigestCache is closed")
            own = os.dup(fd)  # ours until we return: the caller may close ``fd`` meanwhile
            try:
                flight = self._flights.get(key)
                if flight is None:
                    return await self._lead(key, own, cached)
                await flight.done.wait()
            finally:
                os.close(own)
            if flight.result is not None:
                return flight.result
            if flight.error is not None:
                raise flight.error
            # The leader was cancelled before finishing: try again (and maybe lead).

    async def _lead(self, key: FileKey, fd: int, partial: Digests | None) -> Digests:
        flight = _Flight()
        self._flights[key] = flight
        if self._observer is not None:
            self._observer.miss()
        try:
            digests, seconds = await trio.to_thread.run_sync(
                self._work,
                fd,
                key,
                self._hasher or hash_fd,
                self._stopping,
                partial,
                limiter=self._limiter,
            )
            if self._observer is not None:
                self._observer.hashed(seconds)
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
    def _work(
        fd: int,
        key: FileKey,
        hasher: Hasher,
        stopping: threading.Event,
        partial: Digests | None,
    ) -> tuple[Digests, float]:
        """Worker thread: check the key, hash (only what ``partial`` lacks, when given),
        check the key again; the digests and the seconds spent hashing."""
        if FileKey.from_stat(os.fstat(fd)) != key:
            raise FileChanged("file does not match its key")
        started = time.perf_counter()
        if hasher is hash_fd:

            def check_stop(_: int) -> None:
                if stopping.is_set():
                    raise FileChanged("digest cache is shutting down")

            if partial is not None:
                digests = complete_digests(fd, partial, check_stop)
            else:
                digests = hash_fd(fd, key.size, check_stop)
        else:
            digests = hasher(fd, key.size)
        seconds = time.perf_counter() - started
        if FileKey.from_stat(os.fstat(fd)) != key:
            raise FileChanged("file changed while it was being hashed")
        return digests, seconds

    def schedule(self, nursery: trio.Nursery, key: FileKey, fd: int) -> None:
        """Warm the cache for ``key`` in the background (in ``nursery``).

        Does nothing if ``key`` is cached or already being hashed.  ``fd`` is duplicated
        now, so the caller may close it at once.  Never raises; failures are logged.
        """
        try:
            if self.closed or self.is_running(key) or self._store.lookup(key) is not None:
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
        self._store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
