"""A zip of several files and folders of one storage (blocking I/O, no Trio).

:func:`plan_selection` turns a selection, each item a path inside the root, into the
same kind of :class:`~slipstream.zip.localplan.Plan` a single directory has: members
are named relative to the deepest folder that holds every selected item (so picking
``docs/a.txt``, ``docs/b.txt`` and ``docs/img`` zips ``a.txt``, ``b.txt``, ``img/...``);
a folder brings every file under it (the rules of
:func:`~slipstream.zip.listing.list_entries`), a file itself.  The selection is put in
path order and an item inside another selected folder is dropped, so the zip's bytes
and ETag depend on the set of items alone, never on the order they were named in.
"""

from __future__ import annotations

import os
import stat as stat_mod
from collections.abc import Sequence
from typing import NamedTuple

from slipstream.filenames import deduplicate, is_part_file, safe_filename

from .listing import LocalEntry, list_entries
from .localplan import Plan, listing_etag
from .plan import ZipLayout

__all__ = ["Selected", "normalize_selection", "plan_selection"]


class Selected(NamedTuple):
    """One item of a selection: its path segments in the root and its real path."""

    segments: tuple[str, ...]
    real: str
    is_dir: bool


def normalize_selection(items: Sequence[Selected]) -> tuple[list[Selected], tuple[str, ...]]:
    """The items in path order, without repeats or items inside a selected folder, and
    the segments of the folder their member names are relative to."""
    ordered = sorted(set(items), key=lambda item: item.segments)
    kept: list[Selected] = []
    for item in ordered:
        if any(
            parent.is_dir and item.segments[: len(parent.segments)] == parent.segments
            for parent in kept
        ):
            continue  # already zipped with its folder
        kept.append(item)
    common = _common_parent([item.segments for item in kept])
    return kept, common


def plan_selection(items: Sequence[Selected], hidden: Sequence[str] = ()) -> Plan:
    """List and plan the zip of ``items`` (see the module docstring); blocking."""
    kept, common = normalize_selection(items)
    entries: list[LocalEntry] = []
    for item in kept:
        prefix = "/".join(safe_filename(s) for s in item.segments[len(common) :])
        if item.is_dir:
            below = list_entries(item.real, hidden)
            if prefix:
                below = [e._replace(name=f"{prefix}/{e.name}", where=e.path) for e in below]
            entries.extend(below)
        else:
            entry = _file_entry(prefix, item.real)
            if entry is not None:
                entries.append(entry)
    entries.sort(key=lambda e: e.name)
    names = [e.name for e in entries]
    unique = deduplicate(names)
    if unique != names:
        entries = [
            e if e.name == name else e._replace(name=name, where=e.path)
            for e, name in zip(entries, unique, strict=True)
        ]
    newest = max((e.mtime for e in entries), default=0)
    return Plan(entries, ZipLayout(entries), listing_etag(entries), newest)


def _file_entry(name: str, real: str) -> LocalEntry | None:
    """The member of one selected file (None: not a readable regular file, or gone)."""
    if is_part_file(os.path.basename(real)):
        return None
    try:
        st = os.lstat(real)
    except OSError:
        return None
    if not stat_mod.S_ISREG(st.st_mode) or st.st_mode & 0o444 == 0:
        return None
    return LocalEntry(
        name, "", real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, int(st.st_mtime)
    )


def _common_parent(paths: Sequence[tuple[str, ...]]) -> tuple[str, ...]:
    """The longest folder path that holds every one of ``paths`` (each item is inside it,
    never equal to it, so a lone folder's members are named with the folder's name)."""
    if not paths:
        return ()
    common = paths[0][:-1]
    for path in paths[1:]:
        parent = path[:-1]
        n = 0
        while n < min(len(common), len(parent)) and common[n] == parent[n]:
            n += 1
        common = common[:n]
    return common
