"""One directory of a directory zip's listing (pure-Python twin of ``_listing_c``).

:func:`scan_directory` reads one directory and ``lstat``\\ s its files, for
:func:`slipstream.zip.listing.list_entries`, which walks the tree.  The files whose
name is *plain* under a :class:`PlainRule` (a name ``safe_filename`` keeps as it is)
come back as finished entry tuples, so the common case costs no Python code per file;
the others come back raw, for the caller to name.  The compiled twin does the directory
read and the ``lstat`` calls with the GIL released.
"""

from __future__ import annotations

import os
from functools import lru_cache
from stat import S_ISREG
from typing import NamedTuple

__all__ = ["Entry", "PlainRule", "Raw", "Scan", "scan_directory"]

Entry = tuple[str, str, "str | None", int, int, int, int, int]
"""``(name, base, where, dev, ino, size, mtime_ns, mtime)``: the fields of
:class:`slipstream.zip.listing.LocalEntry`, in its order."""

Raw = tuple[str, int, int, int, int, int]
"""``(raw name, dev, ino, size, mtime_ns, mtime)`` of a file whose name is not plain."""


class PlainRule(NamedTuple):
    """Which names are plain: 1 to 255 bytes, each allowed by ``table`` (256 bytes, one
    per byte value, non-zero when allowed; only ASCII should be), not starting with a
    space, not ending with a space or a dot, not starting (ignoring ASCII case) with one
    of ``prefixes`` (upper-case ASCII ``bytes``), not ending with ``suffix``."""

    table: bytes
    prefixes: tuple[bytes, ...]
    suffix: bytes


class Scan(NamedTuple):
    """What :func:`scan_directory` found in one directory (each list in directory order)."""

    directories: list[str]
    """The names of its subdirectories (not symlinks to directories)."""
    entries: list[Entry]
    """Its readable regular files with a plain name."""
    others: list[Raw]
    """Its readable regular files with another name."""


def is_plain(raw: bytes, rule: PlainRule) -> bool:
    """Whether the file name ``raw`` (bytes, as the directory holds it) is plain."""
    if not 0 < len(raw) <= 255 or raw[0] == 0x20 or raw[-1] in b" .":
        return False
    if rule.suffix and raw.endswith(rule.suffix):
        return False
    if any(raw[: len(prefix)].upper() == prefix for prefix in rule.prefixes):
        return False
    return not raw.translate(None, _allowed(rule.table))  # nothing left: all allowed


@lru_cache(maxsize=4)
def _allowed(table: bytes) -> bytes:
    """The byte values ``table`` allows."""
    return bytes(value for value in range(256) if table[value])


def scan_directory(
    path: str,
    prefix: str,
    base: str,
    where: str | None,
    shared: dict[int, int],
    rule: PlainRule,
) -> Scan:
    """The subdirectories and readable regular files of the directory ``path``.

    A file with a plain name (see :class:`PlainRule`) becomes the entry
    ``(prefix + name, base, where + name or None, dev, ino, size, mtime_ns, mtime)``
    where ``mtime`` is ``int(st_mtime)``; equal devices, sizes and mtimes are the one int object
    ``shared`` holds (``shared.setdefault``).  A file whose ``lstat`` fails (gone since
    the directory was read) is left out; symlinks and special files too.  ``OSError``
    when the directory itself cannot be opened or read.
    """
    directories: list[str] = []
    entries: list[Entry] = []
    others: list[Raw] = []
    share = shared.setdefault
    with os.scandir(path) as scan:
        listed = list(scan)
    for item in listed:
        name = item.name
        try:
            if item.is_dir(follow_symlinks=False):
                directories.append(name)
                continue
            st = item.stat(follow_symlinks=False)
        except OSError:
            continue
        mode = st.st_mode
        if not (S_ISREG(mode) and mode & 0o444):
            continue
        size = share(st.st_size, st.st_size)
        mtime = int(st.st_mtime)
        mtime = share(mtime, mtime)
        if is_plain(os.fsencode(name), rule):
            entries.append(
                (
                    prefix + name,
                    base,
                    None if where is None else where + name,
                    share(st.st_dev, st.st_dev),
                    st.st_ino,
                    size,
                    st.st_mtime_ns,
                    mtime,
                )
            )
        else:
            others.append(
                (name, share(st.st_dev, st.st_dev), st.st_ino, size, st.st_mtime_ns, mtime)
            )
    return Scan(directories, entries, others)
