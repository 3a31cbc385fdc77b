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

A reply with a send thread whose members are all plain ``http://`` objects that honour
Range reads nothing ahead here: its thread writes the next members' requests itself
(:mod:`slipstream.zip.threadfetch`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Final

import trio

from .plan import Piece
from .remote import Relay

__all__ = [
    "CLOSE_TIMEOUT",
    "PREFETCH_MEMBERS",
    "OpenedAhead",
    "ReadAhead",
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


class ReadAhead:
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
        self._pieces = pieces
        self._pending: deque[Piece | OpenedAhead] = deque()
        """Pieces taken from the layout ahead; those with a read started are replaced
        by what started it."""
        self._head_only = head_only
        """Open the reads with ``Relay(head_only=True)`` (their first chunk may be empty)."""
        self._open_read = open_read
        self._nursery = nursery

    def next(self) -> Piece | OpenedAhead | None:
        """The next piece to send (an :class:`OpenedAhead` if its read was opened); None
        at the end."""
        return self._pending.popleft() if self._pending else next(self._pieces, None)

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
