"""CRC-32s of remote zip members: cached, computed in the background, or on the way.

A :class:`CrcBook` knows every member's CRC-32 or finds it.  CRCs are needed only in the
data descriptors and the central directory of a streamed zip
(:mod:`slipstream.zip.stream`), so a reply never waits for them up front: a member a
reply streams whole gets its CRC computed on the way (:meth:`CrcBook.record`); the
others are computed in the background by ranged fetches of :data:`CRC_CHUNK` bytes,
several at a time per host, joined with CRC combine (one read of the whole object when
its upstream ignores Range).  Every CRC lands in the SQLite cache keyed by
(URI, size, validator); that write runs in a worker thread, and a cache that refuses it
is logged, not fatal (the CRC stays known in memory).

The background workers run in a nursery that may live as long as the server, so they
contain their own failures (:func:`slipstream.background.spawn`): a member whose CRC
cannot be computed is marked failed for the replies waiting on it, whatever the error.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from typing import Final
from urllib.parse import urlsplit

import trio

from slipstream.background import spawn
from slipstream.ext import combine, crc
from slipstream.fetch import Fetcher, FetchError

from .remote import SKIP_LIMIT, CheckUrl, MemberChanged, RemoteObject, read_member
from .state import ZipState

__all__ = ["CRC_CHUNK", "PER_HOST", "SAVE_BATCH", "WORKERS", "CrcBook", "first_failure"]

log = logging.getLogger("slipstream.zip")

CRC_CHUNK: Final = 16 * 1024 * 1024
"""Bytes per ranged fetch when a CRC is computed in the background."""
PER_HOST: Final = 4
"""Background CRC fetches running at once per upstream host."""
WORKERS: Final = 8
"""Members whose CRCs are computed at once (per zip source)."""
SAVE_BATCH: Final = 32
"""CRCs a streaming reply records before they are stored (in one transaction)."""
STORE_WAIT: Final = 5.0
"""Seconds a reply waits for its CRCs to be stored before its central directory goes."""


def first_failure(group: BaseExceptionGroup[Exception]) -> Exception:
    """The first leaf exception of a (nested) exception group."""
    failure: BaseException = group
    while isinstance(failure, BaseExceptionGroup):
        failure = failure.exceptions[0]
    assert isinstance(failure, Exception)
    return failure


class CrcBook:
    """Every member's CRC-32: known, being computed, or computed on request.

    ``unavailable`` is the set of member indices whose last fetch failed (shared with the
    :class:`ZipSource`); a background computation adds to it and removes from it.
    """

    def __init__(
        self,
        objects: Sequence[RemoteObject],
        state: ZipState | None,
        fetcher: Fetcher,
        headers: Sequence[tuple[str, str]],
        check_url: CheckUrl,
        *,
        skip_limit: int = SKIP_LIMIT,
        unavailable: set[int] | None = None,
    ) -> None:
        self.objects = objects
        self.state = state
        self.fetcher = fetcher
        self.headers = headers
        self.check_url = check_url
        self.skip_limit = skip_limit
        self.unavailable: set[int] = unavailable if unavailable is not None else set()
        self._known: dict[int, int] = {}
        self._waiting: dict[int, trio.Event] = {}
        self._failed: dict[int, Exception] = {}
        self._hosts: dict[str, trio.Semaphore] = {}
        self._queue: deque[int] = deque()
        self._workers = 0
        self._unsaved: list[tuple[str, int, str, int]] = []
        """CRCs recorded but not stored yet: (uri, size, validator, crc)."""
        self._saving = False
        self._save_done = trio.Event()
        """Set when the save in progress (if any) has ended."""
        cached: Sequence[int | None] = [None] * len(objects)
        if state is not None:
            cached = state.get_crcs([(obj.uri, obj.size, obj.validator) for obj in objects])
        for index, (obj, value) in enumerate(zip(objects, cached, strict=True)):
            if obj.size == 0:
                self._known[index] = 0
            elif value is not None:
                self._known[index] = value

    def known(self, index: int) -> int | None:
        """The CRC of member ``index`` if it is known now."""
        return self._known.get(index)

    async def record(self, index: int, value: int, background: trio.Nursery | None = None) -> None:
        """Remember a computed CRC; ``MemberChanged`` if it contradicts the known one.

        The value is usable at once.  Storing it in the cache happens in a worker
        thread: awaited here, or, given a ``background`` nursery, in a task there that
        writes every CRC recorded meanwhile in one transaction, once :data:`SAVE_BATCH`
        are waiting or the reply calls :meth:`flush` (so a reply that streams many
        members never waits for the store between them, and pays one thread hop and
        one transaction per batch, not per member).  A store that refuses it
        is logged, not fatal (the CRC is then only known to this process).
        """
        old = self._known.get(index)
        if old is not None and old != value:
            raise MemberChanged(f"{self.objects[index].uri}: CRC-32 differs from the cached one")
        self._known[index] = value
        self.unavailable.discard(index)
        event = self._waiting.pop(index, None)
        if event is not None:
            event.set()
        if self.state is None:
            return
        obj = self.objects[index]
        self._unsaved.append((obj.uri, obj.size, obj.validator, value))
        if background is None:
            await self._save()
        elif len(self._unsaved) >= SAVE_BATCH:
            self.flush(background)

    def flush(self, background: trio.Nursery) -> None:
        """Store the CRCs :meth:`record` kept for a batch, in a task in ``background``
        (a reply calls it when it ends, streamed whole or not)."""
        if self._unsaved and not self._saving and self.state is not None:
            self._begin_save()
            background.start_soon(self._save)

    async def stored(self, background: trio.Nursery) -> None:
        """Store the CRCs recorded so far and wait until they are (at most
        :data:`STORE_WAIT` seconds): a reply calls it before its last bytes leave, so a
        client that asks for a new manifest of the same URIs as soon as it has them
        finds them cached."""
        self.flush(background)
        if self._saving:
            with trio.move_on_after(STORE_WAIT):
                await self._save_done.wait()

    def _begin_save(self) -> None:
        self._saving = True
        self._save_done = trio.Event()

    async def _save(self) -> None:
        """Store the CRCs recorded so far, a batch per transaction, until none is left;
        never raises an ``Exception`` (a failure is logged)."""
        assert self.state is not None
        if not self._saving:  # (called directly, not through flush)
            self._begin_save()
        try:
            while self._unsaved:
                rows, self._unsaved = self._unsaved, []
                try:
                    await trio.to_thread.run_sync(self.state.put_crcs, rows)
                except Exception as exc:
                    uris = ", ".join(row[0] for row in rows[:5])
                    more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
                    log.warning(
                        "storing the CRC-32s of %s%s in the cache failed (kept in memory): %r",
                        uris,
                        more,
                        exc,
                    )
        finally:
            self._saving = False
            self._save_done.set()

    def ensure(self, nursery: trio.Nursery, indices: Sequence[int]) -> None:
        """Queue background computations for those of ``indices`` not known or queued.

        A few workers (at most :data:`WORKERS`) take members from the queue in order, so
        a request that needs a thousand CRCs starts a handful of tasks, not a thousand.
        They run in ``nursery`` (which may live as long as the server) and contain their
        own failures: a member whose CRC cannot be computed is marked failed, and the
        request waiting for it sees that failure.
        """
        for index in indices:
            if index in self._known or index in self._waiting or index in self._failed:
                continue
            self._waiting[index] = trio.Event()
            self._queue.append(index)
        while self._workers < WORKERS and self._queue:
            self._workers += 1
            spawn(nursery, "zip CRC worker", self._work, logger=log)

    async def _work(self) -> None:
        try:
            while self._queue:
                await self._compute(self._queue.popleft())
        finally:
            self._workers -= 1

    def _hurry(self, index: int) -> None:
        """Move a queued member to the front (a reply is waiting for it now)."""
        if self._queue and self._queue[0] != index and index in self._queue:
            self._queue.remove(index)
            self._queue.appendleft(index)

    async def get(self, index: int, nursery: trio.Nursery) -> int:
        """The CRC of member ``index``, computing it if needed."""
        while True:
            value = self._known.get(index)
            if value is not None:
                return value
            failure = self._failed.get(index)
            if failure is not None:
                if not isinstance(failure, MemberChanged):
                    del self._failed[index]  # not a changed object: the next request retries
                raise failure
            self.ensure(nursery, [index])
            self._hurry(index)
            event = self._waiting.get(index)
            if event is not None:
                await event.wait()

    def _host(self, uri: str) -> trio.Semaphore:
        host = urlsplit(uri).netloc
        if host not in self._hosts:
            self._hosts[host] = trio.Semaphore(PER_HOST)
        return self._hosts[host]

    async def _crc(self, obj: RemoteObject) -> int:
        """The CRC-32 of ``obj`` from ranged fetches of :data:`CRC_CHUNK` bytes (one read of
        the whole object when its upstream ignores Range), joined with CRC combine."""
        size = obj.size
        if obj.ranges:
            chunks = [(o, min(CRC_CHUNK, size - o)) for o in range(0, size, CRC_CHUNK)]
        else:
            chunks = [(0, size)]
        values: list[int] = [0] * len(chunks)

        async def one(n: int, offset: int, length: int) -> None:
            async with self._host(obj.uri):
                value = 0
                reader = read_member(
                    self.fetcher,
                    obj,
                    offset,
                    length,
                    self.headers,
                    self.check_url,
                    skip_limit=self.skip_limit,
                )
                async with contextlib.aclosing(reader) as data:
                    async for chunk in data:
                        value = crc("crc32", chunk, value)
                values[n] = value

        async with trio.open_nursery() as nursery:
            for n, (offset, length) in enumerate(chunks):
                nursery.start_soon(one, n, offset, length)
        total = values[0]
        for (_, length), value in zip(chunks[1:], values[1:], strict=True):
            total = combine("crc32", total, value, length)
        return total

    async def _compute(self, index: int) -> None:
        """Compute, record, or mark member ``index`` failed; never raises an Exception."""
        obj = self.objects[index]
        try:
            await self.record(index, await self._crc(obj))
        except* (FetchError, MemberChanged) as group:
            failure = first_failure(group)
            log.warning("CRC of %s failed: %s", obj.uri, failure)
            self._fail(index, failure)
        except* Exception as group:
            failure = first_failure(group)
            log.error("CRC of %s failed unexpectedly", obj.uri, exc_info=failure)
            self._fail(index, failure)

    def _fail(self, index: int, failure: Exception) -> None:
        if isinstance(failure, FetchError):
            self.unavailable.add(index)
        self._failed[index] = failure
        event = self._waiting.pop(index, None)
        if event is not None:
            event.set()
