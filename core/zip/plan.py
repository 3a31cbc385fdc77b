"""Deterministic layout of a streamed STORED zip, zip64 aware (pure, no I/O).

A zip of remote objects must answer ``Range`` requests before the CRC-32 of every member
is known, so the layout depends only on each member's name, size and mtime:

* ``[local header][data][data descriptor]`` per member, then the central part
  (central directory, the zip64 end record and locator when needed, the end record);
* local headers carry CRC 0 and sizes 0 (flag bit 3) and UTF-8 names (bit 11), so they
  and every offset are known from the manifest alone;
* the bytes that hold CRCs (data descriptors, the central directory) are rendered on
  demand by :meth:`ZipLayout.descriptor_bytes` and :meth:`ZipLayout.central_bytes`.

Records come from :mod:`slipstream.ext` (see its ``_zipfmt_py`` for the zip64 rules).
The same manifest always gives the same bytes.  :meth:`ZipLayout.pieces` maps a byte
range to the pieces that cover it (O(log n) to find the first), and
:meth:`ZipLayout.crcs_needed` says which CRCs those pieces need.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, MutableSequence, Sequence
from dataclasses import dataclass
from itertools import accumulate, islice
from typing import Final, Protocol
from typing import Literal as TypingLiteral

from slipstream.ext import (
    central_directory_header,
    data_descriptor,
    end_of_central_directory,
    local_file_header,
    needs_zip64_end,
    zip64_end_of_central_directory,
    zip64_end_of_central_directory_locator,
    zip64_extra,
)
from slipstream.filenames import safe_filename

__all__ = [
    "DOS_EPOCH",
    "Member",
    "Piece",
    "PieceKind",
    "ZipLayout",
    "ZipMember",
    "manifest_etag",
    "plan_zip",
]

#: Unix time of 1980-01-01T00:00:00Z, the timestamp of a member without an mtime.
DOS_EPOCH: Final = 315532800

PieceKind = TypingLiteral["header", "data", "descriptor", "central"]
_KINDS: Final[tuple[PieceKind, PieceKind, PieceKind]] = ("header", "data", "descriptor")

# Record lengths, measured once from the builders (only names vary in length).
_LOCAL_BASE: Final = len(local_file_header(b"", 0, zip64=False))
_LOCAL_ZIP64_EXTRA: Final = len(local_file_header(b"", 0, zip64=True)) - _LOCAL_BASE
_CENTRAL_BASE: Final = len(central_directory_header(b"", 0, 0, 0, 0))
_ZIP64_EXTRA_BASE: Final = len(zip64_extra(0)) - 8  # plus 8 bytes per field
_DESCRIPTOR: Final = len(data_descriptor(0, 0, zip64=False))
_DESCRIPTOR_ZIP64: Final = len(data_descriptor(0, 0, zip64=True))
_EOCD: Final = len(end_of_central_directory(0, 0, 0))
_ZIP64_EOCD: Final = len(zip64_end_of_central_directory(0, 0, 0))
_ZIP64_LOCATOR: Final = len(zip64_end_of_central_directory_locator(0))
_U32_MAX: Final = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class ZipMember:
    """One member: its entry name, size in bytes and mtime (unix seconds, or ``None``)."""

    name: str
    size: int
    mtime: int | None = None


class Member(Protocol):
    """What a plan reads of a member: a :class:`ZipMember`, or any value with these
    attributes (the entries of a directory listing, without a copy of each)."""

    @property
    def name(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def mtime(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Piece:
    """Part of one piece of the zip: emit ``length`` bytes from ``skip`` into it.

    ``index`` is the member's index, or -1 for the central part.
    """

    kind: PieceKind
    index: int
    skip: int
    length: int


def _dos_mtime(member: Member) -> int:
    return DOS_EPOCH if member.mtime is None else member.mtime


def _checked_names(members: Sequence[Member]) -> list[int]:
    """The names' UTF-8 lengths once every member is checked, in order (see
    :func:`plan_zip`); raises the ``ValueError`` of the first member that fails, else
    of the clash."""
    seen: set[str] = set()
    directories: set[str] = set()  # every proper directory prefix of every name
    safe_folders: set[str] = set()  # the directory parts already checked
    lengths: list[int] = []
    for member in members:
        name = member.name
        data = name.encode("utf-8")  # a lone surrogate raises UnicodeEncodeError here
        if not name or len(data) > 0xFFFF:
            raise ValueError(f"invalid member name {name!r}")
        folder, slash, base = name.rpartition("/")
        if not _is_safe_segment(base) or (
            slash
            and folder not in safe_folders
            and not all(_is_safe_segment(segment) for segment in folder.split("/"))
        ):
            raise ValueError(f"unsafe member name {name!r}")
        if slash:
            safe_folders.add(folder)
        lengths.append(len(data))
        if member.size < 0:
            raise ValueError(f"negative size for {name!r}")
        key = name.casefold()
        if key in seen:
            raise ValueError(f"duplicate member name {name!r}")
        seen.add(key)
        _add_folders(directories, key)
    clash = seen & directories
    if clash:
        raise ValueError(f"member names used as directories too: {sorted(clash)}")
    return lengths


def _is_safe_segment(segment: str) -> bool:
    return bool(segment) and safe_filename(segment, default="") == segment


def _add_folders(directories: set[str], key: str) -> None:
    """Add every proper directory prefix of ``key``; one already there came with its
    own parents, so the walk up stops at the first one found."""
    folder = key.rpartition("/")[0]
    while folder and folder not in directories:
        directories.add(folder)
        folder = folder.rpartition("/")[0]


def _all_valid(members: Sequence[Member], names: list[str], lengths: list[int]) -> bool:
    """True only if :func:`_checked_names` accepts ``members``: the same checks, each
    over every member at once (a directory's segments once), with no error to order."""
    if not all(names) or max(lengths, default=0) > 0xFFFF:
        return False
    if min((m.size for m in members), default=0) < 0:
        return False
    folders: set[str] = set()
    add_folder = folders.add
    for name in names:  # safe_filename(s) == s is _is_safe_segment(s): "" gives "download"
        folder, slash, base = name.rpartition("/")
        if safe_filename(base) != base:
            return False
        if slash:
            add_folder(folder)
    if not all(safe_filename(s) == s for folder in folders for s in folder.split("/")):
        return False
    # (a name already case-folded is its own key: no copy of it is kept)
    seen = {n if k == n else k for n, k in zip(names, map(str.casefold, names), strict=True)}
    if len(seen) != len(names):
        return False
    directories: set[str] = set()
    for key in seen:
        _add_folders(directories, key)
    return not seen & directories


# The largest local header plus descriptor of a member, without its name.
_MEMBER_OVERHEAD: Final = _LOCAL_BASE + _LOCAL_ZIP64_EXTRA + _DESCRIPTOR_ZIP64


def _piece_starts(
    offset: int, sizes: Sequence[int], name_lengths: Sequence[int], zip64: Sequence[bool]
) -> Iterator[int]:
    """The start of every piece (header, data, descriptor) of members laid out from
    ``offset``, whose zip64 status is known, then the end of the last: running sums."""
    lengths = [0] * (3 * len(sizes))
    lengths[0::3] = [
        _LOCAL_BASE + length + (_LOCAL_ZIP64_EXTRA if is64 else 0)
        for length, is64 in zip(name_lengths, zip64, strict=True)
    ]
    lengths[1::3] = sizes
    lengths[2::3] = [_DESCRIPTOR_ZIP64 if is64 else _DESCRIPTOR for is64 in zip64]
    return accumulate(lengths, initial=offset)


def _layout(
    sizes: Sequence[int], name_lengths: Sequence[int]
) -> tuple[MutableSequence[int], list[bool], int]:
    """``(starts, zip64, central_size)``: the start of every piece (header, data,
    descriptor of each member, then the central part), which members are zip64, and the
    central directory's size.

    A member is zip64 when its size or its header offset is at least 0xFFFFFFFF
    (``needs_zip64``).  Offsets only grow, so the pieces are laid out in bulk: first as
    if only sizes counted, which is right up to the first header at or past the limit;
    from that member on every one is zip64, and the rest is laid out again.  The starts
    are kept as 64-bit integers (a list only past 2**64 bytes): 8 bytes each, not 36.
    """
    n = len(sizes)
    big = [size >= _U32_MAX for size in sizes]
    most = sum(sizes) + sum(name_lengths) + _MEMBER_OVERHEAD * n  # the end, at most
    starts: MutableSequence[int] = array("Q") if most < 1 << 64 else []
    starts.extend(_piece_starts(0, sizes, name_lengths, big))
    first = min(n, (bisect_left(starts, _U32_MAX) + 2) // 3)  # first header at the limit
    if first < n:
        del starts[3 * first + 1 :]
        tail = _piece_starts(starts[-1], sizes[first:], name_lengths[first:], [True] * (n - first))
        starts.extend(islice(tail, 1, None))
    zip64 = big[:first] + [True] * (n - first)
    # Central records: zip64 extras of 8 bytes per field, sizes (2 fields) and offset.
    big_before = sum(big[:first])
    central_size = _CENTRAL_BASE * n + sum(name_lengths)
    central_size += (_ZIP64_EXTRA_BASE + 16) * big_before
    central_size += (_ZIP64_EXTRA_BASE + 8) * (n - first) + 16 * (sum(big) - big_before)
    return starts, zip64, central_size


class ZipLayout:
    """Where every byte of a zip comes from.  Build it with :func:`plan_zip`.

    Offsets are absolute positions in the zip.  Members are indexed as given.
    """

    __slots__ = (
        "_starts",
        "_zip64",
        "central_offset",
        "central_size",
        "members",
        "total",
        "zip64_end",
    )

    members: tuple[Member, ...]
    #: Length of the whole zip in bytes.
    total: int
    #: Offset of the central directory (the central part runs from here to ``total``).
    central_offset: int
    #: Length of the central directory proper (without the end records).
    central_size: int
    #: True iff the archive has the zip64 end record and locator.
    zip64_end: bool

    def __init__(
        self, members: Sequence[Member], name_lengths: Sequence[int] | None = None
    ) -> None:
        """``name_lengths``: of the names in UTF-8, when the caller has them already.

        Only offsets are kept per member (8 bytes each) besides ``members``: names are
        encoded, and mtimes read, again when their records are rendered.
        """
        self.members = tuple(members)
        if name_lengths is None:
            name_lengths = [len(m.name.encode("utf-8")) for m in self.members]
        # _starts[3 * i + k]: start of piece k (header, data, descriptor) of member i;
        # _starts[3 * n]: start of the central part.
        sizes = [m.size for m in self.members]
        self._starts, self._zip64, central_size = _layout(sizes, name_lengths)
        offset = self._starts[-1]
        self.central_offset = offset
        self.central_size = central_size
        self.zip64_end = needs_zip64_end(len(self.members), central_size, offset)
        tail = _ZIP64_EOCD + _ZIP64_LOCATOR if self.zip64_end else 0
        self.total = offset + central_size + tail + _EOCD

    def __len__(self) -> int:
        return len(self.members)

    def __repr__(self) -> str:
        return f"<ZipLayout members={len(self.members)} total={self.total}>"

    def first_past(self, limit: int) -> int | None:
        """None when the whole zip is at most ``limit`` bytes; else the index of the first
        member whose header, data and descriptor end past ``limit`` (the last member when
        only the central directory does)."""
        if self.total <= limit:
            return None
        starts = self._starts
        ends = (starts[3 * (i + 1)] for i in range(len(self.members)))
        return next((i for i, end in enumerate(ends) if end > limit), len(self.members) - 1)

    def header_offset(self, i: int) -> int:
        """Offset of member ``i``'s local header."""
        return self._starts[3 * self._index(i)]

    def data_offset(self, i: int) -> int:
        """Offset of member ``i``'s data."""
        return self._starts[3 * self._index(i) + 1]

    def descriptor_offset(self, i: int) -> int:
        """Offset of member ``i``'s data descriptor."""
        return self._starts[3 * self._index(i) + 2]

    def is_zip64(self, i: int) -> bool:
        """Whether member ``i`` uses zip64 records (size or header offset >= 0xFFFFFFFF)."""
        return self._zip64[self._index(i)]

    def header_bytes(self, i: int) -> bytes:
        """Member ``i``'s local file header (CRC and sizes 0: they are in the descriptor)."""
        member = self.members[self._index(i)]
        name, mtime = member.name.encode("utf-8"), _dos_mtime(member)
        return local_file_header(name, mtime, zip64=self._zip64[i])

    def descriptor_bytes(self, i: int, crc32: int) -> bytes:
        """Member ``i``'s data descriptor given the CRC-32 of its data."""
        i = self._index(i)
        return data_descriptor(crc32, self.members[i].size, zip64=self._zip64[i])

    def central_bytes(self, crcs: Sequence[int]) -> bytes:
        """The central part (from :attr:`central_offset` to the end) given every CRC-32."""
        return b"".join(self.central_records(crcs))

    def central_records(self, crcs: Sequence[int]) -> Iterator[bytes]:
        """The records of the central part, in order (what :meth:`central_bytes` joins),
        made one at a time: a reply streams a large central directory in pieces."""
        if len(crcs) != len(self.members):
            raise ValueError(f"{len(crcs)} CRCs for {len(self.members)} members")
        starts = self._starts
        for i, (m, crc, is64) in enumerate(zip(self.members, crcs, self._zip64, strict=True)):
            yield central_directory_header(
                m.name.encode("utf-8"), _dos_mtime(m), crc, m.size, starts[3 * i], zip64=is64
            )
        entries, size, offset = len(self.members), self.central_size, self.central_offset
        if self.zip64_end:
            yield zip64_end_of_central_directory(entries, size, offset)
            yield zip64_end_of_central_directory_locator(offset + size)
        yield end_of_central_directory(entries, size, offset)

    def _index(self, i: int) -> int:
        if not 0 <= i < len(self.members):
            raise IndexError(f"member index {i} out of range")
        return i

    def _check_range(self, start: int, stop: int) -> None:
        if not 0 <= start <= stop <= self.total:
            raise ValueError(f"range [{start}, {stop}) outside [0, {self.total})")

    def pieces(self, start: int, stop: int) -> Iterator[Piece]:
        """The pieces covering exactly ``[start, stop)``, in order, none empty.

        Concatenating, for each piece, ``length`` bytes from ``skip`` into its bytes
        (header/descriptor/central bytes, or member data) gives those bytes of the zip.
        """
        self._check_range(start, stop)
        starts = self._starts
        last = len(starts) - 1  # the central part
        k = bisect_right(starts, start) - 1
        pos = start
        while pos < stop:
            end = starts[k + 1] if k < last else self.total
            if end > pos:
                length = min(end, stop) - pos
                if k == last:
                    yield Piece("central", -1, pos - starts[k], length)
                else:
                    yield Piece(_KINDS[k % 3], k // 3, pos - starts[k], length)
                pos += length
            k += 1

    def crcs_before_data(self, start: int, stop: int) -> list[int]:
        """Indices of the members whose CRC-32 the bytes of ``[start, stop)`` before its
        first member data need (a reply must have them before its head): the descriptors
        it starts with, and every member when the central part comes first."""
        out: list[int] = []
        for piece in self.pieces(start, stop):
            if piece.kind == "data":
                break
            if piece.kind == "descriptor":
                out.append(piece.index)
            elif piece.kind == "central":
                seen = set(out)
                out.extend(i for i in range(len(self.members)) if i not in seen)
                break
        return out

    def crcs_needed(self, start: int, stop: int) -> list[int]:
        """Indices of the members whose CRC-32 is needed to render ``[start, stop)``.

        Those whose descriptor overlaps the range, or every member when the range
        overlaps the central part.
        """
        self._check_range(start, stop)
        if start == stop:
            return []
        if stop > self.central_offset:
            return list(range(len(self.members)))
        return [p.index for p in self.pieces(start, stop) if p.kind == "descriptor"]


def plan_zip(members: Sequence[Member]) -> ZipLayout:
    """The layout of a zip of ``members``, in the order given.

    Names must already be safe and unique: each ``/``-separated segment must be
    unchanged by :func:`slipstream.filenames.safe_filename` (so ``a/b.txt`` is allowed,
    ``../x``, ``/abs``, ``a\\b``, ``C:x`` and ``CON`` are not), no two names may be
    equal ignoring case, and no name may also be the directory of another
    (``a`` with ``a/b``).  Sizes must be >= 0.  Raises ``ValueError`` otherwise.
    """
    names = [m.name for m in members]
    try:
        # (UTF-8 lengths; each encoding is dropped at once, a manifest can be long)
        lengths = [len(name.encode("utf-8")) for name in names]
        valid = _all_valid(members, names, lengths)
    except UnicodeEncodeError:
        valid = False
    if not valid:  # check member by member: the first to fail names the error
        lengths = _checked_names(members)
    return ZipLayout(members, lengths)


def manifest_etag(members: Sequence[Member], validators: Sequence[str]) -> str:
    """A strong, quoted ETag for the zip of ``members`` whose upstreams gave ``validators``.

    SHA-256 over a canonical encoding of every name, size and mtime plus the upstream
    validators (ETags or Last-Modified values), so it changes whenever a byte of the
    zip could: ``"z-<32 hex digits>"``.
    """
    manifest = {
        "v": 1,
        "members": [[m.name, m.size, m.mtime] for m in members],
        "validators": list(validators),
    }
    canonical = json.dumps(manifest, ensure_ascii=False, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode("utf-8", errors="surrogatepass")).hexdigest()
    return f'"z-{digest[:32]}"'
