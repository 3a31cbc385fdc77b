"""Every checksum of a file, computed once per file version and kept in SQLite.

A package of five modules, each with one job, and their public names here:

* :mod:`slipstream.digests.values`: the values, a file version :class:`FileKey`
  ``(dev, ino, size, mtime_ns)``, its :class:`Digests` and :class:`FileChanged`;
* :mod:`slipstream.digests.hashing`: :func:`hash_fd` reads a file once, into a few reused
  buffers, and feeds every algorithm of :data:`slipstream.ext.ALGORITHMS` from them (the
  reading overlapping the hashing, :meth:`slipstream.ext.MultiDigest.update_from_fd`);
* :mod:`slipstream.digests.store`: an in-memory LRU in front of a small SQLite table
  (WAL mode) in the state directory;
* :mod:`slipstream.digests.cache`: :class:`DigestCache`, which answers from the store or
  hashes in a bounded worker pool, one computation per file version however many ask,
  and warms the cache in the background;
* :mod:`slipstream.digests.opened`: :func:`opened_file_digests`, the digests of an opened
  file with an explicit policy (:class:`OnChange`) for a file that changes while it is
  hashed.

The names below are imported on first use, so importing a sans-IO module of this
package (``values``, ``hashing``, ``store``) never imports Trio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slipstream.lazyexports import lazy_exports

if TYPE_CHECKING:
    from .cache import DigestCache
    from .hashing import CHUNK_SIZE, Hasher, hash_fd, hash_path
    from .opened import RETRY_ATTEMPTS, HashableFile, OnChange, opened_file_digests
    from .values import CRC_WIDTHS, Digests, FileChanged, FileKey

__all__ = [
    "CHUNK_SIZE",
    "CRC_WIDTHS",
    "RETRY_ATTEMPTS",
    "DigestCache",
    "Digests",
    "FileChanged",
    "FileKey",
    "HashableFile",
    "Hasher",
    "OnChange",
    "hash_fd",
    "hash_path",
    "opened_file_digests",
]

_SOURCES = {
    "CHUNK_SIZE": "hashing",
    "CRC_WIDTHS": "values",
    "DigestCache": "cache",
    "Digests": "values",
    "FileChanged": "values",
    "FileKey": "values",
    "HashableFile": "opened",
    "Hasher": "hashing",
    "OnChange": "opened",
    "RETRY_ATTEMPTS": "opened",
    "hash_fd": "hashing",
    "hash_path": "hashing",
    "opened_file_digests": "opened",
}


__getattr__ = lazy_exports(__name__, _SOURCES)
