"""The send thread of a zip reply: one worker thread writes the reply's body to its client.

Why a thread: a zip of many remote members costs the event loop a little work per member
(the descriptor, the next header, taking the next read) and the relay of each body a
little more (``recv``, CRC-32, ``send``).  Done by the loop, the two alternate; measured
on 1,000 members of 1 MiB, that is about 0.4 ms of loop work plus 0.9 ms of relaying per
member, back to back.  With a send thread they overlap: the loop prepares the members
ahead and queues them, and the thread sends them back to back, relaying each body with
:func:`slipstream.ext.relay` (which runs without the GIL in the compiled twin), never
waiting for the loop between two members.

What the loop queues (in order; the thread sends it in that order and nothing else):

- bytes (:meth:`SendThread.send`): a header, a rendered descriptor, the central directory;
- a member's body (:meth:`SendThread.member`, a :class:`Lane`): the thread takes that
  member's operations from the lane until the member's ``total`` bytes are sent: the
  bytes already read (:meth:`Lane.send`, also how bodies that cannot be relayed go) and
  the relays of the rest from the upstream socket (:meth:`Lane.relay`, what
  :func:`~slipstream.zip.remote.read_member` asks for through :meth:`Lane.splice`).  A
  relay that stops short on the upstream side is reported, and the thread waits for
  the lane's next operation: the retry of the rest, from a new upstream answer, or
  :meth:`Lane.abort`.  Once the member is complete, the thread checks its CRC-32 against
  the expected one (the cached CRC, if any) and sends its data descriptor with it, so the
  loop never waits for a member's end before queuing the next.

Every result reaches the loop through the Trio token (``run_sync_soon``, one wake-up for
the results handed while the loop was busy), never by blocking the thread.  The thread
is the only writer of the client socket while it runs: the reply's head goes out before
it starts, and the loop writes again only after it ended.

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
from functools import partial
from typing import Any, Final, Generic, TypeVar

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
from slipstream.fetched import Fetched
from slipstream.upstream_pool import ConnectionPool

from .threadfetch import REQUESTS_AHEAD, PlainFetch, ThreadUpstreams
from .threadio import splice_all, write_all

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
RELAY_BUFFER: Final = 1024 * 1024
"""The thread's relay buffer (one per send thread)."""

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


class SendStopped(Exception):
    """The send thread was stopped (a failure elsewhere, or cancellation) before this
    operation was done."""


class CrcMismatch(Exception):
    """A member's bytes have another CRC-32 than the expected one (nothing of its
    descriptor was sent)."""

    def __init__(self, value: int) -> None:
        super().__init__(f"CRC-32 {value:08x} differs from the expected one")
        self.value = value


def _send_failure(status: int) -> Exception:
    """The loop-side error for a send that stopped with ``status``."""
    if status == RELAY_SEND_TIMEOUT:
        return trio.TooSlowError()
    if status == RELAY_STOPPED:
        return SendStopped("the reply's send thread was stopped")
    return trio.BrokenResourceError("the client's socket failed")


class _Result(Generic[T]):
    """A result the thread hands to a task of the loop."""

    __slots__ = ("done", "error", "notify", "value")

    def __init__(self, notify: Callable[[], None] | None = None) -> None:
        self.done = trio.Event()
        self.value: T | None = None
        self.error: Exception | None = None
        self.notify = notify
        """Called (in the loop, outside any task) once the thread has handed it."""

    async def wait(self) -> T:
        if not self.done.is_set():  # (set: no trip through the event loop)
            await self.done.wait()
        if self.error is not None:
            raise self.error
        assert self.value is not None
        return self.value


_STOP: Final = object()
"""Queued to tell the thread to end at once."""
_ABORT: Final = object()
"""Queued on a lane whose member cannot be completed."""


class _Data:
    """Member bytes to send (``done``: None, or told once they are sent)."""

    __slots__ = ("data", "done")

    def __init__(self, data: memoryview | bytes, done: _Result[bool] | None) -> None:
        self.data = data
        self.done = done


class _Relay:
    """``first``, then ``count`` bytes relayed from the socket ``fd``."""

    __slots__ = ("count", "done", "fd", "first", "read_timeout")

    def __init__(
        self,
        fd: int,
        first: memoryview,
        count: int,
        read_timeout: float,
        done: _Result[tuple[int, Relayed]],
    ) -> None:
        self.fd = fd
        self.first = first
        self.count = count
        self.read_timeout = read_timeout
        self.done = done


class Lane:
    """One member's body in the send thread's queue: its operations, in order.

    ``total`` is how many of its bytes the reply sends.  ``descriptor`` (when given) is
    its data descriptor with a zero CRC-32, whose 4 bytes at ``crc_at`` get the CRC of
    the bytes sent; ``descriptor_span`` (skip, length) of it is sent once the ``total``
    bytes are.  ``expected`` is the CRC-32 those bytes must have.

    With ``fetch``, the thread fetches the member itself first (:mod:`.threadfetch`).
    If that declines or the upstream stops short, it hands :attr:`fallback` the count
    of the member's bytes it sent, and takes the rest from the lane's operations.
    """

    __slots__ = (
        "_owner",
        "crc_at",
        "descriptor",
        "descriptor_span",
        "ended",
        "expected",
        "fallback",
        "fetch",
        "ops",
        "total",
    )

    def __init__(
        self,
        owner: SendThread,
        total: int,
        descriptor: bytes | None,
        crc_at: int,
        descriptor_span: tuple[int, int],
        expected: int | None,
        fetch: PlainFetch | None = None,
        on_fallback: Callable[[Lane], None] | None = None,
    ) -> None:
        self._owner = owner
        self.fetch = fetch
        self.fallback: _Result[int] = _Result(
            None if on_fallback is None else partial(on_fallback, self)
        )
        """Member bytes sent when the thread gave up fetching it itself (handed only
        then, to :attr:`_Result.notify`)."""
        self.total = total
        self.descriptor = descriptor
        self.crc_at = crc_at
        self.descriptor_span = descriptor_span
        self.expected = expected
        self.ops: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.ended: _Result[int] = owner.result()
        """The member's CRC-32, once all of it (and its descriptor) was sent."""

    def descriptor_with(self, value: int) -> bytearray:
        """The descriptor with the CRC-32 ``value`` in it."""
        assert self.descriptor is not None
        data = bytearray(self.descriptor)
        data[self.crc_at : self.crc_at + 4] = value.to_bytes(4, "little")
        return data

    async def send(self, data: memoryview | bytes) -> None:
        """Send member bytes (``data`` must stay unchanged until this returns)."""
        done: _Result[bool] = self._owner.result()
        self.ops.put(_Data(data, done))
        await done.wait()

    def send_soon(self, data: memoryview | bytes) -> None:
        """Queue member bytes without waiting (``data`` must stay unchanged until the
        member has ended: :attr:`ended`, or the thread has)."""
        self.ops.put(_Data(data, None))

    async def relay(
        self, fd: int, first: memoryview, count: int, read_timeout: float
    ) -> tuple[int, Relayed]:
        """Send ``first``, then relay ``count`` bytes from the socket ``fd`` (each wait
        within ``read_timeout``); how many of ``first`` were sent, and the relay's result.

        Raises the client-side failure (``trio.BrokenResourceError``,
        ``trio.TooSlowError``, :class:`SendStopped`); an upstream that stops short is
        the caller's to read in the result."""
        return await self.relay_soon(fd, first, count, read_timeout).wait()

    def relay_soon(
        self, fd: int, first: memoryview, count: int, read_timeout: float
    ) -> _Result[tuple[int, Relayed]]:
        """:meth:`relay` without waiting: its result, to await when it suits (``fd`` and
        ``first`` must stay open and unchanged until then)."""
        done: _Result[tuple[int, Relayed]] = self._owner.result()
        self.ops.put(_Relay(fd, first, count, read_timeout, done))
        return done

    async def splice(self, source: Fetched, count: int) -> None:
        """Have ``source``'s next ``count`` body bytes relayed (see ``read_member``)."""
        await source.relay_through(self, count)

    def abort(self) -> None:
        """This member cannot be completed: the thread ends without sending more."""
        self.ops.put(_ABORT)


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
        self._lanes: list[Lane] = []
        self._waiting: set[_Result[Any]] = set()
        self._stopped = False
        self._returned = False
        self._reports: deque[tuple[_Result[Any], Any, Exception | None]] = deque()
        """Results handed by the thread, not delivered yet (see :meth:`_hand`)."""
        self._notified = False
        self.ended = trio.Event()
        """Set once the thread has ended (it touches no buffer and no socket after)."""
        self.failure: Exception | None = None
        """Why the thread ended early on the client side (a send failed), else None."""

    # -- the loop's side ------------------------------------------------------------------

    def result(self) -> _Result[T]:
        """A result the thread will hand over (failed if the thread ends first)."""
        result: _Result[T] = _Result()
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
        self._lanes = [held for held in self._lanes if not held.ended.done.is_set()]
        self._lanes.append(lane)
        self._queue.put(lane)
        return lane

    async def drained(self) -> None:
        """Wait until everything queued so far was sent (raises if the thread ended)."""
        reached: _Result[bool] = self.result()
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
        self._queue.put(_STOP)
        for lane in self._lanes:
            lane.ops.put(_STOP)

    async def run(self) -> None:
        """Run the thread until it ends (a task of the reply's nursery); cancelled, it
        stops the thread and still waits for it to end."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._stop_when_cancelled)
                status = await trio.to_thread.run_sync(self._work, limiter=trio.CapacityLimiter(1))
                self._returned = True
                if status not in (RELAY_DONE, RELAY_STOPPED):
                    self.failure = _send_failure(status)
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
        if self.failure is not None:
            return self.failure
        return SendStopped("the reply's send thread has ended")

    def _hand(self, result: _Result[T] | None, value: T | None, error: Exception | None) -> None:
        """Hand a result to the loop (from the thread), at the thread's next wait.

        Results wait in a deque until :meth:`_flush`, which the thread calls just before
        it waits (in a relay without the GIL, or for the socket or the queue).  The
        loop's work on them then runs while the thread relays, not between the thread's
        short steps between two relays: each step that releases the GIL (a ``read``, a
        ``write``) would let a woken loop take it, and the thread would wait for the
        loop's whole turn."""
        if result is not None:
            self._reports.append((result, value, error))

    def _flush(self) -> None:
        """Wake the loop to deliver the results handed, unless it has been since it last
        took them (one wake-up for the results handed while it was busy: each costs both
        threads a hand-over of the GIL)."""
        if self._reports and not self._notified:
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
            if item is _STOP:
                return RELAY_STOPPED
            if isinstance(item, bytes):
                pending += item
                continue
            if isinstance(item, Lane):
                status = self._member(item, buffer, pending)
            else:  # None (close) or a drain marker
                status = self._write(pending)
                pending.clear()
                if status == RELAY_DONE and isinstance(item, _Result):
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
            if isinstance(op, _Data):
                status = self._write(pending)
                pending.clear()
                if status == RELAY_DONE:
                    status = self._write(op.data)
                if status != RELAY_DONE:
                    self._hand(op.done, None, _send_failure(status))
                    return status
                value = crc("crc32", op.data, value)
                sent += len(op.data)
                self._hand(op.done, True, None)
                continue
            if op is _ABORT:  # what comes before the member's data is still sent
                self._write(pending)
                pending.clear()
            if not isinstance(op, _Relay):  # _ABORT or _STOP
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
                    self._hand(op.done, None, _send_failure(status))
                    return status
                moved = self._splice(op.fd, op.count, op.read_timeout)
            else:
                trailer: bytearray | None = None
                descriptor = lane.descriptor
                if last and descriptor and lane.descriptor_span == (0, len(descriptor)):
                    trailer = bytearray(descriptor)
                expected = lane.expected if last and lane.expected is not None else -1
                self._flush()
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
                self._hand(op.done, None, _send_failure(moved.status))
                return moved.status
            self._hand(op.done, (len(first), moved), None)
        status = self._write(pending)  # (an empty member of a reply: nothing to relay)
        pending.clear()
        if status != RELAY_DONE:
            self._hand(lane.ended, None, _send_failure(status))
            return status
        if lane.expected is not None and value != lane.expected:
            self._hand(lane.ended, None, CrcMismatch(value))
            return RELAY_STOPPED
        if lane.descriptor is not None:
            skip, length = lane.descriptor_span
            if length:
                status = self._write(lane.descriptor_with(value)[skip : skip + length])
                if status != RELAY_DONE:
                    self._hand(lane.ended, None, _send_failure(status))
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
            self._flush()
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
            elif item is _STOP or item is None:
                return

    def _splice(self, source: int, count: int, read_timeout: float) -> Relayed:
        """Move ``count`` bytes from the socket ``source`` to the client with ``splice``."""
        self._flush()
        return splice_all(source, self._fd, count, self._stop_fd, read_timeout, self._send_timeout)

    def _write(self, data: bytes | bytearray | memoryview) -> int:
        """Send all of ``data`` to the client; RELAY_DONE or why it stopped."""
        self._flush()
        return write_all(self._fd, data, self._stop_fd, self._send_timeout)
