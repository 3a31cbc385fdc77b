"""Member reads opened ahead of their turn, for a zip reply of remote members.

Members are read ahead: while one member's data is sent, the reads of the next
:data:`PREFETCH_MEMBERS` (4) members with data in the reply are already open (request
sent, answer checked, first chunk received), each in a task of a nursery the reply owns,
so a zip of many small members is not one upstream round trip per member.  The memory
budget: each open read holds one pooled buffer (``BODY_BUFFER``, 1 MiB, in
:mod:`slipstream.fetch`) with its first chunk in it, so a reply holds at most 5 MiB (4
reads ahead and the member being sent; a reply with a send thread also holds the
buffers of the members handed to it, see :mod:`slipstream.zip.stream`).  The rest of
each member waits in the kernel's socket buffers until its turn.  With ``head_only``
(the send thread's reads) a read ahead stops at its checked answer: its first chunk is
empty, and the thread moves the whole body from the kernel.  The bytes, their order and
the errors are those of reading one member after the other: a read ahead that fails
(``FetchError``, ``MemberChanged``) fails its member when that member's turn comes,
never the member being sent; what the reply sent before is flushed first, so the cut
falls just before that member's data.  When the reply ends, is cut, or its client goes
away, the reads ahead are cancelled and closed (shielded, within :data:`CLOSE_TIMEOUT`).

:class:`RequestsAhead` is the lighter form a reply with a send thread uses when every
member is a plain ``http://`` object that honours Range: only the requests of the next
members are written ahead, by the reply's own task (no task, no buffer per member); the
answers are read in the member's turn (see :mod:`slipstream.zip.threadsend`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from typing import Final

import trio

from slipstream.upstream_ahead import SentRequest

from .plan import Piece
from .remote import Relay

__all__ = [
    "CLOSE_TIMEOUT",
    "PREFETCH_MEMBERS",
    "OpenedAhead",
    "ReadAhead",
    "RequestsAhead",
    "SentAhead",
]

PREFETCH_MEMBERS: Final = 4
"""Member reads a reply keeps open ahead of the member it is sending (each holds one
pooled buffer: this bounds the memory a reply holds ahead)."""
_LOOKAHEAD_PIECES: Final = 64
"""Most pieces taken from the layout ahead of the one being sent (empty members have no
data to read ahead, only a header and a descriptor)."""
CLOSE_TIMEOUT: Final = 5.0
"""Seconds closing an upstream read (or ending a reply) may take."""

OpenRead = Callable[..., AsyncGenerator[memoryview, None]]
"""``open_read(index, offset, length, relay=relay)``: a member read (``ZipSource.read``)."""


class OpenedAhead:
    """A member read opened ahead of its turn by :meth:`ReadAhead.fill`.

    The task that opens it owns the read until the sender takes it (:meth:`take`);
    cancelled before that, the task closes it.
    """

    __slots__ = ("error", "first", "piece", "reader", "ready", "relay", "taken")

    def __init__(self, piece: Piece, head_only: bool = False) -> None:
        self.piece = piece
        self.ready = trio.Event()
        """Set once the read is open (``reader`` and ``first``) or failed (``error``)."""
        self.taken = trio.Event()
        self.reader: AsyncGenerator[memoryview, None] | None = None
        self.first: bytes | memoryview = b""
        self.relay = Relay(head_only=head_only)
        self.error: Exception | None = None

    async def take(self) -> tuple[AsyncGenerator[memoryview, None], bytes | memoryview]:
        """Wait until the read is open, then own it (raises what opening it raised)."""
        await self.ready.wait()
        if self.error is not None:
            raise self.error
        reader, first = self.reader, self.first
        assert reader is not None
        self.reader, self.first = None, b""
        self.taken.set()
        return reader, first


class _Lookahead:
    """The pieces of a reply after the one being sent, taken from the layout ahead of
    their turn so that the next members' reads can be started early."""

    def __init__(self, pieces: Iterator[Piece]) -> None:
        self._pieces = pieces
        self._pending: deque[Piece | OpenedAhead | SentAhead] = deque()
        """Pieces taken from the layout ahead; those with a read started are replaced
        by what started it."""

    def _to_start(self) -> Iterator[tuple[int, Piece]]:
        """The positions in ``_pending`` (and pieces) of the next members with data
        whose reads are not started, as long as fewer than :data:`PREFETCH_MEMBERS`
        are (the caller replaces each piece before asking for the next)."""
        pending = self._pending
        started = sum(not isinstance(item, Piece) for item in pending)
        position = 0
        while started < PREFETCH_MEMBERS:
            if position == len(pending):
                piece = next(self._pieces, None) if position < _LOOKAHEAD_PIECES else None
                if piece is None:
                    return
                pending.append(piece)
            item = pending[position]
            if isinstance(item, Piece) and item.kind == "data":
                yield position, item
                started += 1
            position += 1


class ReadAhead(_Lookahead):
    """The pieces of a reply after the one being sent, with the reads of the next members
    opened ahead in ``nursery`` (cancel it to close those not taken)."""

    def __init__(
        self,
        pieces: Iterator[Piece],
        open_read: OpenRead,
        nursery: trio.Nursery,
        *,
        head_only: bool = False,
    ):
        super().__init__(pieces)
        self._head_only = head_only
        """Open the reads with ``Relay(head_only=True)`` (their first chunk may be empty)."""
        self._open_read = open_read
        self._nursery = nursery

    def next(self) -> Piece | OpenedAhead | None:
        """The next piece to send (an :class:`OpenedAhead` if its read was opened); None
        at the end."""
        item = self._pending.popleft() if self._pending else next(self._pieces, None)
        assert not isinstance(item, SentAhead)
        return item

    def fill(self) -> None:
        """Open the reads of the next members with data (after the one about to be sent),
        up to :data:`PREFETCH_MEMBERS`."""
        for position, piece in self._to_start():
            ahead = OpenedAhead(piece, self._head_only)
            self._pending[position] = ahead
            self._nursery.start_soon(self._open, ahead)

    async def _open(self, ahead: OpenedAhead) -> None:
        """Open one read ahead and keep it until the sender takes it; a failure is kept
        for the sender (raised when the member's turn comes), never raised here."""
        piece = ahead.piece
        reader: AsyncGenerator[memoryview, None] | None = None
        try:
            reader = self._open_read(piece.index, piece.skip, piece.length, relay=ahead.relay)
            first = await anext(reader)
        except Exception as exc:
            ahead.error = exc
        else:
            ahead.reader, ahead.first = reader, first
            ahead.ready.set()
            await ahead.taken.wait()
        finally:
            ahead.ready.set()
            if reader is not None and not ahead.taken.is_set():
                ahead.reader, ahead.first = None, b""
                with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
                    await reader.aclose()


class SentAhead:
    """A member whose request :class:`RequestsAhead` wrote ahead of its turn (``request``
    is None when that was declined: the member is read the general way)."""

    __slots__ = ("piece", "request")

    def __init__(self, piece: Piece, request: SentRequest | None) -> None:
        self.piece = piece
        self.request = request


class RequestsAhead(_Lookahead):
    """The pieces of a reply after the one being sent, with the requests of the next
    members written ahead by ``send_ahead(piece)`` (see
    :mod:`slipstream.upstream_ahead`), in the reply's own task: no task per member.
    :meth:`aclose` closes the connections of the requests not taken."""

    def __init__(
        self,
        pieces: Iterator[Piece],
        send_ahead: Callable[[Piece], Awaitable[SentRequest | None]],
    ) -> None:
        super().__init__(pieces)
        self._send_ahead = send_ahead

    def next(self) -> Piece | SentAhead | None:
        """The next piece to send (a :class:`SentAhead` if its request was written);
        None at the end."""
        item = self._pending.popleft() if self._pending else next(self._pieces, None)
        assert not isinstance(item, OpenedAhead)
        return item

    async def fill(self) -> None:
        """Write the requests of the next members with data (after the one about to be
        sent), up to :data:`PREFETCH_MEMBERS`."""
        for position, piece in self._to_start():
            self._pending[position] = SentAhead(piece, await self._send_ahead(piece))

    async def aclose(self) -> None:
        """Close the connections of the requests written and not taken."""
        pending, self._pending = self._pending, deque()
        for item in pending:
            if isinstance(item, SentAhead) and item.request is not None:
                await item.request.aclose()
