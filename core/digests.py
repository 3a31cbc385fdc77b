"""Every checksum of a file, computed once per file version and kept in SQLite.

The public face of four modules, each with one job:

* :mod:`slipstream.digesttypes`: the values, a file version :class:`FileKey`
  ``(dev, ino, size, mtime_ns)``, its :class:`Digests` and :class:`FileChanged`;
* :mod:`slipstream.hashing`: :func:`hash_fd` reads a file once, into one reused buffer,
  and feeds every algorithm of :data:`slipstream.ext.ALGORITHMS` from it;
* :mod:`slipstream.digeststore`: an in-memory LRU in front of a small SQLite table
  (WAL mode) in the state directory;
* :mod:`slipstream.digestcache`: :class:`DigestCache`, which answers from the store or
  hashes in a bounded worker pool, one computation per file version however many ask,
  and warms the cache in the background.
"""

from __future__ import annotations

from .digestcache import DigestCache
from .digesttypes import CRC_WIDTHS, Digests, FileChanged, FileKey
from .hashing import CHUNK_SIZE, Hasher, hash_fd, hash_path

__all__ = [
    "CHUNK_SIZE",
    "CRC_WIDTHS",
    "DigestCache",
    "Digests",
    "FileChanged",
    "FileKey",
    "Hasher",
    "hash_fd",
    "hash_path",
]
