"""The send thread of a zip reply: one worker thread writes the reply's body to its client.

Why a thread: done by the event loop, its work per member and the relay of each body
(``recv``, CRC-32, ``send``) alternate.  With a send thread they overlap: the thread
relays the members back to back with :func:`slipstream.ext.relay` (without the GIL in the
compiled twin).

What the loop queues (in order; the thread sends it in that order and nothing else):

- bytes (:meth:`SendThread.send`): a header, a rendered descriptor, the central directory;
- a member's body (:meth:`SendThread.member`, a :class:`~.threadlane.Lane`).  With a
  :class:`~.threadfetch.PlainFetch` the thread fetches the member itself (it writes the
  requests of the next members ahead, reads and checks the answer, relays it); if it
  gives up, or without one, it takes the member's operations from the lane until its
  ``total`` bytes are sent: bytes already read (:meth:`Lane.send`) and relays of the rest
  from the upstream socket (:meth:`Lane.relay`, what
  :func:`~slipstream.zip.remote.read_member` asks for through :meth:`Lane.splice`).  A
  relay that stops short upstream is reported, and the thread waits for the lane's next
  operation (the retry of the rest, or :meth:`Lane.abort`).  Once the member is complete,
  the thread checks its CRC-32 against the expected one (the cached CRC, if any) and
  sends its data descriptor with it: the loop never waits for a member's end.

Results reach the loop through the Trio token (``run_sync_soon``), in batches; the thread
never blocks on the loop for them.  The thread is the only writer of the client socket
while it runs (the reply's head goes out before it starts).

Stopping: :meth:`SendThread.stop` (a failure elsewhere, or the reply's task cancelled)
ends the thread at its next wait; its waits (``poll``) include a stop eventfd, and its
queue reads an item that tells it to stop.  A thread that ends early fails every result
still awaited; the loop does not release a buffer the thread may be sending from until
:attr:`SendThread.ended` is set.
"""

from __future__ import annotations

import os
import queue
from collections import deque
from collections.abc import Callable
from typing import Any, Final, TypeVar

import trio

from slipstream.ext import (
    RELAY_DONE,
    RELAY_MISMATCH,
    RELAY_SEND_ERROR,
    RELAY_SEND_TIMEOUT,
    RELAY_STOPPED,
    Relayed,
    crc,
    relay,
)
from slipstream.upstream_pool import ConnectionPool

from .threadfetch import REQUESTS_AHEAD, PlainFetch, ThreadUpstreams
from .threadio import splice_all, write_all
from .threadlane import (
    ABORT,
    STOP,
    CrcMismatch,
    DataOp,
    Lane,
    RelayOp,
    Result,
    SendStopped,
    send_failure,
)

__all__ = [
    "SEND_THREADS",
    "CrcMismatch",
    "Lane",
    "SendStopped",
    "SendThread",
    "acquire_send_thread",
    "release_send_thread",
]

SEND_THREADS: Final = 16
"""Zip replies that may each have a send thread at once; the others are sent by the loop."""
RELAY_BUFFER: Final = 1024 * 1024  # the thread's relay buffer (one per send thread)
FLUSH_BATCH: Final = 8
"""Results the thread gathers before it wakes the loop ahead of a relay (it always does
before it waits for the loop, the queue or a socket).  Measured on 1,000 members of 1 MiB
(alternated runs): the loop's CPU fell from 0.28-0.30 to 0.14 s, (b) rose from 1,085 to
1,373 MB/s; 4 gave 1,266, 16 the same as 8."""

_SEND_GATES: trio.lowlevel.RunVar[trio.Semaphore] = trio.lowlevel.RunVar("zip_send_gates")

T = TypeVar("T")


def acquire_send_thread(limit: int = SEND_THREADS) -> bool:
    """Take one of the ``limit`` send-thread places of this Trio run without waiting
    (False when all are taken); give it back with :func:`release_send_thread`."""
    try:
        gates = _SEND_GATES.get()
    except LookupError:
        gates = trio.Semaphore(max(1, limit))
        _SEND_GATES.set(gates)
    try:
        gates.acquire_nowait()
    except trio.WouldBlock:
        return False
    return True


def release_send_thread() -> None:
    """Give back a place :func:`acquire_send_thread` took."""
    _SEND_GATES.get().release()


class SendThread:
    """One reply's send thread (see the module docstring).

    Build it in the reply's task, start :meth:`run` in a nursery, queue with
    :meth:`send` and :meth:`member`, then :meth:`close` (end after the queued items) or
    :meth:`stop` (end now), and wait for :attr:`ended`.
    """

    def __init__(
        self,
        socket: trio.socket.SocketType,
        send_timeout: float,
        pool: ConnectionPool | None = None,
    ) -> None:
        self._fd = socket.fileno()
        self._send_timeout = send_timeout
        self._token = trio.lowlevel.current_trio_token()
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._ahead: deque[object] = deque()
        """Items the thread took from the queue early, to write requests ahead."""
        self._unsent: deque[PlainFetch] = deque()
        """Members among them whose requests are not written yet (in order)."""
        self._stop_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self.upstreams = (
            ThreadUpstreams(pool, self._stop_fd, self._flush) if pool is not None else None
        )
        """The connections of members the thread fetches itself (needs ``pool``)."""
        self._lanes: deque[Lane] = deque()
        """The lanes queued and not ended (the thread ends them in order)."""
        self._waiting: set[Result[Any]] = set()
        self._stopped = False
        self._returned = False
        self._reports: deque[tuple[Result[Any], Any, Exception | None]] = deque()
        """Results handed by the thread, not delivered yet (see :meth:`_hand`)."""
        self._notified = False
        self.ended = trio.Event()
        """Set once the thread has ended (it touches no buffer and no socket after)."""
        self.failure: Exception | None = None
        """Why the thread ended early on the client side (a send failed), else None."""

    # -- the loop's side ------------------------------------------------------------------

    def result(self) -> Result[T]:
        """A result the thread will hand over (failed if the thread ends first)."""
        result: Result[T] = Result()
        if self.ended.is_set():
            result.error = self._ended_error()
            result.done.set()
        else:
            self._waiting.add(result)
        return result

    def send(self, data: bytes) -> None:
        """Queue bytes to send as they are."""
        self._queue.put(data)

    def member(
        self,
        total: int,
        descriptor: bytes | None = None,
        crc_at: int = 0,
        descriptor_span: tuple[int, int] = (0, 0),
        expected: int | None = None,
        fetch: PlainFetch | None = None,
        on_fallback: Callable[[Lane], None] | None = None,
    ) -> Lane:
        """Queue a member's body (see :class:`Lane`); its operations go to the lane.
        ``fetch`` needs the thread built with a ``pool``."""
        assert fetch is None or self.upstreams is not None
        lane = Lane(self, total, descriptor, crc_at, descriptor_span, expected, fetch, on_fallback)
        lanes = self._lanes
        while lanes and lanes[0].ended.done.is_set():
            lanes.popleft()
        lanes.append(lane)
        self._queue.put(lane)
        return lane

    async def drained(self) -> None:
        """Wait until everything queued so far was sent (raises if the thread ended)."""
        reached: Result[bool] = self.result()
        self._queue.put(reached)
        await reached.wait()

    def close(self) -> None:
        """The thread ends once everything queued was sent."""
        self._queue.put(None)

    def stop(self) -> None:
        """The thread ends at its next wait, sending nothing more."""
        if self._stopped or self._returned:
            return
        self._stopped = True
        os.eventfd_write(self._stop_fd, 1)
        self._queue.put(STOP)
        for lane in self._lanes:
            lane.ops.put(STOP)

    async def run(self) -> None:
        """Run the thread until it ends (a task of the reply's nursery); cancelled, it
        stops the thread and still waits for it to end."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._stop_when_cancelled)
                status = await trio.to_thread.run_sync(self._work, limiter=trio.CapacityLimiter(1))
                self._returned = True
                if status not in (RELAY_DONE, RELAY_STOPPED):
                    self.failure = send_failure(status)
                nursery.cancel_scope.cancel()
        finally:
            self._returned = True
            self._deliver()  # (what the thread handed last, if not delivered yet)
            error = self._ended_error()
            for waiting in self._waiting:
                waiting.error = error
                waiting.done.set()
            self._waiting.clear()
            os.close(self._stop_fd)
            self.ended.set()
            if self.upstreams is not None:
                with trio.CancelScope(shield=True):
                    await self.upstreams.aclose()

    async def _stop_when_cancelled(self) -> None:
        try:
            await trio.sleep_forever()
        finally:
            self.stop()

    def _ended_error(self) -> Exception:
        return self.failure or SendStopped("the reply's send thread has ended")

    def _hand(self, result: Result[T] | None, value: T | None, error: Exception | None) -> None:
        """Hand a result to the loop (from the thread) at its next :meth:`_flush`, just
        before it waits: the loop's work on them then runs while the thread relays, not
        between its short steps, each of which (a ``read``, a ``write``) would let a
        woken loop take the GIL for its whole turn."""
        if result is not None:
            self._reports.append((result, value, error))

    def _flush(self, at_least: int = 1) -> None:
        """Wake the loop to deliver the results handed if there are ``at_least``, unless
        it has been since it last took them (one wake-up for the results handed while it
        was busy: each costs both threads a hand-over of the GIL)."""
        if len(self._reports) >= at_least and not self._notified:
            self._notified = True
            self._token.run_sync_soon(self._deliver)

    def _deliver(self) -> None:
        """Give the waiting tasks the results the thread handed (in the loop)."""
        self._notified = False
        reports = self._reports
        while reports:
            result, value, error = reports.popleft()
            result.value, result.error = value, error
            result.done.set()
            self._waiting.discard(result)
            if result.notify is not None:
                result.notify()

    # -- the thread's side ----------------------------------------------------------------

    def _work(self) -> int:
        """The thread: send the queued items in order; the status that ended it.

        Bytes queued on their own (a header) are held until the next write, so that a
        member's header, data and descriptor go out in one :func:`relay` call."""
        buffer = bytearray(RELAY_BUFFER)
        pending = bytearray()
        while True:
            if not self._ahead:
                self._flush()
            item = self._ahead.popleft() if self._ahead else self._queue.get()
            if item is STOP:
                return RELAY_STOPPED
            if isinstance(item, bytes):
                pending += item
                continue
            if isinstance(item, Lane):
                status = self._member(item, buffer, pending)
            else:  # None (close) or a drain marker
                status = self._write(pending)
                pending.clear()
                if status == RELAY_DONE and isinstance(item, Result):
                    self._hand(item, True, None)
                    continue
                if item is None:
                    return status
            if status != RELAY_DONE:
                return status

    def _member(self, lane: Lane, buffer: bytearray, pending: bytearray) -> int:
        """Send ``pending`` (cleared), then one member's body, then its descriptor;
        RELAY_DONE, or what stopped it (RELAY_STOPPED as well when the member was
        aborted or its CRC differs)."""
        value = sent = 0
        if lane.fetch is not None:
            status, sent, value = self._fetched(lane, lane.fetch, buffer, pending)
            if status != RELAY_DONE or sent < 0:
                return status
        elif self.upstreams is not None:
            self._request_ahead(None)  # (the next members' answers come meanwhile)
        while sent < lane.total:
            self._flush()
            op = lane.ops.get()
            if isinstance(op, DataOp):
                status = self._write(pending)
                pending.clear()
                if status == RELAY_DONE:
                    status = self._write(op.data)
                if status != RELAY_DONE:
                    self._hand(op.done, None, send_failure(status))
                    return status
                value = crc("crc32", op.data, value)
                sent += len(op.data)
                self._hand(op.done, True, None)
                continue
            if op is ABORT:  # what comes before the member's data is still sent
                self._write(pending)
                pending.clear()
            if not isinstance(op, RelayOp):  # ABORT or STOP
                return RELAY_STOPPED
            first = op.first
            head = pending + first if pending else first
            pending.clear()
            value = crc("crc32", first, value)
            sent += len(first)
            last = sent + op.count == lane.total
            if lane.descriptor is None and lane.expected is None and hasattr(os, "splice"):
                # Nothing needs these bytes' CRC: moved without copying them.
                status = self._write(head)
                if status != RELAY_DONE:
                    self._hand(op.done, None, send_failure(status))
                    return status
                moved = self._splice(op.fd, op.count, op.read_timeout)
            else:
                trailer: bytearray | None = None
                descriptor = lane.descriptor
                if last and descriptor and lane.descriptor_span == (0, len(descriptor)):
                    trailer = bytearray(descriptor)
                expected = lane.expected if last and lane.expected is not None else -1
                self._flush(FLUSH_BATCH)
                moved = relay(
                    op.fd,
                    self._fd,
                    buffer,
                    op.count,
                    value,
                    op.read_timeout,
                    self._send_timeout,
                    self._stop_fd,
                    head,
                    trailer,
                    lane.crc_at if trailer is not None else -1,
                    expected,
                )
                value = moved.crc32
                if moved.status == RELAY_MISMATCH:  # every byte moved; no descriptor sent
                    self._hand(op.done, (len(first), moved._replace(status=RELAY_DONE)), None)
                    self._hand(lane.ended, None, CrcMismatch(value))
                    return RELAY_STOPPED
                if trailer is not None and moved.status == RELAY_DONE:
                    self._hand(op.done, (len(first), moved), None)
                    self._hand(lane.ended, value, None)
                    return RELAY_DONE
            sent += moved.sent
            if moved.status in (RELAY_SEND_ERROR, RELAY_SEND_TIMEOUT, RELAY_STOPPED):
                self._hand(op.done, None, send_failure(moved.status))
                return moved.status
            self._hand(op.done, (len(first), moved), None)
        status = self._write(pending)  # (an empty member of a reply: nothing to relay)
        pending.clear()
        if status != RELAY_DONE:
            self._hand(lane.ended, None, send_failure(status))
            return status
        if lane.expected is not None and value != lane.expected:
            self._hand(lane.ended, None, CrcMismatch(value))
            return RELAY_STOPPED
        if lane.descriptor is not None:
            skip, length = lane.descriptor_span
            if length:
                status = self._write(lane.descriptor_with(value)[skip : skip + length])
                if status != RELAY_DONE:
                    self._hand(lane.ended, None, send_failure(status))
                    return status
        self._hand(lane.ended, value, None)
        return RELAY_DONE

    def _fetched(
        self, lane: Lane, fetch: PlainFetch, buffer: bytearray, pending: bytearray
    ) -> tuple[int, int, int]:
        """Fetch ``lane``'s member itself (see :mod:`.threadfetch`), after ``pending``.

        (RELAY_DONE, -1, 0) once the member and its descriptor were sent; (status, -1,
        0) when the reply stops; else (RELAY_DONE, the member bytes sent, their CRC-32):
        either all of them, with the descriptor left to :meth:`_member`, or fewer, the
        thread having given up (:attr:`Lane.fallback` handed) for the lane's operations
        to send the rest."""
        upstreams = self.upstreams
        assert upstreams is not None
        self._request_ahead(fetch)
        answered = upstreams.answer(fetch)
        if answered is None:
            self._hand(lane.fallback, 0, None)
            return RELAY_DONE, 0, 0
        fd, first = answered
        read_timeout = fetch.request.read_timeout
        value = crc("crc32", first, 0)
        head = pending + first if pending else first
        pending.clear()
        trailer: bytearray | None = None
        if lane.descriptor is None and lane.expected is None and hasattr(os, "splice"):
            status = self._write(head)  # nothing needs the CRC: moved without copying
            if status != RELAY_DONE:
                return status, -1, 0
            moved = self._splice(fd, lane.total - len(first), read_timeout)
        else:
            descriptor = lane.descriptor
            if descriptor and lane.descriptor_span == (0, len(descriptor)):
                trailer = bytearray(descriptor)
            self._flush(FLUSH_BATCH)
            moved = relay(
                fd,
                self._fd,
                buffer,
                lane.total - len(first),
                value,
                read_timeout,
                self._send_timeout,
                self._stop_fd,
                head,
                trailer,
                lane.crc_at if trailer is not None else -1,
                lane.expected if lane.expected is not None else -1,
            )
            value = moved.crc32
        status = moved.status
        if status == RELAY_MISMATCH:  # every byte moved; no descriptor sent
            upstreams.done(fetch)
            self._hand(lane.ended, None, CrcMismatch(value))
            return RELAY_STOPPED, -1, 0
        if status in (RELAY_SEND_ERROR, RELAY_SEND_TIMEOUT, RELAY_STOPPED):
            return status, -1, 0
        sent = len(first) + moved.sent
        if status != RELAY_DONE:  # the upstream stopped short: the rest the general way
            upstreams.drop(fetch)
            self._hand(lane.fallback, sent, None)
            return RELAY_DONE, sent, value
        upstreams.done(fetch)
        if trailer is None:
            return RELAY_DONE, sent, value
        self._hand(lane.ended, value, None)
        return RELAY_DONE, -1, 0

    def _request_ahead(self, current: PlainFetch | None) -> None:
        """Write ``current``'s request if it was not, and those of the next members the
        thread fetches itself until :data:`REQUESTS_AHEAD` are written (taking items
        from the queue early to see them)."""
        upstreams = self.upstreams
        assert upstreams is not None
        unsent = self._unsent
        if current is not None and not current.sent:
            if unsent and unsent[0] is current:
                unsent.popleft()
            upstreams.send(current)
        while upstreams.outstanding < REQUESTS_AHEAD:
            if unsent:
                upstreams.send(unsent.popleft())
                continue
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            self._ahead.append(item)
            if isinstance(item, Lane) and item.fetch is not None:
                unsent.append(item.fetch)
            elif item is STOP or item is None:
                return

    def _splice(self, source: int, count: int, read_timeout: float) -> Relayed:
        """Move ``count`` bytes from the socket ``source`` to the client with ``splice``."""
        self._flush()
        return splice_all(source, self._fd, count, self._stop_fd, read_timeout, self._send_timeout)

    def _write(self, data: bytes | bytearray | memoryview) -> int:
        """Send all of ``data`` to the client; RELAY_DONE or why it stopped."""
        self._flush()
        return write_all(self._fd, data, self._stop_fd, self._send_timeout)
