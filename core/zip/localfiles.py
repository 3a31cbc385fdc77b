"""Reading the files of a directory zip as they were listed (blocking; run in worker threads).

A directory zip's layout and ETag come from the listing (:mod:`slipstream.zip.listing`):
each file's ``(dev, ino, size, mtime_ns)``.  Every read here checks that the open file
still has that version (and a large file's, after reading too), and raises
:class:`~slipstream.digests.FileChanged` otherwise: a file that changed, grew, shrank,
vanished or became unreadable since it was listed.  The reply then stops before that
member's data descriptor (see :mod:`slipstream.zip.local`), so no zip ever pairs bytes
with a CRC of other bytes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Final, Protocol

from slipstream.digests import FileChanged
from slipstream.ext import crc

__all__ = ["Listed", "check_listed", "crc_range", "open_listed", "read_files"]

_OPEN_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
"""``O_NONBLOCK``: a FIFO put in a file's place since the listing must not block the open
(the version check then fails on it); regular files ignore the flag."""


class Listed(Protocol):
    """A file as the listing saw it."""

    @property
    def name(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def dev(self) -> int: ...
    @property
    def ino(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def mtime_ns(self) -> int: ...


def check_listed(fd: int, entry: Listed) -> None:
    """``FileChanged`` unless ``fd`` is still the version of ``entry`` that was listed."""
    st = os.fstat(fd)
    if (st.st_ino, st.st_size, st.st_mtime_ns, st.st_dev) != (
        entry.ino,
        entry.size,
        entry.mtime_ns,
        entry.dev,
    ):
        raise FileChanged(f"{entry.name} changed since the zip was planned")


def open_listed(entry: Listed) -> int:
    """A descriptor of ``entry``'s file, checked to be the version listed."""
    try:
        fd = os.open(entry.path, _OPEN_FLAGS)
    except OSError as exc:
        raise FileChanged(f"{entry.name} cannot be opened any more: {exc.strerror}") from None
    try:
        check_listed(fd, entry)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_files(entries: Sequence[Listed]) -> list[tuple[bytes, int] | FileChanged]:
    """Every small file of ``entries``, whole, with its CRC-32; a file that is no longer
    the version listed gives its :class:`FileChanged` instead (the others are still read).

    One call reads many files, so a directory of small files costs one thread hop per
    batch, not per file.
    """
    out: list[tuple[bytes, int] | FileChanged] = []
    for entry in entries:
        try:
            fd = open_listed(entry)
            try:
                data = os.pread(fd, entry.size + 1, 0)  # one more: a file that grew shows it
                if len(data) != entry.size:
                    raise FileChanged(f"{entry.name} changed size since the zip was planned")
                # No second check: the CRC is computed from exactly these bytes, so the
                # member is consistent even if a write raced this one read, and that
                # write's new mtime gives the next listing a new ETag.
            finally:
                os.close(fd)
        except FileChanged as exc:
            out.append(exc)
        except OSError as exc:
            out.append(FileChanged(f"{entry.name} cannot be read: {exc.strerror}"))
        else:
            out.append((data, crc("crc32", data, 0)))
    return out


def crc_range(entry: Listed, offset: int, length: int, buffer: memoryview) -> int:
    """The CRC-32 of ``length`` bytes of ``entry``'s file from ``offset`` (read into
    ``buffer``); :class:`FileChanged` if the file is not the version listed."""
    fd = open_listed(entry)
    try:
        value = 0
        done = 0
        while done < length:
            want = min(len(buffer), length - done)
            try:
                got = os.preadv(fd, [buffer[:want]], offset + done)
            except OSError as exc:
                raise FileChanged(f"{entry.name} cannot be read: {exc.strerror}") from None
            if not got:
                raise FileChanged(f"{entry.name} shrank since the zip was planned")
            value = crc("crc32", buffer[:got], value)
            done += got
        check_listed(fd, entry)
        return value
    finally:
        os.close(fd)
