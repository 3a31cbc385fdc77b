"""The members of a directory zip: which files, named how, in what order (blocking I/O).

:func:`list_entries` walks a directory and returns its readable regular files as
:class:`LocalEntry` values, sorted by entry name: the relative path with every segment
made safe (:func:`slipstream.filenames.safe_filename`), made unique ignoring case
(:func:`slipstream.filenames.deduplicate`).  Skipped: symlinks (never followed, to files
or directories), special files, files without any read permission bit, the hidden
``.part`` files of running downloads, directories listed in ``hidden`` (the state dir),
and whatever vanishes or cannot be read while the walk runs.

It makes blocking system calls, one ``lstat`` per regular file and one directory read
per directory, and no other per file (no path joins, no ``relpath``, each directory's
safe name made once): call it in a worker thread (``trio.to_thread.run_sync``).  The
``lstat`` calls are about half of its time, the Python work per file the other half.
An entry keeps only what the zip needs (no ``os.stat_result``), and can be given to
:func:`slipstream.zip.plan.plan_zip` as it is.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import partial
from itertools import islice
from operator import eq, itemgetter
from typing import Final, NamedTuple

from slipstream.digests import FileKey
from slipstream.digests.store import Version
from slipstream.ext import PlainRule, scan_directory
from slipstream.filenames import (
    DEVICE_PREFIXES,
    PART_SUFFIX,
    PLAIN_BYTES,
    deduplicate,
    is_part_file,
    safe_filename,
)

__all__ = ["LocalEntry", "list_entries"]

_by_name: Final = itemgetter(0)  # LocalEntry.name
_PLAIN: Final = PlainRule(PLAIN_BYTES, DEVICE_PREFIXES, PART_SUFFIX.encode("ascii"))
"""The names :func:`~slipstream.filenames.safe_filename` keeps as they are, and that are
not a download's ``.part`` file: their entries are built in the extension."""


class LocalEntry(NamedTuple):
    """One file to zip: its entry name, where it is, and its version when listed.

    ``name`` is the zip entry name (relative path, ``/``-separated, every segment safe,
    unique in its listing); :attr:`path` the file's path (kept as ``base``, the listed
    directory with a trailing separator, shared by every entry, plus ``name``, unless
    the name differs from the relative path: then ``where``); ``dev``, ``ino``, ``size``,
    ``mtime_ns`` and ``mtime`` its ``lstat`` fields.  A named tuple: compact (no ``os.stat_result``
    kept), immutable, and built in C by :func:`list_entries`.
    """

    name: str
    base: str
    where: str | None
    dev: int
    ino: int
    size: int
    mtime_ns: int
    mtime: int
    """The mtime in whole seconds, exactly ``int(st.st_mtime)`` as the zip's timestamps
    and ETag have always used it.  That is not always ``mtime_ns // 10**9``:
    ``st_mtime`` is the double ``seconds + nanoseconds * 1e-9``, which rounds up to the
    next second when the nanoseconds are within a few hundred of it, and ``int()``
    truncates toward zero (a negative mtime).  Kept, not derived: every request reads
    it several times per member."""

    @property
    def path(self) -> str:
        """The file's path (not kept whole: most entries share their directory's string,
        which saves tens of MiB on a directory of hundreds of thousands of files)."""
        where = self.where
        return self.base + self.name if where is None else where

    def version(self) -> Version:
        """``(dev, ino, size, mtime_ns)``: what the digest cache keys a file's CRC-32 by;
        changes whenever the file (or its inode) does."""
        return (self.dev, self.ino, self.size, self.mtime_ns)

    def key(self) -> FileKey:
        """The digest cache key of this version of the file."""
        return FileKey(self.dev, self.ino, self.size, self.mtime_ns)


_as_entry: Final = partial(tuple.__new__, LocalEntry)
"""A :class:`LocalEntry` of a tuple of its fields (in C: no Python-level ``__new__``)."""


def list_entries(directory: str, hidden: Sequence[str] = ()) -> list[LocalEntry]:
    """The readable regular files under ``directory`` (real path), sorted by entry name,
    with safe unique names; nothing under a directory of ``hidden`` (real paths taken).

    Names made equal by :func:`~slipstream.filenames.safe_filename` (``a:b`` and ``a_b``)
    are numbered in the order of their raw paths, as ``os.walk`` with sorted names
    would meet them.
    """
    hidden_real = frozenset(os.path.realpath(h) for h in hidden)
    hidden_below = tuple(h + os.sep for h in hidden_real)
    entries: list[LocalEntry] = []
    extend = entries.extend
    base = directory.rstrip(os.sep) + os.sep
    shared: dict[int, int] = {}
    """One int object per distinct device, size or whole-second mtime: files written
    together share them (32 bytes per file and field less on a large directory)."""
    # Directories still to list: (path, safe name prefix of its files, path prefix of
    # its files when that is not base + their entry name).  The order does not matter:
    # the entries are sorted at the end.
    pending: list[tuple[str, str, str | None]] = [(directory, "", None)]
    while pending:
        top, prefix, where = pending.pop()
        if top in hidden_real or top.startswith(hidden_below):
            continue
        try:
            found = scan_directory(top, prefix, base, where, shared, _PLAIN)
        except OSError:  # unreadable, or gone since its parent was read: left out
            continue
        top_sep = top if top.endswith(os.sep) else top + os.sep
        extend(map(_as_entry, found.entries))  # plain names: no Python code per file
        for name in found.directories:
            safe = safe_filename(name)
            child = top_sep + name
            pending.append(
                (
                    child,
                    f"{prefix}{safe}/",
                    None if where is None and safe == name else child + os.sep,
                )
            )
        for name, dev, ino, size, mtime_ns, mtime in found.others:
            if is_part_file(name):
                continue
            safe = prefix + safe_filename(name)
            path = top_sep + name
            where_file = None if path == base + safe else path
            entries.append(_as_entry((safe, base, where_file, dev, ino, size, mtime_ns, mtime)))
    entries.sort(key=_by_name)
    names = list(map(_by_name, entries))
    if any(map(eq, names, islice(names, 1, None))):
        _order_ties(entries)
        names = list(map(_by_name, entries))
    unique = deduplicate(names)
    if unique != names:
        entries = [
            e if e.name is name else e._replace(name=name, where=e.path)
            for e, name in zip(entries, unique, strict=True)
        ]
    return entries


def _order_ties(entries: list[LocalEntry]) -> None:
    """Put each run of equal names (``entries`` is sorted by name) in raw path order.

    Equal names have as many segments, so comparing their paths segment by segment
    is the order of a depth-first walk listing each directory's names sorted.
    """
    start = 0
    while start < len(entries):
        stop = start + 1
        while stop < len(entries) and entries[stop].name == entries[start].name:
            stop += 1
        if stop - start > 1:
            entries[start:stop] = sorted(entries[start:stop], key=lambda e: e.path.split(os.sep))
        start = stop
