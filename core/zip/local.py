"""A directory of local storage as a resumable, deterministic STORED zip.

Unlike a zip of remote objects, every byte is known once the CRCs are: they come from
the digest cache (cold files are hashed first, at most two at a time), so the whole zip
is an ordinary segment map of literals (headers, descriptors, central directory) and
file slices sent with ``sendfile`` - Range, If-Range, HEAD and multipart come from the
same reply logic as a single file.

Members are the readable regular files under the directory (symlinks, special files,
files without read permission bits, the state dir and the hidden ``.part`` files of
running downloads are skipped), in
sorted path order, named by their relative path with every segment made safe.  Files are
opened only when their bytes are sent (a few at a time), and a file whose size or mtime
changed since the listing fails the reply instead of corrupting the zip.
"""

from __future__ import annotations

import os
import stat as stat_mod
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import trio

from slipstream.digests import DigestCache, FileChanged, FileKey, OnChange, opened_file_digests
from slipstream.filenames import deduplicate, is_part_file, safe_filename
from slipstream.http.disposition import content_disposition
from slipstream.http.reply import RFC9110, Refusal
from slipstream.http.representation import Representation
from slipstream.http.validators import Validators
from slipstream.segments import FileSlice, Literal, Segment, SegmentMap
from slipstream.send import BodyTruncated

from .crc import first_failure
from .plan import ZipMember, manifest_etag, plan_zip

__all__ = ["LocalEntry", "list_entries", "local_zip"]

_OPEN_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_OPEN: Final = 4
_HASHERS: Final = 2


@dataclass(frozen=True, slots=True)
class LocalEntry:
    """One file to zip: its entry name, where it is, and the stat seen when listed."""

    name: str
    path: str
    stat: os.stat_result


def list_entries(directory: str, hidden: Sequence[str] = ()) -> list[LocalEntry]:
    """Regular files under ``directory`` (real path), sorted, with safe unique names."""
    hidden_real = [os.path.realpath(h) for h in hidden]
    found: list[tuple[str, str, os.stat_result]] = []
    for top, dirs, files in os.walk(directory, followlinks=False):
        if any(top == h or top.startswith(h + os.sep) for h in hidden_real):
            dirs[:] = []
            continue
        dirs.sort()
        for name in sorted(files):
            if is_part_file(name):
                continue
            path = os.path.join(top, name)
            st = os.lstat(path)
            if stat_mod.S_ISREG(st.st_mode) and st.st_mode & 0o444:  # as LocalStorage.open
                relative = os.path.relpath(path, directory).split(os.sep)
                found.append(("/".join(safe_filename(s) for s in relative), path, st))
    found.sort(key=lambda item: item[0])
    names = deduplicate([name for name, _, _ in found])
    return [LocalEntry(n, path, st) for n, (_, path, st) in zip(names, found, strict=True)]


class _OpenFiles:
    """Opens member files on demand and keeps only the last few open."""

    def __init__(self) -> None:
        self._open: OrderedDict[str, int] = OrderedDict()

    def fd(self, entry: LocalEntry) -> int:
        fd = self._open.pop(entry.path, None)
        if fd is None:
            fd = os.open(entry.path, _OPEN_FLAGS)
            st = os.fstat(fd)
            if (st.st_ino, st.st_size, st.st_mtime_ns) != (
                entry.stat.st_ino,
                entry.stat.st_size,
                entry.stat.st_mtime_ns,
            ):
                os.close(fd)
                raise BodyTruncated(f"{entry.name} changed since the zip was planned")
            while len(self._open) >= _MAX_OPEN:
                os.close(self._open.popitem(last=False)[1])
        self._open[entry.path] = fd
        return fd

    def close(self) -> None:
        while self._open:
            os.close(self._open.popitem()[1])


class _LazyFile:
    """A file slice source whose descriptor is opened when the bytes are sent."""

    __slots__ = ("entry", "files")

    def __init__(self, files: _OpenFiles, entry: LocalEntry) -> None:
        self.files = files
        self.entry = entry

    def fileno(self) -> int:
        return self.files.fd(self.entry)


class _ListedFile:
    """A member file opened to be hashed, with the version seen when it was listed (so a
    file that changed since counts as changed)."""

    __slots__ = ("_fd", "stat")

    def __init__(self, entry: LocalEntry) -> None:
        self.stat = entry.stat
        self._fd = os.open(entry.path, _OPEN_FLAGS)

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


async def _crc32s(entries: Sequence[LocalEntry], digests: DigestCache) -> list[int]:
    """Every entry's CRC-32, from the digest cache or hashed now (two files at a time)."""
    values: list[int] = [0] * len(entries)
    limiter = trio.CapacityLimiter(_HASHERS)

    async def one(index: int, entry: LocalEntry) -> None:
        found = digests.lookup(FileKey.from_stat(entry.stat))
        if found is None:
            async with limiter:
                listed = _ListedFile(entry)
                try:
                    _, found = await opened_file_digests(digests, listed, on_change=OnChange.FAIL)
                except FileChanged:
                    raise BodyTruncated(f"{entry.name} changed while it was hashed") from None
                finally:
                    listed.close()
        values[index] = int.from_bytes(found.raw("crc32"), "big")

    try:
        async with trio.open_nursery() as nursery:
            for index, entry in enumerate(entries):
                if entry.stat.st_size:
                    nursery.start_soon(one, index, entry)
    except* BodyTruncated as group:
        raise first_failure(group) from None  # not a group: the caller answers 503
    return values


async def local_zip(
    directory: str, zip_name: str, digests: DigestCache, hidden: Sequence[str] = ()
) -> Representation[Refusal]:
    """The zip of ``directory`` (a resolved real path) as a :class:`Representation`
    (served under the RFC 9110 policy, like a file).

    Raises :class:`BodyTruncated` if a file changes while it is hashed.
    """
    entries = await trio.to_thread.run_sync(list_entries, directory, hidden)
    members = [ZipMember(e.name, e.stat.st_size, int(e.stat.st_mtime)) for e in entries]
    layout = plan_zip(members)
    crcs = await _crc32s(entries, digests)
    files = _OpenFiles()
    segments: list[Segment] = []
    for index, entry in enumerate(entries):
        segments.append(Literal(layout.header_bytes(index)))
        if entry.stat.st_size:
            segments.append(FileSlice(_LazyFile(files, entry), 0, entry.stat.st_size))
        segments.append(Literal(layout.descriptor_bytes(index, crcs[index])))
    segments.append(Literal(layout.central_bytes(crcs)))
    versions = [
        f"{e.stat.st_dev}-{e.stat.st_ino}-{e.stat.st_size}-{e.stat.st_mtime_ns}" for e in entries
    ]
    mtimes = [int(e.stat.st_mtime) for e in entries]
    return Representation(
        body=SegmentMap(segments),
        validators=Validators(manifest_etag(members, versions), max(mtimes, default=0)),
        policy=RFC9110,
        content_type="application/zip",
        headers=[("Content-Disposition", content_disposition(zip_name))],
        on_done=files.close,
    )
