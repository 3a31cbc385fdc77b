"""What a zip reply's send thread (:mod:`.sendthread`) takes from the event loop, and what it
hands back: a member's :class:`Lane` of operations (bytes to send, relays from an
upstream socket, an abort), and the :class:`Result` of each, which the thread hands over
through the Trio token.  The failures it reports are values here (:class:`SendStopped`,
:class:`CrcMismatch`, :func:`send_failure`), raised to the task that awaits the result.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from functools import partial
from typing import Any, Final, Generic, Protocol, TypeVar

import trio

from slipstream.ext import RELAY_SEND_TIMEOUT, RELAY_STOPPED, Relayed
from slipstream.fetched import Fetched

from .threadfetch import PlainFetch

__all__ = [
    "ABORT",
    "STOP",
    "CrcMismatch",
    "DataOp",
    "Lane",
    "RelayOp",
    "Result",
    "ResultSource",
    "SendStopped",
    "send_failure",
]

T = TypeVar("T")


class SendStopped(Exception):
    """The send thread was stopped (a failure elsewhere, or cancellation) before this
    operation was done."""


class CrcMismatch(Exception):
    """A member's bytes have another CRC-32 than the expected one (nothing of its
    descriptor was sent)."""

    def __init__(self, value: int) -> None:
        super().__init__(f"CRC-32 {value:08x} differs from the expected one")
        self.value = value


def send_failure(status: int) -> Exception:
    """The loop-side error for a send that stopped with ``status``."""
    if status == RELAY_SEND_TIMEOUT:
        return trio.TooSlowError()
    if status == RELAY_STOPPED:
        return SendStopped("the reply's send thread was stopped")
    return trio.BrokenResourceError("the client's socket failed")


class Result(Generic[T]):
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


STOP: Final = object()
"""Queued to tell the thread to end at once."""
ABORT: Final = object()
"""Queued on a lane whose member cannot be completed."""


class DataOp:
    """Member bytes to send (``done``: None, or told once they are sent)."""

    __slots__ = ("data", "done")

    def __init__(self, data: memoryview | bytes, done: Result[bool] | None) -> None:
        self.data = data
        self.done = done


class RelayOp:
    """``first``, then ``count`` bytes relayed from the socket ``fd``."""

    __slots__ = ("count", "done", "fd", "first", "read_timeout")

    def __init__(
        self,
        fd: int,
        first: memoryview,
        count: int,
        read_timeout: float,
        done: Result[tuple[int, Relayed]],
    ) -> None:
        self.fd = fd
        self.first = first
        self.count = count
        self.read_timeout = read_timeout
        self.done = done


class ResultSource(Protocol):
    """What makes the results a thread hands over (the :class:`~.sendthread.SendThread`)."""

    def result(self) -> Result[Any]:
        """A result the thread will hand over (failed if the thread ends first)."""
        ...


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
        owner: ResultSource,
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
        self.fallback: Result[int] = Result(
            None if on_fallback is None else partial(on_fallback, self)
        )
        """Member bytes sent when the thread gave up fetching it itself (handed only
        then, to :attr:`Result.notify`)."""
        self.total = total
        self.descriptor = descriptor
        self.crc_at = crc_at
        self.descriptor_span = descriptor_span
        self.expected = expected
        self.ops: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.ended: Result[int] = owner.result()
        """The member's CRC-32, once all of it (and its descriptor) was sent."""

    def descriptor_with(self, value: int) -> bytearray:
        """The descriptor with the CRC-32 ``value`` in it."""
        assert self.descriptor is not None
        data = bytearray(self.descriptor)
        data[self.crc_at : self.crc_at + 4] = value.to_bytes(4, "little")
        return data

    async def send(self, data: memoryview | bytes) -> None:
        """Send member bytes (``data`` must stay unchanged until this returns)."""
        done: Result[bool] = self._owner.result()
        self.ops.put(DataOp(data, done))
        await done.wait()

    def send_soon(self, data: memoryview | bytes) -> None:
        """Queue member bytes without waiting (``data`` must stay unchanged until the
        member has ended: :attr:`ended`, or the thread has)."""
        self.ops.put(DataOp(data, None))

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
    ) -> Result[tuple[int, Relayed]]:
        """:meth:`relay` without waiting: its result, to await when it suits (``fd`` and
        ``first`` must stay open and unchanged until then)."""
        done: Result[tuple[int, Relayed]] = self._owner.result()
        self.ops.put(RelayOp(fd, first, count, read_timeout, done))
        return done

    async def splice(self, source: Fetched, count: int) -> None:
        """Have ``source``'s next ``count`` body bytes relayed (see ``read_member``)."""
        await source.relay_through(self, count)

    def abort(self) -> None:
        """This member cannot be completed: the thread ends without sending more."""
        self.ops.put(ABORT)
