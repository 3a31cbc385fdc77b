"""A directory zip's plan: its listing, layout and ETag (blocking I/O, no Trio).

:func:`plan_directory` lists a directory (:func:`~slipstream.zip.listing.list_entries`)
and derives from the listing alone what a reply needs before its first byte: the
layout, the ETag, the newest mtime.  A :class:`ListingCache` keeps the plans of the
directories zipped last, so a directory listed again unchanged skips the rest.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from operator import itemgetter
from typing import Final, NamedTuple

from .listing import LocalEntry, list_entries
from .plan import ZipLayout

__all__ = ["ListingCache", "Plan", "listing_etag", "plan_directory"]


class Plan(NamedTuple):
    """A directory's listing and what follows from it alone."""

    entries: list[LocalEntry]
    layout: ZipLayout
    etag: str
    newest: int
    """The newest mtime of its files, in whole seconds (0 when there is none)."""


class ListingCache:
    """The plans of the directories zipped last, reused while a new listing is equal.

    A directory is listed again for every request (its files' versions are what the
    plan rests on, so nothing here is trusted without that); only the work that follows
    from an equal listing (the layout, the ETag) is saved, which is most of what a
    warm directory zip does before its first byte besides the listing.  At most
    ``max_entries`` entries in all are kept, least recently used first out; a listing
    of more than half that is never kept (it would double a large directory's memory).
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._plans: OrderedDict[tuple[str, tuple[str, ...]], Plan] = OrderedDict()
        self._held = 0

    def get(self, key: tuple[str, tuple[str, ...]]) -> Plan | None:
        """The plan kept for ``key`` (a directory and its hidden paths), if any."""
        plan = self._plans.get(key)
        if plan is not None:
            self._plans.move_to_end(key)
        return plan

    def put(self, key: tuple[str, tuple[str, ...]], plan: Plan) -> None:
        """Keep ``plan`` for ``key`` (in place of the one kept before, if any)."""
        old = self._plans.pop(key, None)
        if old is not None:
            self._held -= len(old.entries)
        if len(plan.entries) > self.max_entries // 2:
            return
        self._plans[key] = plan
        self._held += len(plan.entries)
        while self._held > self.max_entries:
            _, dropped = self._plans.popitem(last=False)
            self._held -= len(dropped.entries)


def plan_directory(directory: str, hidden: Sequence[str], previous: Plan | None) -> Plan:
    """List ``directory`` (nothing under ``hidden``) and plan its zip; ``previous`` when
    the listing is the same as its (blocking: run it in a worker thread)."""
    entries = list_entries(directory, hidden)
    if previous is not None and previous.entries == entries:
        return previous
    # Not plan_zip: the listing's names are already safe and unique ignoring case, so
    # its checks would only cost time before the first byte.  (The one rule a listing
    # does not keep, a file named as another's folder ignoring case, ``A`` beside
    # ``a/b`` on a case-sensitive disk, makes a valid zip all the same.)
    layout = ZipLayout(entries)  # the entries are members as they are (no copies)
    newest = max(map(_FIELD["mtime"], entries), default=0)
    return Plan(entries, layout, listing_etag(entries), newest)


def listing_etag(entries: Sequence[LocalEntry]) -> str:
    """A strong, quoted ETag for the zip of ``entries``: SHA-256 over every member's
    name, size and mtime (the zip's bytes) and file version (device, inode, mtime in
    nanoseconds).  Safe names hold no control character, so NUL separates them; the
    numbers go in as arrays of 64-bit integers, a field at a time (gathered in C, with
    no copy of the entries)."""
    digest = hashlib.sha256(b"slipstream directory zip 2\n")
    digest.update("\0".join(map(_FIELD["name"], entries)).encode("utf-8", "surrogatepass"))
    for name, kind in _NUMBERS:
        digest.update(array(kind, map(_FIELD[name], entries)).tobytes())
    return f'"z-{digest.hexdigest()[:32]}"'


_FIELD: Final = {name: itemgetter(i) for i, name in enumerate(LocalEntry._fields)}
_NUMBERS: Final = (("size", "q"), ("mtime", "q"), ("dev", "Q"), ("ino", "Q"), ("mtime_ns", "q"))
