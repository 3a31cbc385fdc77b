"""CRC-32s of a directory zip's files: cached, computed on the way, or in the background.

:class:`LocalCrcBook` is the local twin of :class:`~slipstream.zip.crc.CrcBook`: it knows
every member's CRC-32 or finds it, so a reply never waits for CRCs up front.  The digest
cache answers in the background (:meth:`~LocalCrcBook.load`: batched queries of
:meth:`~slipstream.digests.DigestCache.crc32s`), so not even that delays a first byte.
A small file that a reply streams whole gets its CRC on the way (:meth:`record`, from
the bytes the reply read).  The others (large files, whose data go
out with ``sendfile``, and files before a resumed range) are computed from disk by a
couple of workers, in ``trio.to_thread``: small files many per thread hop
(:data:`BATCH_FILES`, :data:`BATCH_BYTES`), large files in :data:`CHUNK` pieces read in
parallel and joined with CRC combine.

Every CRC computed is stored in the digest cache as a CRC-32-only row, in batches of
:data:`SAVE_BATCH` (one transaction each) and once more when the book closes.  A file that
is no longer the version listed fails its CRC (:class:`~slipstream.digests.FileChanged`)
for every reply waiting on it.
"""

from __future__ import annotations

import logging
from array import array
from collections import deque
from collections.abc import Sequence
from typing import Final

import trio

from slipstream.background import spawn
from slipstream.buffers import aligned_buffer
from slipstream.digests import DigestCache, FileChanged
from slipstream.digests.store import CrcReader
from slipstream.ext import combine

from .listing import LocalEntry
from .localfiles import crc_range, read_files

__all__ = [
    "BATCH_BYTES",
    "BATCH_FILES",
    "CHUNK",
    "SAVE_BATCH",
    "SMALL_FILE",
    "WORKERS",
    "LocalCrcBook",
]

log = logging.getLogger("slipstream.zip")

SMALL_FILE: Final = 64 * 1024
"""Files up to this size are read whole, in batches (and a reply streams their bytes
from memory); larger ones are read in :data:`CHUNK` pieces (and sent with ``sendfile``)."""
BATCH_FILES: Final = 256
"""Small files read in one thread hop, at most."""
BATCH_BYTES: Final = 4 * 1024 * 1024
"""Bytes of small files read in one thread hop, at most."""
CHUNK: Final = 16 * 1024 * 1024
"""Bytes of a large file per CRC computation (pieces run in parallel, joined by combine)."""
WORKERS: Final = 2
"""CRC computations running at once per book."""
SAVE_BATCH: Final = 4096
"""CRCs kept in memory before they are written to the digest cache in one transaction."""
_BUFFER: Final = 1024 * 1024
_LOOKUP: Final = 4096
"""Members looked up in the digest cache per call (bounded temporary memory)."""
_UNKNOWN: Final = -1


def _lookup(reader: CrcReader | None, entries: Sequence[LocalEntry]) -> list[int | None]:
    """The cached CRC-32 of each entry (worker thread)."""
    if reader is None:
        return [None] * len(entries)
    return reader.crc32s([entry.version() for entry in entries])


class _Files:
    """Queued work: a batch of small files (their indices)."""

    __slots__ = ("indices",)

    def __init__(self, indices: list[int]) -> None:
        self.indices = indices


class _Chunk:
    """Queued work: ``length`` bytes of large file ``index`` from ``offset``."""

    __slots__ = ("index", "length", "number", "offset")

    def __init__(self, index: int, number: int, offset: int, length: int) -> None:
        self.index = index
        self.number = number
        self.offset = offset
        self.length = length


class LocalCrcBook:
    """Every member's CRC-32: known, being computed, or computed on request.

    Use from the Trio thread only.  :meth:`start` looks the members up in the digest
    cache in the background; :meth:`close` cancels that and the workers and stores what
    was computed; the book answers nothing new after it.
    """

    def __init__(self, entries: Sequence[LocalEntry], digests: DigestCache | None) -> None:
        self.entries = entries
        self.digests = digests
        self._known = array("q", [_UNKNOWN]) * len(entries)
        """Every member's CRC-32, or :data:`_UNKNOWN` (an array: 8 bytes per member)."""
        for index, entry in enumerate(entries):
            if entry.size == 0:
                self._known[index] = 0
        self._loaded = trio.Event()
        """Set once the digest cache was asked for every member (:meth:`load`)."""
        self._started = False
        self._waiting: dict[int, trio.Event] = {}
        self._failed: dict[int, Exception] = {}
        self._queue: deque[_Files | _Chunk] = deque()
        self._queued: set[int] = set()
        """Members with work in the queue (so hurrying one that is not costs no scan)."""
        self._parts: dict[int, list[int | None]] = {}
        self._workers = 0
        self._scopes: set[trio.CancelScope] = set()
        self._cached = array("q", [_UNKNOWN]) * len(entries)
        """What the digest cache holds (:meth:`load`), so a CRC it has is not stored again."""
        self._unsaved: list[tuple[int, int]] = []
        """CRCs recorded and not stored yet: (member index, CRC)."""
        self._closed = False

    def start(self, nursery: trio.Nursery) -> None:
        """Look every member up in the digest cache, in ``nursery`` (see :meth:`load`);
        once.  A reply calls it once its first bytes are out; :meth:`ensure` calls it
        before anything is computed from disk."""
        if self._started:
            return
        self._started = True
        if self.digests is None or self.digests.closed:
            self._loaded.set()
        else:
            spawn(nursery, "directory zip CRC lookup", self.load, logger=log)

    async def load(self) -> None:
        """Fill in the CRCs the digest cache knows: batched queries of :data:`_LOOKUP`
        members each, on a connection of their own in a worker thread, so neither the
        first byte nor the event loop waits for them.  The workers start computing only
        after it; never raises an ``Exception`` (a failing cache is a miss)."""
        scope = trio.CancelScope()
        self._scopes.add(scope)
        reader = None
        try:
            with scope:
                if self.digests is not None and not self.digests.closed:
                    reader = self.digests.crc32_reader()
                entries = self.entries
                for first in range(0, len(entries) if reader else 0, _LOOKUP):
                    part = entries[first : first + _LOOKUP]
                    cached = await trio.to_thread.run_sync(_lookup, reader, part)
                    for index, value in enumerate(cached, start=first):
                        if value is None:
                            continue
                        self._cached[index] = value
                        if self._known[index] == _UNKNOWN:
                            self._known[index] = value
                            event = self._waiting.pop(index, None)
                            if event is not None:
                                event.set()
        finally:
            if reader is not None:
                reader.close()
            self._scopes.discard(scope)
            self._loaded.set()

    def known(self, index: int) -> int | None:
        """The CRC of member ``index`` if it is known now."""
        value = self._known[index]
        return None if value == _UNKNOWN else value

    def record(self, index: int, value: int) -> None:
        """Remember a CRC computed from the bytes of member ``index``.

        ``FileChanged`` if it contradicts the known one (the file was rewritten without
        a new size or mtime): the new value is kept for the next request, and the reply
        that found it stops before the member's descriptor.
        """
        old: int | None = self._known[index]
        if old == _UNKNOWN:
            old = None
        self._known[index] = value
        event = self._waiting.pop(index, None)
        if event is not None:
            event.set()
        if old == value:
            return
        self._unsaved.append((index, value))
        if len(self._unsaved) >= SAVE_BATCH:
            self._save()
        if old is not None:
            raise FileChanged(f"{self.entries[index].name} does not match its cached CRC-32")

    def _save(self) -> None:
        """Write the CRCs recorded so far to the digest cache (one transaction), but
        those it already holds (a lookup that answered after they were recorded)."""
        unsaved, self._unsaved = self._unsaved, []
        entries, cached = self.entries, self._cached
        rows = [(entries[i].version(), value) for i, value in unsaved if cached[i] != value]
        if rows and self.digests is not None and not self.digests.closed:
            try:
                self.digests.store_crc32s(rows)
            except Exception:
                log.warning(
                    "storing %d CRC-32s in the digest cache failed", len(rows), exc_info=True
                )

    def ensure(self, nursery: trio.Nursery, indices: Sequence[int]) -> None:
        """Queue background computations for those of ``indices`` not known or queued.

        Small files are queued in batches, large ones in :data:`CHUNK` pieces; at most
        :data:`WORKERS` tasks take them from the queue in order.  They run in
        ``nursery`` (which may live as long as the server), contain their own failures,
        and stop when the book closes.
        """
        if self._closed:
            return
        queued = len(self._queue)
        batch: list[int] = []
        batch_bytes = 0
        for index in indices:
            if self._known[index] != _UNKNOWN or index in self._waiting or index in self._failed:
                continue
            self._waiting[index] = trio.Event()
            self._queued.add(index)
            size = self.entries[index].size
            if size <= SMALL_FILE:
                batch.append(index)
                batch_bytes += size
                if len(batch) >= BATCH_FILES or batch_bytes >= BATCH_BYTES:
                    self._queue.append(_Files(batch))
                    batch, batch_bytes = [], 0
                continue
            pieces = range(0, size, CHUNK)
            self._parts[index] = [None] * len(pieces)
            for number, offset in enumerate(pieces):
                self._queue.append(_Chunk(index, number, offset, min(CHUNK, size - offset)))
        if batch:
            self._queue.append(_Files(batch))
        if len(self._queue) > queued:
            self.start(nursery)  # the workers compute only what the digest cache lacks
        while self._workers < WORKERS and self._queue:
            self._workers += 1
            spawn(nursery, "directory zip CRC worker", self._work, logger=log)

    async def get(self, index: int, nursery: trio.Nursery) -> int:
        """The CRC of member ``index``, computing it if needed (``FileChanged`` if the
        file is not the version listed)."""
        while True:
            value = self._known[index]
            if value != _UNKNOWN:
                return value
            failure = self._failed.get(index)
            if failure is not None:
                raise failure
            if self._closed:
                raise trio.ClosedResourceError("the CRC book is closed")
            self.ensure(nursery, [index])
            self._hurry(index)
            event = self._waiting.get(index)
            if event is not None:
                await event.wait()

    async def every(self, nursery: trio.Nursery) -> Sequence[int]:
        """Every member's CRC, computing those not known (the book's own array, 8 bytes
        per member, not a list of them: a central directory of 200,000 members needs
        no copy)."""
        known = self._known
        self.ensure(nursery, [i for i in range(len(known)) if known[i] == _UNKNOWN])  # batched
        for index in range(len(known)):
            if known[index] == _UNKNOWN:
                await self.get(index, nursery)
        return known

    def _hurry(self, index: int) -> None:
        """Move the queued work of member ``index`` to the front (a reply waits for it).

        Free when it is not queued (being computed already) or first in the queue: a
        reply waiting for thousands of CRCs in order asks for each in turn."""
        queue = self._queue
        if index not in self._queued or not queue:
            return
        head = queue[0]
        if head.index == index if isinstance(head, _Chunk) else index in head.indices:
            return
        mine = [
            work
            for work in self._queue
            if (work.index == index if isinstance(work, _Chunk) else index in work.indices)
        ]
        if mine and self._queue[0] is not mine[0]:
            for work in mine:
                self._queue.remove(work)
            self._queue.extendleft(reversed(mine))

    async def _work(self) -> None:
        scope = trio.CancelScope()
        self._scopes.add(scope)
        try:
            with scope, aligned_buffer(_BUFFER) as buffer:
                await self._loaded.wait()  # not a CRC the digest cache has
                while self._queue and not self._closed:
                    work = self._queue.popleft()
                    if isinstance(work, _Files):
                        self._queued.difference_update(work.indices)
                        indices = [i for i in work.indices if self._known[i] == _UNKNOWN]
                        if indices:
                            await self._files(indices)
                    elif self._known[work.index] == _UNKNOWN:
                        self._queued.discard(work.index)
                        await self._chunk(work, buffer)
                    else:
                        self._queued.discard(work.index)
                        self._parts.pop(work.index, None)
        finally:
            self._scopes.discard(scope)
            self._workers -= 1

    async def _files(self, indices: list[int]) -> None:
        entries = [self.entries[i] for i in indices]
        results = await trio.to_thread.run_sync(read_files, entries)
        for index, result in zip(indices, results, strict=True):
            if isinstance(result, FileChanged):
                self._fail(index, result)
            elif self._known[index] == _UNKNOWN:
                self.record(index, result[1])

    async def _chunk(self, work: _Chunk, buffer: memoryview) -> None:
        index = work.index
        parts = self._parts.get(index)
        if parts is None:  # the file failed already, or its CRC came from elsewhere
            return
        entry = self.entries[index]
        try:
            value = await trio.to_thread.run_sync(
                crc_range, entry, work.offset, work.length, buffer
            )
        except FileChanged as exc:
            self._fail(index, exc)
            return
        parts[work.number] = value
        if any(part is None for part in parts):
            return
        del self._parts[index]
        total = parts[0]
        assert total is not None
        for number, part in enumerate(parts[1:], start=1):
            assert part is not None
            length = min(CHUNK, entry.size - number * CHUNK)
            total = combine("crc32", total, part, length)
        if self._known[index] == _UNKNOWN:
            self.record(index, total)

    def _fail(self, index: int, failure: Exception) -> None:
        log.warning("directory zip: %s", failure)
        self._parts.pop(index, None)
        self._failed[index] = failure
        event = self._waiting.pop(index, None)
        if event is not None:
            event.set()

    def close(self) -> None:
        """Stop the workers, store the CRCs computed, wake whoever still waits
        (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for scope in self._scopes:
            scope.cancel()
        self._queue.clear()
        self._queued.clear()
        self._save()
        for event in self._waiting.values():
            event.set()
        self._waiting.clear()
