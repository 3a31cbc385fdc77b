"""The event loop's side of a zip reply sent by a send thread (:mod:`.sendthread`).

:class:`ThreadedSend` sends a :class:`~slipstream.zip.stream.ZipBody`'s pieces after
those it rendered before its head, with a send thread that sends the headers, relays the
bodies with their CRC-32 and sends the descriptors, back to back.  The loop renders the
other pieces and records each member's CRC-32 as the thread hands it back.

Two ways to hand the members:

- **Fetched by the thread** (:mod:`.threadfetch`), when every member is a plain
  ``http://`` object that honours ``Range``: the loop queues each member with its
  request's bytes (at most :data:`FETCH_WINDOW` not collected), and the thread writes
  the requests ahead, reads and checks each answer's head and relays the member.  The
  loop has no per-member task, wait or wake-up: measured on 1,000 members of 1 MiB, the
  loop's part per member was what held the thread back.  A member the thread gives up
  on (its request declined, an answer that is not exactly the range asked, a redirect,
  a body cut midway) is read on the general way from the byte it stopped at
  (:meth:`ThreadedSend._read_fallbacks`), which retries and reports the error.
- **Reads opened ahead** (:class:`~slipstream.zip.ahead.ReadAhead`): a task per member
  opens it with :func:`~slipstream.zip.remote.read_member` (the answer checked, nothing
  of the body read), at most :data:`IN_FLIGHT` are handed unfinished, and another task
  finishes each (:meth:`ThreadedSend._finish`).

Either way the bytes, their order, the cut positions and the errors are those of
sending the members one after the other on the event loop.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator
from functools import partial
from typing import TYPE_CHECKING, Final

import trio

from slipstream.fetch import FetchError
from slipstream.send import BodyWriter

from .ahead import CLOSE_TIMEOUT, OpenedAhead, ReadAhead
from .plan import Piece
from .remote import MemberChanged, Relay
from .sendthread import CrcMismatch, Lane, SendThread
from .threadfetch import REQUESTS_AHEAD, PlainFetch

if TYPE_CHECKING:
    from .stream import ZipBody

__all__ = ["FETCH_WINDOW", "IN_FLIGHT", "ThreadedSend"]

IN_FLIGHT: Final = 4
"""Members handed to a reply's send thread the general way and not finished yet, at most
(each holds its upstream connection and one pooled buffer until the thread has sent it)."""
FETCH_WINDOW: Final = 32
"""Members queued for the send thread to fetch itself and not collected yet, at most
(each is a few small objects; the thread writes at most ``REQUESTS_AHEAD`` requests)."""


def _crc_offset(zero: bytes, ones: bytes) -> int:
    """Where a data descriptor holds its CRC-32: the first byte that differs between it
    rendered with a CRC of 0 and of 0xFFFFFFFF."""
    return next(i for i, (a, b) in enumerate(zip(zero, ones, strict=True)) if a != b)


class _Flights:
    """The members a reply handed to its send thread: how many are unfinished (at most
    ``limit`` before :meth:`room` waits), and the earliest member's failure."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._count = 0
        self._changed = trio.Event()
        self._failed_at = -1
        self.failure: Exception | None = None

    @property
    def full(self) -> bool:
        """Whether :meth:`room` would wait."""
        return self._count >= self._limit

    def add(self) -> None:
        self._count += 1

    def failed(self, index: int, error: Exception) -> None:
        """A member not counted here failed (kept if it is the earliest)."""
        if self.failure is None or index < self._failed_at:
            self.failure, self._failed_at = error, index
        self._changed.set()
        self._changed = trio.Event()

    def landed(self, index: int, error: Exception | None) -> None:
        """One member finished (``error`` if it failed)."""
        if error is not None and (self.failure is None or index < self._failed_at):
            self.failure, self._failed_at = error, index
        self._count -= 1
        self._changed.set()
        self._changed = trio.Event()

    async def _until(self, limit: int, raising: bool) -> None:
        while self._count > limit:
            if raising and self.failure is not None:
                break
            await self._changed.wait()
        if raising and self.failure is not None:
            raise self.failure

    async def room(self) -> None:
        """Wait until another member may be handed; raise a failure of one handed."""
        await self._until(self._limit - 1, True)

    async def drained(self, *, raising: bool = True) -> None:
        """Wait until every member handed has finished (raise the earliest failure)."""
        await self._until(0, raising)


class ThreadedSend:
    """One reply's pieces after its head, sent by a send thread (see the module
    docstring); :meth:`run` in the reply's nursery."""

    def __init__(self, body: ZipBody, out: BodyWriter, nursery: trio.Nursery) -> None:
        self.body = body
        self.source = body.source
        self.out = out
        self.nursery = nursery
        self.flights = _Flights(IN_FLIGHT)
        self.sender: SendThread
        """The reply's send thread (set by :meth:`run`)."""
        self._crc_at: dict[int, int] = {}
        """Where a descriptor holds its CRC-32, by the descriptor's size."""
        self.fetching: deque[tuple[Piece, Lane]] = deque()
        """Members the thread fetches itself, not collected yet (in order)."""
        self._fell_back: deque[tuple[Piece, Lane]] = deque()
        """Members the thread gave up fetching itself, to read the general way."""
        self._fell = trio.Event()
        self._started = False

    async def run(self) -> None:
        """Send every piece; the earliest member's failure is raised.

        A failure leaves the members handed before it to be sent in full (the cut falls
        where the event loop's would)."""
        body, source, out, nursery, flights = (
            self.body,
            self.source,
            self.out,
            self.nursery,
            self.flights,
        )
        await out.flush()
        plain = source.sends_ahead
        pool = source.fetcher.pool if plain else None
        sender = self.sender = SendThread(out.stream.socket, out.send_timeout, pool)
        ahead: ReadAhead | None = None
        if plain:
            # Started once the first members it fetches itself are queued, so that it
            # writes their requests before it waits in the first member (read the
            # general way by ZipBody.open).
            nursery.start_soon(self._read_fallbacks)
        else:
            self._start()
            # The thread moves the bodies: a read ahead stops at its checked answer.
            ahead = ReadAhead(body._pieces, source.read, nursery, head_only=True)
        try:
            piece, reader, first = body._reading, body._reader, body._first
            if piece is not None and reader is not None:
                body._reading, body._reader, body._first = None, None, b""
                if ahead is not None:
                    ahead.fill()
                self._hand(sender, piece, reader, first, body._relay)
            while True:
                item = ahead.next() if ahead is not None else next(body._pieces, None)
                if item is None:
                    break
                if not self._started and (
                    len(self.fetching) >= REQUESTS_AHEAD
                    or isinstance(item, OpenedAhead)
                    or item.kind not in ("header", "data", "descriptor")
                    or (item.kind == "descriptor" and item.index not in body._whole)
                ):
                    self._start()
                if isinstance(item, OpenedAhead):
                    await self._room()
                    assert ahead is not None
                    ahead.fill()
                    reader, first = await body._take(item)
                    self._hand(sender, item.piece, reader, first, item.relay)
                    # Let its task queue the relay before the thread gets to the member.
                    await trio.lowlevel.cancel_shielded_checkpoint()
                elif item.kind == "data":
                    if ahead is None:
                        await self._fetch_room()
                        if self._fetch_soon(sender, item):
                            continue
                        self._start()
                    await self._room()
                    if ahead is not None:
                        ahead.fill()
                    await self._open_and_hand(sender, item)
                elif item.kind == "descriptor" and item.index in body._whole:
                    continue  # the send thread sends it, with the CRC-32 it computed
                else:
                    if item.kind == "central":  # it needs the CRCs of the members in flight
                        await self._drained()
                        # Stored before the last bytes leave: a client that asks again
                        # at once finds them cached.
                        await source.crcs.stored(body.background)
                    sender.send(await body._render(item))
            self._start()
            await self._drained()
            source.crcs.flush(body.background)
            sender.close()
            await sender.ended.wait()
            if sender.failure is not None:
                raise sender.failure
        except Exception as exc:
            # What was handed before the failure is sent in full (so a resume has less
            # to fetch again), then the thread ends; an earlier member's failure wins.
            self._start()
            sender.close()
            await self._drained(raising=False)
            await sender.ended.wait()
            earlier = flights.failure
            if earlier is not None and earlier is not exc:
                raise earlier from None
            raise
        finally:
            self._start()  # (it then ends at once, releasing what it holds)
            sender.stop()

    def _start(self) -> None:
        """Start the send thread (once)."""
        if not self._started:
            self._started = True
            self.nursery.start_soon(self.sender.run)

    async def _room(self) -> None:
        """Wait until another member may be handed the general way (raising a failure)."""
        await self.flights.room()

    async def _drained(self, *, raising: bool = True) -> None:
        """Collect every member handed (see :meth:`_Flights.drained`)."""
        while self.fetching:
            await self._collect(*self.fetching.popleft())
        await self.flights.drained(raising=raising)

    # -- members the thread fetches itself ----------------------------------------------

    async def _fetch_room(self) -> None:
        """Collect the members the thread fetched that have ended, and the oldest while
        :data:`FETCH_WINDOW` are queued (raising a failure of a member handed)."""
        fetching = self.fetching
        while fetching and (len(fetching) >= FETCH_WINDOW or fetching[0][1].ended.done.is_set()):
            await self._collect(*fetching.popleft())
        failure = self.flights.failure
        if failure is not None:
            raise failure

    def _fetch_soon(self, sender: SendThread, piece: Piece) -> bool:
        """Queue a member for the thread to fetch itself (False: its request is not of
        the plain kind, it is read the general way)."""
        source = self.source
        obj = source.objects[piece.index]
        request = source.fetcher.plan_request(
            obj.uri,
            source.headers,
            check_url=source.check_url,
            byte_range=(piece.skip, piece.skip + piece.length - 1),
        )
        if request is None:
            return False
        fetch = PlainFetch(request, obj, piece.skip, piece.length)
        lane = self._lane(sender, piece, fetch)
        self.fetching.append((piece, lane))
        return True

    def _fell_back_on(self, piece: Piece, lane: Lane) -> None:
        """The thread gave up fetching ``lane``'s member itself (in the loop, outside any
        task): it counts as handed the general way from now on, and
        :meth:`_read_fallbacks` reads the rest."""
        self.flights.add()
        self._fell_back.append((piece, lane))
        self._fell.set()

    async def _read_fallbacks(self) -> None:
        """Read the rest of each member the thread gave up on the general way, through
        its lane (a task of the reply's nursery, cancelled at its end)."""
        source = self.source
        while True:
            await self._fell.wait()
            self._fell = trio.Event()
            while self._fell_back:
                piece, lane = self._fell_back.popleft()
                done = lane.fallback.value or 0
                relay = Relay()
                relay.out = lane
                reader = source.read(
                    piece.index, piece.skip + done, piece.length - done, relay=relay
                )
                self.nursery.start_soon(
                    self._finish, self.sender, lane, piece, reader, False, self.flights
                )
            upstreams = self.sender.upstreams
            if upstreams is not None:  # (the connections of the answers given up on)
                await upstreams.close_dropped()

    async def _collect(self, piece: Piece, lane: Lane) -> None:
        """Record the CRC-32 of a member the thread fetched, once it has ended; a failure
        is kept in :attr:`flights`, not raised (a member it gave up on is :meth:`_finish`'s)."""
        await lane.ended.done.wait()
        if lane.fallback.done.is_set():
            return
        try:
            await self._completed(lane, piece.index)
        except Exception as exc:
            self.flights.failed(piece.index, exc)

    async def _completed(self, lane: Lane, index: int) -> None:
        """Wait until the thread has sent member ``index`` whole, then record its CRC-32
        (``MemberChanged`` when the bytes had another CRC than the cached one)."""
        try:
            value = await lane.ended.wait()
        except CrcMismatch:
            uri = self.source.objects[index].uri
            raise MemberChanged(f"{uri}: CRC-32 differs from the cached one") from None
        self.source.unavailable.discard(index)
        if index in self.body._whole:
            await self.source.crcs.record(index, value, self.body.background)

    # -- members read the general way ---------------------------------------------------

    async def _open_and_hand(self, sender: SendThread, piece: Piece) -> None:
        """Open a member's read now (not ahead) and hand it."""
        source = self.source
        relay = Relay(head_only=True)
        reader = source.read(piece.index, piece.skip, piece.length, relay=relay)
        try:
            first = await anext(reader)
        except BaseException as exc:
            with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
                await reader.aclose()
            if isinstance(exc, FetchError):
                source.unavailable.add(piece.index)
            raise
        self._hand(sender, piece, reader, first, relay)

    def _lane(self, sender: SendThread, piece: Piece, fetch: PlainFetch | None = None) -> Lane:
        """Queue a member on the send thread: its data (``fetch``: the thread fetches it
        itself), and (streamed whole) its descriptor with the CRC-32 the thread computes."""
        source = self.source
        layout = source.layout
        index = piece.index
        on_fallback = None if fetch is None else partial(self._fell_back_on, piece)
        if index not in self.body._whole:
            return sender.member(piece.length, fetch=fetch, on_fallback=on_fallback)
        template = layout.descriptor_bytes(index, 0)
        crc_at = self._crc_at.get(len(template))
        if crc_at is None:  # (where the CRC sits depends only on the record's size)
            crc_at = _crc_offset(template, layout.descriptor_bytes(index, 0xFFFFFFFF))
            self._crc_at[len(template)] = crc_at
        return sender.member(
            piece.length,
            template,
            crc_at,
            self._descriptor_span(index),
            source.crcs.known(index),
            fetch,
            on_fallback,
        )

    def _hand(
        self,
        sender: SendThread,
        piece: Piece,
        reader: AsyncGenerator[memoryview, None],
        first: bytes | memoryview,
        relay: Relay,
    ) -> None:
        """Queue a member on the send thread and finish its read in a task."""
        lane = self._lane(sender, piece)
        if first:
            # Relayed, the rest never touches the read's buffer, so the first bytes can
            # be sent from it; otherwise the next chunk is read into that buffer.
            lane.send_soon(first if relay.moves else bytes(first))
        relay.out = lane
        self.flights.add()
        held = len(first) >= piece.length  # nothing left to read: see _finish
        self.nursery.start_soon(self._finish, sender, lane, piece, reader, held, self.flights)

    def _descriptor_span(self, index: int) -> tuple[int, int]:
        """(skip, length) of member ``index``'s descriptor within this reply."""
        layout = self.source.layout
        begin = layout.descriptor_offset(index)
        end = (
            layout.header_offset(index + 1)
            if index + 1 < len(layout.members)
            else layout.central_offset
        )
        low, high = max(begin, self.body.start), min(end, self.body.stop)
        return (low - begin, high - low) if high > low else (0, 0)

    async def _finish(
        self,
        sender: SendThread,
        lane: Lane,
        piece: Piece,
        reader: AsyncGenerator[memoryview, None],
        held: bool,
        flights: _Flights,
    ) -> None:
        """Finish one member handed to the send thread: drive its read (the rest is
        relayed by the thread, or, when it cannot be, yielded here and sent through the
        lane), then record its CRC-32.  A failure is kept in ``flights``, not raised.

        ``held``: the first chunk was all of the member's data, so the read only ends,
        and ending it releases the buffer the thread sends that chunk from: it is ended
        once the thread has sent the member.  (When a relay follows, the relay comes
        after that chunk in the thread's queue, so ending after it is safe.)"""
        source = self.source
        index = piece.index
        error: Exception | None = None
        try:
            if held:
                await lane.ended.done.wait()  # (its outcome is taken below)
            try:
                async for chunk in reader:
                    await lane.send(chunk)
            except FetchError:
                source.unavailable.add(index)
                raise
            await self._completed(lane, index)
        except Exception as exc:
            error = exc
            lane.abort()
        except BaseException:
            sender.stop()
            raise
        finally:
            if not lane.ended.done.is_set() or lane.ended.error is not None:
                # The thread may still send from this read's buffer: never release it
                # before the thread has ended.
                with trio.CancelScope(shield=True):
                    await sender.ended.wait()
            with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
                await reader.aclose()
            flights.landed(index, error)
