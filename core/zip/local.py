"""A directory of local storage as a resumable, deterministic STORED zip, sent at once.

The layout comes from the listing alone (:mod:`slipstream.zip.listing`: names, sizes,
mtimes) and never from the CRCs, so the bytes, the length and the ETag of a directory's
zip are the same whether the digest cache knew its files or not, and the reply starts
without hashing anything.  Every member is ``[local header][data][data descriptor]``;
the CRC-32s are needed only in the descriptors and the central directory, and come
from a :class:`~slipstream.zip.localcrc.LocalCrcBook`:

* a small file (at most :data:`~slipstream.zip.localcrc.SMALL_FILE`) is read whole, in
  batches of many files per worker-thread hop, and its CRC is computed from the bytes
  the reply sends (checked against a cached one: never trusted blindly);
* a large file goes out zero-copy with ``sendfile``; its CRC, when not cached, is
  computed meanwhile by a CRC worker reading the same pages, in parallel pieces;
* a reply that does not stream a member whole (a resume in the middle of the zip) has
  the CRCs it needs computed in the background from the moment it opens.

Members are the readable regular files under the directory (see
:func:`~slipstream.zip.listing.list_entries`).  A file that is no longer the version the
listing saw (size, mtime or inode changed, or it vanished) stops the reply before that
member's data descriptor: the connection closes short of its ``Content-Length``, so no
client takes a corrupt zip for a whole one, and the next request lists the directory
again and gets a new ETag.  When that is found before the reply's head (a range that
needs the CRC first), the caller answers 503 instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from typing import Final

import trio

from slipstream.digests import DigestCache, FileChanged
from slipstream.http.disposition import content_disposition
from slipstream.http.reply import RFC9110, Refusal
from slipstream.http.representation import Representation
from slipstream.http.validators import Validators
from slipstream.segments import FileSlice
from slipstream.send import BodyTruncated, BodyWriter, StreamedBody

from .listing import LocalEntry
from .localcrc import BATCH_BYTES, BATCH_FILES, SMALL_FILE, LocalCrcBook
from .localfiles import check_listed, open_listed, read_files
from .localplan import ListingCache, Plan, plan_directory
from .plan import Piece, ZipLayout
from .selection import Selected, plan_selection

__all__ = [
    "LocalZipBody",
    "LocalZipSource",
    "local_zip",
    "plan_zip_representation",
    "selection_zip",
]

log = logging.getLogger("slipstream.zip")

_SLICE: Final = 256 * 1024
"""Central-directory bytes rendered before they are written (a huge directory's central
directory is streamed, never held whole)."""


async def local_zip(
    directory: str,
    zip_name: str,
    digests: DigestCache | None,
    background: trio.Nursery,
    hidden: Sequence[str] = (),
    plans: ListingCache | None = None,
) -> Representation[Refusal]:
    """The zip of ``directory`` (a resolved real path) as a :class:`Representation`
    (served under the RFC 9110 policy, like a file; its body is streamed, so several
    ranges get the whole zip, as for the zip service).

    CRCs missing from ``digests`` are computed in ``background`` while replies run;
    the representation's ``on_done`` stops that work.  ``plans`` saves the layout and
    ETag of a directory listed again unchanged.
    """
    key = (directory, tuple(hidden))
    previous = None if plans is None else plans.get(key)
    plan = await trio.to_thread.run_sync(plan_directory, directory, hidden, previous)
    if plans is not None and plan is not previous:
        plans.put(key, plan)
    return plan_zip_representation(plan, zip_name, digests, background)


async def selection_zip(
    items: Sequence[Selected],
    zip_name: str,
    digests: DigestCache | None,
    background: trio.Nursery,
    hidden: Sequence[str] = (),
) -> Representation[Refusal]:
    """The zip of several files and folders (see :mod:`slipstream.zip.selection`), served
    like :func:`local_zip`'s."""
    plan = await trio.to_thread.run_sync(plan_selection, items, hidden)
    return plan_zip_representation(plan, zip_name, digests, background)


def plan_zip_representation(
    plan: Plan, zip_name: str, digests: DigestCache | None, background: trio.Nursery
) -> Representation[Refusal]:
    """The :class:`Representation` of a planned zip (CRCs from ``digests`` or computed
    in ``background``; its ``on_done`` stops that work)."""
    entries = plan.entries
    source = LocalZipSource(entries, plan.layout, LocalCrcBook(entries, digests), background)
    return Representation(
        body=source,
        validators=Validators(plan.etag, plan.newest),
        policy=RFC9110,
        content_type="application/zip",
        headers=[("Content-Disposition", content_disposition(zip_name))],
        on_done=source.close,
    )


class LocalZipSource:
    """One listing of a directory, live: entries + layout + CRCs; makes the
    :class:`LocalZipBody` of any byte range (a
    :class:`~slipstream.http.representation.StreamedSource`)."""

    __slots__ = ("background", "crcs", "entries", "layout")

    def __init__(
        self,
        entries: Sequence[LocalEntry],
        layout: ZipLayout,
        crcs: LocalCrcBook,
        background: trio.Nursery,
    ) -> None:
        self.entries = entries
        self.layout = layout
        self.crcs = crcs
        self.background = background

    @property
    def total(self) -> int:
        """The zip's length in bytes."""
        return self.layout.total

    def part(self, start: int, stop: int) -> LocalZipBody:
        """The reply body of bytes ``[start, stop)`` (not opened yet)."""
        return LocalZipBody(self, start, stop)

    def close(self) -> None:
        """Stop the CRC work and store what it computed (idempotent)."""
        self.crcs.close()


class _Descriptor:
    """An open file as the source of a :class:`FileSlice`."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd


class _ReadAhead:
    """A batch of small files being read while the one before it is sent."""

    __slots__ = ("batch", "done", "results")

    def __init__(self, batch: list[int]) -> None:
        self.batch = batch
        self.done = trio.Event()
        self.results: list[tuple[bytes, int] | FileChanged] = []


class LocalZipBody(StreamedBody):
    """``[start, stop)`` of a :class:`LocalZipSource`'s zip, produced while it is sent.

    :meth:`open` before the head is sent waits for the CRCs the bytes before the first
    member data need (``FileChanged`` if one of those files changed) and starts the
    background CRCs the rest needs; :meth:`write` sends; :meth:`aclose` always follows.
    """

    def __init__(self, source: LocalZipSource, start: int, stop: int) -> None:
        self.source = source
        self.start = start
        self.stop = stop
        self._opened = False
        self._read: dict[int, tuple[bytes, int] | FileChanged] = {}
        self._ahead: _ReadAhead | None = None
        self._nursery: trio.Nursery | None = None
        self._fd = -1

    @property
    def total(self) -> int:
        return self.stop - self.start

    def _streamed_whole(self) -> tuple[int, int]:
        """``(first, end)``: members ``first`` to ``end - 1`` have all their data bytes in
        this reply (data offsets, and data ends, grow with the index)."""
        layout, entries = self.source.layout, self.source.entries
        members = range(len(entries))
        first = bisect_left(members, self.start, key=layout.data_offset)
        end = bisect_right(
            members, self.stop, key=lambda i: layout.data_offset(i) + entries[i].size
        )
        return first, max(first, end)

    async def open(self) -> None:
        """Get the reply ready up to its first member data (idempotent).

        Raises ``FileChanged`` when a file whose CRC is needed first is no longer the
        version listed (nothing has been sent: the caller answers 503).
        """
        if self._opened:
            return
        self._opened = True
        source = self.source
        crcs, entries, background = source.crcs, source.entries, source.background
        before = source.layout.crcs_before_data(self.start, self.stop)
        crcs.ensure(background, before)
        # The other CRCs this reply needs, except those of the small files it streams
        # whole (computed from the bytes it reads), from now on in the background.
        first, end = self._streamed_whole()
        layout = source.layout
        needed: Sequence[int] = (  # every member, without a list of them all
            range(len(entries))
            if self.stop > layout.central_offset
            else layout.crcs_needed(self.start, self.stop)
        )
        later = [
            i
            for i in needed
            if (not first <= i < end or entries[i].size > SMALL_FILE) and crcs.known(i) is None
        ]
        crcs.ensure(background, later)
        for index in before:
            await crcs.get(index, background)

    async def write(self, out: BodyWriter) -> None:
        """Send the bytes; a file that changed cuts the reply before its descriptor."""
        try:
            await self.open()
            failure: BaseException | None = None
            async with trio.open_nursery() as nursery:  # where the next batch is read ahead
                self._nursery = nursery
                try:
                    await self._send(out)
                except BaseException as exc:  # re-raised below, outside the nursery (no group)
                    failure = exc
                finally:
                    self._nursery = None
                    nursery.cancel_scope.cancel()  # a batch read ahead is not needed
            if failure is not None:
                raise failure
        except FileChanged as exc:
            log.warning("directory zip reply cut: %s", exc)
            # What is buffered is correct (it ends before the changed member's
            # descriptor): send it, so a resume has less to fetch again.
            with contextlib.suppress(trio.BrokenResourceError, trio.TooSlowError, OSError):
                await out.flush()
            raise BodyTruncated(str(exc)) from exc
        finally:
            self._close_file()

    async def _send(self, out: BodyWriter) -> None:
        """Member by member: one the reply holds whole goes out as a unit (the common
        case, without per-piece bookkeeping); the first and last may be partial."""
        layout = self.source.layout
        start, stop = self.start, self.stop
        count = len(layout)
        index = bisect_right(range(count), start, key=layout.header_offset) - 1
        index = max(index, 0)
        first = index
        while index < count:
            begin = layout.header_offset(index)
            if begin >= stop:
                break
            end = layout.header_offset(index + 1) if index + 1 < count else layout.central_offset
            if start <= begin and end <= stop:
                await self._send_member(out, index)
            elif end > start:
                await self._send_pieces(out, layout.pieces(max(start, begin), min(stop, end)))
            if index == first:
                await self._first_bytes_out(out)
            index += 1
        if stop > layout.central_offset:
            await self._send_pieces(out, layout.pieces(max(start, layout.central_offset), stop))

    async def _first_bytes_out(self, out: BodyWriter) -> None:
        """Send the head and the first member now (not once 64 KiB are buffered), then
        let the digest cache be asked about the rest: its lookup never competes with a
        first byte."""
        await out.flush()
        self.source.crcs.start(self.source.background)

    async def _send_member(self, out: BodyWriter, index: int) -> None:
        """Header, data and descriptor of member ``index``."""
        source = self.source
        layout, crcs = source.layout, source.crcs
        size = source.entries[index].size
        if size <= SMALL_FILE:
            data, value = await self._small(index) if size else (b"", 0)
            crcs.record(index, value)
            descriptor = layout.descriptor_bytes(index, value)
            await out.write(b"".join((layout.header_bytes(index), data, descriptor)))
            return
        await out.write(layout.header_bytes(index))
        await self._send_file(out, index, 0, size)
        await out.write(layout.descriptor_bytes(index, await crcs.get(index, source.background)))

    async def _send_pieces(self, out: BodyWriter, pieces: Iterable[Piece]) -> None:
        source = self.source
        layout, crcs, background = source.layout, source.crcs, source.background
        for piece in pieces:
            kind, index = piece.kind, piece.index
            if kind == "header":
                data = layout.header_bytes(index)
            elif kind == "descriptor":
                data = layout.descriptor_bytes(index, await crcs.get(index, background))
            elif kind == "data":
                await self._send_data(out, piece)
                continue
            else:
                await self._send_central(out, piece)
                continue
            if piece.skip or piece.length != len(data):
                data = data[piece.skip : piece.skip + piece.length]
            await out.write(data)

    async def _send_data(self, out: BodyWriter, piece: Piece) -> None:
        """Part of a member's data (a member the reply does not hold whole)."""
        index = piece.index
        if self.source.entries[index].size > SMALL_FILE:
            await self._send_file(out, index, piece.skip, piece.length)
            return
        data, value = await self._small(index)
        if piece.length == len(data):  # the data whole (its header or descriptor cut)
            self.source.crcs.record(index, value)
        await out.write(memoryview(data)[piece.skip : piece.skip + piece.length])

    async def _send_file(self, out: BodyWriter, index: int, offset: int, length: int) -> None:
        """``length`` bytes of a large member from ``offset``, with ``sendfile``."""
        entry = self.source.entries[index]
        self._close_file()
        self._fd = open_listed(entry)
        await out.write_segments([FileSlice(_Descriptor(self._fd), offset, length)])
        check_listed(self._fd, entry)  # sent as listed, so its CRC (computed apart) fits

    async def _small(self, index: int) -> tuple[bytes, int]:
        """Small member ``index``'s bytes and CRC-32, read in a batch with the small
        members after it in this reply (one worker-thread hop per batch); the next
        batch is read while this one is sent."""
        found = self._read.pop(index, None)
        if found is None:
            ahead, self._ahead = self._ahead, None
            if ahead is not None and ahead.batch[0] == index:
                await ahead.done.wait()
                batch, results = ahead.batch, ahead.results
            else:
                batch = self._small_batch(index)
                results = await trio.to_thread.run_sync(read_files, self._entries(batch))
            self._read = dict(zip(batch, results, strict=True))
            found = self._read.pop(index)
            following = self._small_batch(batch[-1] + 1)
            if following and self._nursery is not None:
                self._ahead = _ReadAhead(following)
                self._nursery.start_soon(self._read_ahead, self._ahead)
        if isinstance(found, FileChanged):
            raise found
        return found

    def _entries(self, batch: list[int]) -> list[LocalEntry]:
        entries = self.source.entries
        return [entries[i] for i in batch]

    async def _read_ahead(self, ahead: _ReadAhead) -> None:
        try:
            ahead.results = await trio.to_thread.run_sync(read_files, self._entries(ahead.batch))
        finally:
            ahead.done.set()

    def _small_batch(self, index: int) -> list[int]:
        """The small members with data in this reply from ``index`` on, up to a batch."""
        entries, layout = self.source.entries, self.source.layout
        batch: list[int] = []
        size = 0
        while index < len(entries) and len(batch) < BATCH_FILES and size < BATCH_BYTES:
            if layout.data_offset(index) >= self.stop:
                break
            entry = entries[index]
            if 0 < entry.size <= SMALL_FILE:
                batch.append(index)
                size += entry.size
            index += 1
        return batch

    async def _send_central(self, out: BodyWriter, piece: Piece) -> None:
        """The central part's bytes ``[skip, skip + length)``, rendered record by record."""
        source = self.source
        crcs, background = source.crcs, source.background
        values = await crcs.every(background)
        first, end = piece.skip, piece.skip + piece.length
        position = 0
        pending = bytearray()
        for record in source.layout.central_records(values):
            following = position + len(record)
            if following > first:
                pending += record[max(first - position, 0) : end - position]
                if len(pending) >= _SLICE:
                    await out.write(pending)
                    pending = bytearray()
            position = following
            if position >= end:
                break
        await out.write(pending)

    def _close_file(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    async def aclose(self) -> None:
        """Close the member file still open (if any)."""
        self._close_file()
