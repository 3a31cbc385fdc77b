"""Resumable zip bodies of remote objects: manifests, CRC-32s, and the streamed body.

A :class:`ZipSource` is one manifest made live: the deterministic layout
(:mod:`slipstream.zipplan`), the probed objects, the headers to send upstream, and a
:class:`CrcBook` that knows or finds every member's CRC-32.  :meth:`ZipSource.body`
returns a :class:`ZipBody` for any byte range; the connection sends it.

CRCs are needed only in the data descriptors and the central directory, so a reply
never waits for them up front.  A member whose data a reply streams whole gets its CRC
computed on the way (just in time for its descriptor, which follows it); the CRCs of
the other members the reply needs (a resume that starts in the middle needs all the
earlier ones for the central directory) are computed in the background at once by
ranged fetches of :data:`CRC_CHUNK` bytes, several at a time per host, joined with CRC
combine.  Every CRC lands in the SQLite cache keyed by (URI, size, validator).

Nothing corrupt is ever sent: an upstream answer that does not match the manifest
(validator, size, range) fails the read, and a recomputed CRC that differs from the
cached one stops the reply before that member's descriptor.  The reply is then cut
(the connection closes short of its ``Content-Length``) and the source remembers the
failure, so later requests get a clear error.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final
from urllib.parse import urlsplit

import trio

from slipstream.ext import combine, crc

from .fetch import Fetcher, FetchError
from .send import BodyTruncated, StreamedBody, send_all_within
from .zipplan import Piece, ZipLayout
from .zipremote import CheckUrl, MemberChanged, RemoteObject, read_member
from .zipstate import ZipState

__all__ = ["CRC_CHUNK", "CrcBook", "ZipBody", "ZipSource"]

log = logging.getLogger("slipstream.zip")

CRC_CHUNK: Final = 16 * 1024 * 1024
"""Bytes per ranged fetch when a CRC is computed in the background."""
PER_HOST: Final = 4
"""Background CRC fetches running at once per upstream host."""
WORKERS: Final = 8
"""Members whose CRCs are computed at once (per zip source)."""
_COALESCE: Final = 64 * 1024


class CrcBook:
    """Every member's CRC-32: known, being computed, or computed on request."""

    def __init__(
        self,
        objects: Sequence[RemoteObject],
        state: ZipState | None,
        fetcher: Fetcher,
        headers: Sequence[tuple[str, str]],
        check_url: CheckUrl,
    ) -> None:
        self.objects = objects
        self.state = state
        self.fetcher = fetcher
        self.headers = headers
        self.check_url = check_url
        self._known: dict[int, int] = {}
        self._waiting: dict[int, trio.Event] = {}
        self._failed: dict[int, BaseException] = {}
        self._hosts: dict[str, trio.Semaphore] = {}
        self._queue: deque[int] = deque()
        self._workers = 0
        for index, obj in enumerate(objects):
            if obj.size == 0:
                self._known[index] = 0
            elif state is not None:
                cached = state.get_crc(obj.uri, obj.size, obj.validator)
                if cached is not None:
                    self._known[index] = cached

    def known(self, index: int) -> int | None:
        """The CRC of member ``index`` if it is known now."""
        return self._known.get(index)

    def record(self, index: int, value: int) -> None:
        """Remember a CRC computed while streaming; ``MemberChanged`` if it contradicts one."""
        old = self._known.get(index)
        if old is not None and old != value:
            raise MemberChanged(f"{self.objects[index].uri}: CRC-32 differs from the cached one")
        self._known[index] = value
        obj = self.objects[index]
        if self.state is not None:
            self.state.put_crc(obj.uri, obj.size, obj.validator, value)
        event = self._waiting.pop(index, None)
        if event is not None:
            event.set()

    def ensure(self, nursery: trio.Nursery, indices: Sequence[int]) -> None:
        """Queue background computations for those of ``indices`` not known or queued.

        A few workers (at most :data:`WORKERS`) take members from the queue in order, so
        a request that needs a thousand CRCs starts a handful of tasks, not a thousand.
        """
        for index in indices:
            if index in self._known or index in self._waiting or index in self._failed:
                continue
            self._waiting[index] = trio.Event()
            self._queue.append(index)
        while self._workers < WORKERS and self._queue:
            self._workers += 1
            nursery.start_soon(self._work)

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
                    del self._failed[index]  # a network failure: the next request retries
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

    async def _compute(self, index: int) -> None:
        obj = self.objects[index]
        chunks = [(o, min(CRC_CHUNK, obj.size - o)) for o in range(0, obj.size, CRC_CHUNK)]
        values: list[int] = [0] * len(chunks)

        async def one(n: int, offset: int, length: int) -> None:
            async with self._host(obj.uri):
                value = 0
                reader = read_member(
                    self.fetcher, obj, offset, length, self.headers, self.check_url
                )
                async with contextlib.aclosing(reader) as data:
                    async for chunk in data:
                        value = crc("crc32", chunk, value)
                values[n] = value

        try:
            async with trio.open_nursery() as nursery:
                for n, (offset, length) in enumerate(chunks):
                    nursery.start_soon(one, n, offset, length)
            total = values[0]
            for (_, length), value in zip(chunks[1:], values[1:], strict=True):
                total = combine("crc32", total, value, length)
            self.record(index, total)
        except* (FetchError, MemberChanged) as group:
            failure: BaseException = group
            while isinstance(failure, BaseExceptionGroup):
                failure = failure.exceptions[0]
            log.warning("CRC of %s failed: %s", obj.uri, failure)
            self._failed[index] = failure
            event = self._waiting.pop(index, None)
            if event is not None:
                event.set()


class ZipSource:
    """One manifest, live: layout + objects + CRCs; makes :class:`ZipBody` replies."""

    def __init__(
        self,
        layout: ZipLayout,
        objects: Sequence[RemoteObject],
        fetcher: Fetcher,
        headers: Sequence[tuple[str, str]],
        check_url: CheckUrl,
        state: ZipState | None = None,
    ) -> None:
        if len(layout.members) != len(objects):
            raise ValueError("layout and objects differ in length")
        self.layout = layout
        self.objects = objects
        self.fetcher = fetcher
        self.headers = headers
        self.check_url = check_url
        self.crcs = CrcBook(objects, state, fetcher, headers, check_url)
        self.failure: BaseException | None = None
        """Set when an upstream stopped matching the manifest (later replies must fail)."""
        self._central: bytes | None = None

    def body(
        self,
        start: int,
        stop: int,
        background: trio.Nursery,
        on_complete: Callable[[int, int], None] | None = None,
    ) -> ZipBody:
        """The bytes ``[start, stop)`` of the zip; ``background`` runs CRC computations.

        ``on_complete(start, stop)`` is called once every byte was handed to the socket.
        """
        return ZipBody(self, start, stop, background, on_complete)

    async def central(self, nursery: trio.Nursery) -> bytes:
        """The central directory and end records (every CRC needed)."""
        if self._central is None:
            self.crcs.ensure(nursery, range(len(self.objects)))
            values = [await self.crcs.get(i, nursery) for i in range(len(self.objects))]
            self._central = self.layout.central_bytes(values)
        return self._central


class ZipBody(StreamedBody):
    """``[start, stop)`` of a :class:`ZipSource`'s zip, produced while it is sent."""

    def __init__(
        self,
        source: ZipSource,
        start: int,
        stop: int,
        background: trio.Nursery,
        on_complete: Callable[[int, int], None] | None,
    ) -> None:
        self.source = source
        self.start = start
        self.stop = stop
        self.background = background
        self.on_complete = on_complete

    @property
    def total(self) -> int:
        return self.stop - self.start

    def _streamed_whole(self) -> set[int]:
        """Members whose data this reply streams from their first to their last byte."""
        layout = self.source.layout
        return {
            p.index
            for p in layout.pieces(self.start, self.stop)
            if p.kind == "data" and p.skip == 0 and p.length == layout.members[p.index].size
        }

    async def write(self, stream: trio.SocketStream, head: bytes, send_timeout: float) -> None:
        source = self.source
        layout = source.layout
        if source.failure is not None:
            raise BodyTruncated(f"zip source failed earlier: {source.failure}")
        whole = self._streamed_whole()
        needed = [i for i in layout.crcs_needed(self.start, self.stop) if i not in whole]
        source.crcs.ensure(self.background, needed)
        pending = bytearray(head)
        try:
            for piece in layout.pieces(self.start, self.stop):
                end = piece.skip + piece.length
                if piece.kind == "data":
                    if pending:
                        await send_all_within(stream, pending, send_timeout)
                        pending.clear()
                    await self._send_data(stream, piece, whole, send_timeout)
                    continue
                if piece.kind == "header":
                    data = layout.header_bytes(piece.index)
                elif piece.kind == "descriptor":
                    value = await source.crcs.get(piece.index, self.background)
                    data = layout.descriptor_bytes(piece.index, value)
                else:
                    data = await source.central(self.background)
                pending += data[piece.skip : end]
                if len(pending) >= _COALESCE:
                    await send_all_within(stream, pending, send_timeout)
                    pending.clear()
            if pending:
                await send_all_within(stream, pending, send_timeout)
        except (FetchError, MemberChanged) as exc:
            if isinstance(exc, MemberChanged):
                source.failure = exc
            log.warning("zip reply cut: %s", exc)
            raise BodyTruncated(f"zip member failed: {exc}") from exc
        if self.on_complete is not None:
            self.on_complete(self.start, self.stop)

    async def _send_data(
        self, stream: trio.SocketStream, piece: Piece, whole: set[int], send_timeout: float
    ) -> None:
        """Relay one member's bytes; a member streamed whole gets its CRC on the way."""
        source = self.source
        index = piece.index
        obj = source.objects[index]
        value = 0
        reader = read_member(
            source.fetcher, obj, piece.skip, piece.length, source.headers, source.check_url
        )
        async with contextlib.aclosing(reader) as data:
            async for chunk in data:
                if index in whole:
                    value = crc("crc32", chunk, value)
                await send_all_within(stream, chunk, send_timeout)
        if index in whole:
            source.crcs.record(index, value)
