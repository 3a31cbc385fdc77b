"""Resumable zip bodies of remote objects: manifests, CRC-32s, and the streamed body.

A :class:`ZipSource` is one manifest made live: the deterministic layout
(:mod:`slipstream.zip.plan`), the probed objects, the headers to send upstream, and a
:class:`~slipstream.zip.crc.CrcBook` that knows or finds every member's CRC-32.
:meth:`ZipSource.body` returns a :class:`ZipBody` for any byte range, and
:meth:`ZipSource.parts` wraps that as the streamed body of a representation, so the one
reply function (:func:`slipstream.http.reply.decide_reply`) picks the range; the
connection sends the body through ``slipstream.send.send_body``.

CRCs are needed only in the data descriptors and the central directory, so a reply
never waits for them up front.  A member whose data a reply streams whole gets its CRC
computed on the way (just in time for its descriptor, which follows it); the CRCs of
the other members the reply needs (a resume that starts in the middle needs all the
earlier ones for the central directory) are computed in the background at once (see
:mod:`slipstream.zip.crc`).

Nothing corrupt is ever sent: an upstream answer that does not match the manifest
(validator, size, range) fails the read, and a recomputed CRC that differs from the
cached one stops the reply before that member's descriptor.  The reply is then cut
(the connection closes short of its ``Content-Length``) and the source remembers the
failure, so later requests get a clear error.

A cut happens only mid-body.  Before its head is sent, a reply is *opened*
(:meth:`ZipBody.open`): the CRCs its leading descriptors or central directory need are
awaited, its first member read is started (the upstream's answer checked and its first
bytes received), and the members it needs whose last fetch failed are tried again with a
one-byte read.  What fails there is raised before anything is committed
(:class:`MembersUnavailable` listing the URIs, or :class:`MemberChanged`), so the caller
answers with an error instead of a reply it cannot finish.

Members are read ahead (:mod:`slipstream.zip.ahead`): while one member's data is sent,
the reads of the next few are already open, in a nursery the reply owns.

The body after the head is sent by a send thread (:mod:`slipstream.zip.sendthread`) when
one of its places is free: the event loop opens the reads, checks each answer and hands
the member to the thread (at most :data:`IN_FLIGHT` unfinished), and the thread sends the
headers, relays the bodies with their CRC-32 and sends the descriptors, back to back.
Otherwise (no place free, ``SEND_THREAD`` off, a client that is not a plain socket) the
event loop sends everything itself.  The bytes, the cut positions and the errors are the
same either way; the tests run both.

An upstream that ignores ``Range`` (the probe saw a ``200``) is read from its first byte
and the bytes before the wanted offset are discarded, up to ``skip_limit``
(:data:`~slipstream.zip.remote.SKIP_LIMIT`); :meth:`ZipSource.range_possible` tells the
caller when a range would need more, so that it answers with the whole zip instead.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Sequence
from typing import Final

import trio

from slipstream.ext import crc
from slipstream.fetch import Fetcher, FetchError
from slipstream.send import BodyTruncated, BodyWriter, StreamedBody

from .ahead import CLOSE_TIMEOUT, OpenedAhead, ReadAhead
from .crc import CRC_CHUNK, CrcBook, first_failure
from .plan import Piece, ZipLayout
from .remote import (
    READ_TRIES,
    SKIP_LIMIT,
    CheckUrl,
    MemberChanged,
    Relay,
    RemoteObject,
    read_member,
)
from .sendthread import acquire_send_thread, release_send_thread
from .state import ZipState
from .threadsend import IN_FLIGHT, ThreadedSend

__all__ = [
    "CRC_CHUNK",
    "IN_FLIGHT",
    "CrcBook",
    "MembersUnavailable",
    "ZipBody",
    "ZipParts",
    "ZipSource",
]

log = logging.getLogger("slipstream.zip")

RECHECKS: Final = 16
"""Members that failed earlier tried again at once before a reply's head."""
RECHECK_TIMEOUT: Final = 10.0
"""Seconds one such try may take (then the member counts as failing)."""
_COALESCE: Final = 64 * 1024
SEND_THREAD: bool = True
"""Whether replies use a send thread when one is free (False: always the event loop)."""


class MembersUnavailable(Exception):
    """Members a reply needs could not be fetched before its first byte was sent."""

    def __init__(self, uris: Sequence[str]) -> None:
        super().__init__("could not fetch " + ", ".join(uris))
        self.uris = tuple(uris)


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
        *,
        skip_limit: int = SKIP_LIMIT,
    ) -> None:
        if len(layout.members) != len(objects):
            raise ValueError("layout and objects differ in length")
        self.layout = layout
        self.objects = objects
        self.fetcher = fetcher
        self.headers = headers
        self.check_url = check_url
        self.skip_limit = skip_limit
        self.unavailable: set[int] = set()
        """Members whose last fetch failed: a reply that needs one tries it before its head."""
        self.crcs = CrcBook(
            objects,
            state,
            fetcher,
            headers,
            check_url,
            skip_limit=skip_limit,
            unavailable=self.unavailable,
        )
        self.failure: BaseException | None = None
        """Set when an upstream stopped matching the manifest (later replies must fail)."""
        self._central: bytes | None = None
        self._all_ranged = all(obj.ranges for obj in objects)
        self.sends_ahead = (
            fetcher.pumped
            and self._all_ranged
            and all(obj.uri.startswith("http://") for obj in objects)
        )
        """Whether a send-thread reply writes its members' requests ahead (see
        :mod:`slipstream.zip.threadsend`): plain ``http://`` objects that honour Range."""

    def range_possible(self, start: int, stop: int) -> bool:
        """Whether ``[start, stop)`` can be served as a range.

        Only the first member data of a range can start inside a member; when its
        upstream ignores Range, reaching that offset means reading and discarding the
        bytes before it, which is done for at most ``skip_limit`` bytes.  Otherwise the
        caller answers with the whole zip (the seed's fallback).
        """
        if self._all_ranged:
            return True
        for piece in self.layout.pieces(start, stop):
            if piece.kind == "data":
                return self.objects[piece.index].ranges or piece.skip <= self.skip_limit
        return True

    def read(
        self,
        index: int,
        offset: int,
        length: int,
        *,
        tries: int = READ_TRIES,
        relay: Relay | None = None,
    ) -> AsyncGenerator[memoryview, None]:
        """Bytes ``[offset, offset + length)`` of member ``index`` (see ``read_member``)."""
        return read_member(
            self.fetcher,
            self.objects[index],
            offset,
            length,
            self.headers,
            self.check_url,
            tries=tries,
            skip_limit=self.skip_limit,
            relay=relay,
        )

    def body(
        self,
        start: int,
        stop: int,
        background: trio.Nursery,
        on_complete: Callable[[int, int], Awaitable[None]] | None = None,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> ZipBody:
        """The bytes ``[start, stop)`` of the zip; ``background`` runs CRC computations.

        ``await on_complete(start, stop)`` runs once every byte was handed to the socket,
        ``await on_close()`` once the reply has ended, sent or not (see :meth:`ZipBody.aclose`).
        """
        return ZipBody(self, start, stop, background, on_complete, on_close)

    def parts(
        self,
        background: trio.Nursery,
        on_complete: Callable[[int, int], Awaitable[None]] | None = None,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> ZipParts:
        """This zip as the streamed body of a reply's representation: the reply
        function picks the range, :meth:`ZipParts.part` makes its :class:`ZipBody`."""
        return ZipParts(self, background, on_complete, on_close)

    async def central(self, nursery: trio.Nursery) -> bytes:
        """The central directory and end records (every CRC needed)."""
        if self._central is None:
            self.crcs.ensure(nursery, range(len(self.objects)))
            values = [await self.crcs.get(i, nursery) for i in range(len(self.objects))]
            self._central = self.layout.central_bytes(values)
        return self._central


class ZipParts:
    """A :class:`ZipSource` as a :class:`~slipstream.http.representation.StreamedSource`:
    its length, and the :class:`ZipBody` of any range (see :meth:`ZipSource.body`)."""

    __slots__ = ("background", "on_close", "on_complete", "source")

    def __init__(
        self,
        source: ZipSource,
        background: trio.Nursery,
        on_complete: Callable[[int, int], Awaitable[None]] | None,
        on_close: Callable[[], Awaitable[None]] | None,
    ) -> None:
        self.source = source
        self.background = background
        self.on_complete = on_complete
        self.on_close = on_close

    @property
    def total(self) -> int:
        """The zip's length in bytes."""
        return self.source.layout.total

    def part(self, start: int, stop: int) -> ZipBody:
        """The reply body of bytes ``[start, stop)`` (not opened yet)."""
        return self.source.body(start, stop, self.background, self.on_complete, self.on_close)


class ZipBody(StreamedBody):
    """``[start, stop)`` of a :class:`ZipSource`'s zip, produced while it is sent.

    Call :meth:`open` before the head is committed (it gets everything up to the first
    body byte ready and raises what prevents it), then :meth:`write`; :meth:`aclose`
    when the reply has ended, whatever happened.
    """

    def __init__(
        self,
        source: ZipSource,
        start: int,
        stop: int,
        background: trio.Nursery,
        on_complete: Callable[[int, int], Awaitable[None]] | None = None,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.source = source
        self.start = start
        self.stop = stop
        self.background = background
        self.on_complete = on_complete
        self.on_close = on_close
        self._opened = False
        self._whole: set[int] = set()
        self._pieces: Iterator[Piece] = iter(())
        self._ready = bytearray()
        """Body bytes rendered by :meth:`open` (before the first member data)."""
        self._reading: Piece | None = None
        self._reader: AsyncGenerator[memoryview, None] | None = None
        self._first: bytes | memoryview = b""
        self._relay = Relay()

    @property
    def total(self) -> int:
        return self.stop - self.start

    def _scan(self) -> tuple[set[int], set[int]]:
        """Members with data in this reply, and those it streams whole (first to last byte)."""
        layout = self.source.layout
        touched: set[int] = set()
        whole: set[int] = set()
        for p in layout.pieces(self.start, self.stop):
            if p.kind == "data":
                touched.add(p.index)
                if p.skip == 0 and p.length == layout.members[p.index].size:
                    whole.add(p.index)
        return touched, whole

    async def open(self) -> None:
        """Get the reply ready up to its first body byte, before its head is sent.

        Waits for the CRCs the leading descriptors or central directory need, opens the
        first member read (its upstream's answer checked, its first bytes received), and
        tries again (one byte each) the members this reply needs whose last fetch failed.
        Raises :class:`MemberChanged` (the object changed: remembered by the source) or
        :class:`MembersUnavailable` listing every member found failing; nothing stays
        open after a failure.  Idempotent.
        """
        if self._opened:
            return
        self._opened = True
        source = self.source
        if source.failure is not None:
            raise source.failure
        layout = source.layout
        touched, self._whole = self._scan()
        needed = [i for i in layout.crcs_needed(self.start, self.stop) if i not in self._whole]
        before = layout.crcs_before_data(self.start, self.stop)
        source.crcs.ensure(self.background, before)
        failed: dict[int, str] = {}
        try:
            for index in before:
                try:
                    await source.crcs.get(index, self.background)
                except FetchError as exc:
                    failed[index] = str(exc)
                    break
            if not failed:
                pieces = layout.pieces(self.start, self.stop)
                for piece in pieces:
                    if piece.kind == "data":
                        try:
                            await self._open_read(piece)
                        except FetchError as exc:
                            source.unavailable.add(piece.index)
                            failed[piece.index] = str(exc)
                        break
                    self._ready += await self._render(piece)
                    if len(self._ready) >= _COALESCE:
                        break
                self._pieces = pieces
            # The other CRCs this reply needs (a resume needs every earlier member's for
            # the central directory) are computed from now on, in the background: not
            # before the first read is open, so they do not delay the first byte.
            source.crcs.ensure(self.background, needed)
            opened = {self._reading.index} if self._reading is not None else set()
            again = (source.unavailable & (touched | set(needed))) - opened - set(failed)
            failed.update(await self._try_again(sorted(again)))
        except MemberChanged as exc:
            source.failure = exc
            await self._close_reader()
            raise
        except BaseException:
            await self._close_reader()
            raise
        if failed:
            await self._close_reader()
            for index, reason in sorted(failed.items()):
                log.warning("zip reply refused: %s: %s", source.objects[index].uri, reason)
            raise MembersUnavailable([source.objects[i].uri for i in sorted(failed)])

    async def _open_read(self, piece: Piece) -> None:
        reader = self.source.read(piece.index, piece.skip, piece.length, relay=self._relay)
        try:
            first = await anext(reader)
        except BaseException:
            with trio.CancelScope(shield=True):
                await reader.aclose()
            raise
        self._reading, self._reader, self._first = piece, reader, first

    async def _try_again(self, indices: Sequence[int]) -> dict[int, str]:
        """One-byte reads of ``indices`` (at most :data:`RECHECKS` at once, each within
        :data:`RECHECK_TIMEOUT`); the ones that still fail, with the reason."""
        source = self.source
        failed: dict[int, str] = {}
        limiter = trio.CapacityLimiter(RECHECKS)

        async def check(index: int) -> None:
            async with limiter:
                with trio.move_on_after(RECHECK_TIMEOUT):
                    try:
                        async with contextlib.aclosing(source.read(index, 0, 1, tries=1)) as data:
                            async for _ in data:
                                pass
                    except FetchError as exc:
                        failed[index] = str(exc)
                        return
                    except MemberChanged as exc:
                        source.failure = exc
                        raise
                    source.unavailable.discard(index)
                    return
                failed[index] = "no answer in time"

        if indices:
            try:
                async with trio.open_nursery() as nursery:
                    for index in indices:
                        nursery.start_soon(check, index)
            except* MemberChanged as group:
                raise first_failure(group) from None
        return failed

    async def _render(self, piece: Piece) -> bytes:
        """The bytes of a header, descriptor or central piece (waiting for CRCs)."""
        source = self.source
        layout = source.layout
        if piece.kind == "header":
            data = layout.header_bytes(piece.index)
        elif piece.kind == "descriptor":
            value = await source.crcs.get(piece.index, self.background)
            data = layout.descriptor_bytes(piece.index, value)
        else:
            data = await source.central(self.background)
        return data[piece.skip : piece.skip + piece.length]

    async def write(self, out: BodyWriter) -> None:
        """Send the bytes (opening the reply first if :meth:`open` was not called)."""
        source = self.source
        try:
            if not self._opened:
                try:
                    await self.open()
                except (MemberChanged, MembersUnavailable) as exc:
                    raise BodyTruncated(f"zip reply could not start: {exc}") from exc
            await out.write(self._ready)
            self._ready = bytearray()
            try:
                await self._send_rest(out)
            except (FetchError, MemberChanged) as exc:
                if isinstance(exc, MemberChanged):
                    source.failure = exc
                log.warning("zip reply cut: %s", exc)
                # What is buffered is correct (the bytes before the failing member's data
                # or descriptor): send it, so a resume has less to fetch again.
                with contextlib.suppress(trio.BrokenResourceError, trio.TooSlowError, OSError):
                    await out.flush()
                raise BodyTruncated(f"zip member failed: {exc}") from exc
        finally:
            await self._close_reader()
            source.crcs.flush(self.background)
        if self.on_complete is not None:
            try:
                await self.on_complete(self.start, self.stop)
            except Exception:
                log.exception("zip reply: recording the delivered bytes failed")

    async def _send_rest(self, out: BodyWriter) -> None:
        """Send the pieces after those :meth:`open` rendered, reading members ahead in a
        nursery of this reply; the reads still ahead are closed whatever happens.

        A send thread (:mod:`slipstream.zip.sendthread`) sends them when one of the
        places is free and the client is a plain socket; else the event loop does."""
        threaded = SEND_THREAD and type(out.stream) is trio.SocketStream and acquire_send_thread()
        failure: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                try:
                    if threaded:
                        await ThreadedSend(self, out, nursery).run()
                    else:
                        await self._send_pieces(out, nursery)
                except BaseException as exc:  # re-raised below, outside the nursery
                    failure = exc
                finally:
                    nursery.cancel_scope.cancel()  # the tasks close the reads they still own
        finally:
            if threaded:
                release_send_thread()
        if failure is not None:
            raise failure

    async def _send_pieces(self, out: BodyWriter, nursery: trio.Nursery) -> None:
        source = self.source
        ahead = ReadAhead(self._pieces, source.read, nursery)
        piece, reader, first = self._reading, self._reader, self._first
        if piece is not None and reader is not None:
            self._reading, self._reader, self._first = None, None, b""
            ahead.fill()
            await self._send_data(out, piece, reader, first, self._relay)
        while (item := ahead.next()) is not None:
            if isinstance(item, OpenedAhead):
                ahead.fill()
                reader, first = await self._take(item)
                await self._send_data(out, item.piece, reader, first, item.relay)
            elif item.kind == "data":
                ahead.fill()
                await self._send_data(out, item)
            else:
                if item.kind == "central":  # (see ThreadedSend.run)
                    await source.crcs.stored(self.background)
                await out.write(await self._render(item))

    async def _take(
        self, item: OpenedAhead
    ) -> tuple[AsyncGenerator[memoryview, None], bytes | memoryview]:
        """Own a read opened ahead; its member is marked failing if opening it failed."""
        try:
            return await item.take()
        except FetchError:
            self.source.unavailable.add(item.piece.index)
            raise

    async def _send_data(
        self,
        out: BodyWriter,
        piece: Piece,
        reader: AsyncGenerator[memoryview, None] | None = None,
        first: bytes | memoryview = b"",
        relay: Relay | None = None,
    ) -> None:
        """Relay one member's bytes; a member streamed whole gets its CRC on the way.

        The data of a member that is not streamed whole is not looked at: after its
        first chunk it is spliced from the upstream socket to the client's, where the
        answer allows (see :func:`~slipstream.zip.remote.read_member`).  A member streamed
        whole is always read through memory: its CRC-32 goes into the descriptor, and a
        cached one is checked against the bytes (never trusted blindly).
        """
        source = self.source
        index = piece.index
        whole = index in self._whole
        value = 0
        if reader is None:
            relay = Relay()
            reader = source.read(index, piece.skip, piece.length, relay=relay)
        async with contextlib.aclosing(reader) as data:
            try:
                if first:
                    if whole:
                        value = crc("crc32", first, value)
                    await out.send(first)
                if relay is not None and not whole:
                    relay.out = out
                async for chunk in data:
                    if whole:
                        value = crc("crc32", chunk, value)
                    await out.send(chunk)
            except FetchError:
                source.unavailable.add(index)
                raise
        source.unavailable.discard(index)
        if whole:
            await source.crcs.record(index, value, self.background)

    async def _close_reader(self) -> None:
        reader, self._reader = self._reader, None
        self._reading, self._first = None, b""
        if reader is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
                await reader.aclose()

    async def aclose(self) -> None:
        """Release the open member read (if :meth:`write` never took it) and run
        ``on_close`` once; never raises an ``Exception`` (failures are logged)."""
        await self._close_reader()
        on_close, self.on_close = self.on_close, None
        if on_close is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
                try:
                    await on_close()
                except Exception:
                    log.exception("zip reply: closing failed")
