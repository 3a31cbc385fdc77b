"""The event loop's side of a zip reply sent by a send thread (:mod:`.sendthread`).

:class:`ThreadedSend` sends a :class:`~slipstream.zip.stream.ZipBody`'s pieces after
those it rendered before its head: the loop opens each member's read, checks the
upstream's answer and hands the member to the thread (at most :data:`IN_FLIGHT`
unfinished); the thread sends the headers, relays the bodies with their CRC-32 and
sends the descriptors, back to back.

Two ways to open the member reads:

- **Requests sent ahead** (:class:`~slipstream.zip.ahead.RequestsAhead`), when every
  member is a plain ``http://`` object that honours ``Range``: the reply's own task
  writes the next members' requests ahead on pooled connections, reads each answer's
  head when its turn comes, checks it and queues its relay on the thread without
  waiting; it collects each member's end (:meth:`ThreadedSend._land`) when it needs
  room, or as the results come.  No task, generator or context manager per member:
  measured on 1,000 members of 1 MiB, that is what cost the event loop most of its
  0.9 ms per member.  Anything unusual about one member (its request declined, an
  answer that is not exactly the range asked, a redirect, a body cut midway) sends
  that member the general way below, which retries and reports the error.
- **Reads opened ahead** (:class:`~slipstream.zip.ahead.ReadAhead`): a task per member
  opens it with :func:`~slipstream.zip.remote.read_member` and another finishes it
  (:meth:`ThreadedSend._finish`).

Either way the bytes, their order, the cut positions and the errors are those of
sending the members one after the other on the event loop.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Final

import trio

from slipstream.ext import Relayed
from slipstream.fetch import FetchError
from slipstream.send import BodyWriter
from slipstream.upstream import BodyEndedEarly, BodyTimeout, Exchange
from slipstream.upstream_ahead import SentRequest

from .ahead import CLOSE_TIMEOUT, OpenedAhead, ReadAhead, RequestsAhead, SentAhead
from .plan import Piece
from .remote import MemberChanged, Relay, plain_answer
from .sendthread import CrcMismatch, Lane, SendThread, _Result

if TYPE_CHECKING:
    from .stream import ZipBody

__all__ = ["IN_FLIGHT", "ThreadedSend"]

IN_FLIGHT: Final = 4
"""Members handed to a reply's send thread and not finished yet, at most (each holds its
upstream connection and, read the general way, one pooled buffer until the thread has
sent it)."""


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


class _Sent:
    """A member handed with its request sent ahead: its answer, and the relay queued."""

    __slots__ = ("answer", "first", "lane", "piece", "relayed")

    def __init__(
        self,
        piece: Piece,
        lane: Lane,
        answer: Exchange,
        first: memoryview,
        relayed: _Result[tuple[int, Relayed]],
    ) -> None:
        self.piece = piece
        self.lane = lane
        self.answer = answer
        self.first = first
        self.relayed = relayed


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
        self.landing: deque[_Sent] = deque()
        """Members handed with their requests sent ahead, not collected yet (in order)."""

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
        sender = self.sender = SendThread(out.stream.socket, out.send_timeout)
        nursery.start_soon(sender.run)
        ahead: ReadAhead | RequestsAhead
        if source.sends_ahead:
            ahead = RequestsAhead(body._pieces, self._send_ahead)
        else:
            # The thread moves the bodies: a read ahead stops at its checked answer.
            ahead = ReadAhead(body._pieces, source.read, nursery, head_only=True)
        item: Piece | OpenedAhead | SentAhead | None = None
        try:
            piece, reader, first = body._reading, body._reader, body._first
            if piece is not None and reader is not None:
                body._reading, body._reader, body._first = None, None, b""
                await self._fill(ahead)
                self._hand(sender, piece, reader, first, body._relay)
            while (item := ahead.next()) is not None:
                if not isinstance(item, Piece) or item.kind == "data":
                    await self._room()
                    await self._fill(ahead)
                if isinstance(item, SentAhead):
                    if not await self._hand_sent(sender, item):
                        await self._open_and_hand(sender, item.piece)
                    # Let the loop deliver the thread's results before the next head
                    # (and a cancellation in: a member whose answer was in already
                    # is handed without a wait).
                    await trio.lowlevel.checkpoint()
                elif isinstance(item, OpenedAhead):
                    reader, first = await body._take(item)
                    self._hand(sender, item.piece, reader, first, item.relay)
                    # Let its task queue the relay before the thread gets to the member.
                    await trio.lowlevel.cancel_shielded_checkpoint()
                elif item.kind == "data":
                    await self._open_and_hand(sender, item)
                elif item.kind == "descriptor" and item.index in body._whole:
                    continue  # the send thread sends it, with the CRC-32 it computed
                else:
                    if item.kind == "central":  # it needs the CRCs of the members in flight
                        await self._drained()
                        # Stored before the last bytes leave, as the event loop's path
                        # does: a client that asks again at once finds them cached.
                        source.crcs.flush(body.background)
                    sender.send(await body._render(item))
            await self._drained()
            source.crcs.flush(body.background)
            sender.close()
            await sender.ended.wait()
            if sender.failure is not None:
                raise sender.failure
        except Exception as exc:
            # What was handed before the failure is sent in full (so a resume has less
            # to fetch again), then the thread ends; an earlier member's failure wins.
            sender.close()
            await self._drained(raising=False)
            await sender.ended.wait()
            earlier = flights.failure
            if earlier is not None and earlier is not exc:
                raise earlier from None
            raise
        finally:
            sender.stop()
            with trio.CancelScope(shield=True):
                if isinstance(ahead, RequestsAhead):
                    await ahead.aclose()
                if isinstance(item, SentAhead) and item.request is not None:
                    await item.request.aclose()  # (taken, not answered yet: closed here)
                if self.landing:
                    await sender.ended.wait()  # (it may relay from their sockets)
                    while self.landing:
                        await self.landing.popleft().answer.finish()

    async def _fill(self, ahead: ReadAhead | RequestsAhead) -> None:
        if isinstance(ahead, RequestsAhead):
            await ahead.fill()
        else:
            ahead.fill()

    async def _room(self) -> None:
        """Collect the members sent ahead that have ended, and as many more as it takes
        for another member to be handed; then wait for room (raising a failure)."""
        landing = self.landing
        while landing and (self.flights.full or landing[0].relayed.done.is_set()):
            await self._land(landing.popleft())
        await self.flights.room()

    async def _drained(self, *, raising: bool = True) -> None:
        """Collect every member handed (see :meth:`_Flights.drained`)."""
        while self.landing:
            await self._land(self.landing.popleft())
        await self.flights.drained(raising=raising)

    # -- members sent ahead -------------------------------------------------------------

    async def _send_ahead(self, piece: Piece) -> SentRequest | None:
        """Write the request of ``piece``'s member ahead (None: declined)."""
        source = self.source
        obj = source.objects[piece.index]
        start, stop = piece.skip, piece.skip + piece.length - 1
        headers = [*source.headers, ("Range", f"bytes={start}-{stop}")]
        return await source.fetcher.send_ahead(obj.uri, headers, check_url=source.check_url)

    async def _hand_sent(self, sender: SendThread, item: SentAhead) -> bool:
        """Read the answer of a member sent ahead and queue its relay on the thread;
        False (nothing handed, the answer closed) when it is not the plain answer."""
        request, piece = item.request, item.piece
        if request is None:
            return False
        answer = await request.answer()
        if answer is None:
            return False
        obj = self.source.objects[piece.index]
        if not plain_answer(answer.status, answer.headers, obj, piece.skip, piece.length):
            await answer.finish()
            return False
        lane = self._lane(sender, piece)
        fd, first, rest = answer.relay_plan(piece.length)
        relayed = lane.relay_soon(fd, first, rest, answer.read_timeout)
        self.flights.add()
        self.landing.append(_Sent(piece, lane, answer, first, relayed))
        return True

    async def _land(self, sent: _Sent) -> None:
        """Collect a member sent ahead once the thread is done with it: its connection
        back to the pool and its CRC-32 recorded.  An upstream that stopped short is
        read on from there the general way (:meth:`_finish`, in a task); a failure is
        kept in :attr:`flights`, not raised."""
        source, sender = self.source, self.sender
        piece, lane, answer = sent.piece, sent.lane, sent.answer
        index = piece.index
        error: Exception | None = None
        try:
            sent_first, moved = await sent.relayed.wait()
            try:
                answer.relayed(sent.first, sent_first, moved)
            except (BodyEndedEarly, BodyTimeout):
                done = answer.spliced
                await answer.finish()  # (the thread is past this relay)
                relay = Relay()
                relay.out = lane
                reader = source.read(index, piece.skip + done, piece.length - done, relay=relay)
                self.nursery.start_soon(
                    self._finish, sender, lane, piece, reader, False, self.flights
                )
                return
            await self._completed(lane, index)
        except Exception as exc:
            error = exc
            lane.abort()
        except BaseException:
            sender.stop()
            raise
        finally:
            if not sent.relayed.done.is_set() or sent.relayed.error is not None:
                with trio.CancelScope(shield=True):
                    await sender.ended.wait()  # (it may still read the socket)
            await answer.finish()
        self.flights.landed(index, error)

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

    def _lane(self, sender: SendThread, piece: Piece) -> Lane:
        """Queue a member on the send thread: its data, and (streamed whole) its
        descriptor with the CRC-32 the thread computes."""
        source = self.source
        layout = source.layout
        index = piece.index
        if index not in self.body._whole:
            return sender.member(piece.length)
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
