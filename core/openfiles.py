"""An open-file cache: descriptors of recently served files, kept open and shared.

A small file served many times a second costs more in ``open``/``fstat``/``close`` and
the path checks around them than in sending its bytes.  :class:`OpenFileCache` keeps the
descriptor of each file :class:`~slipstream.storage.LocalStorage` opened on its plain path
(no symlink as the last component), and hands it to the next request for the same path
after revalidating it:

- ``lstat(path)`` must still name the same ``(dev, ino)`` as the descriptor: a file
  replaced (rename over it, delete and re-create) or a path that became a symlink is never
  served from the old descriptor; the path is opened afresh, with every check;
- ``fstat(descriptor)`` gives the size, mtime and mode *now*: a file rewritten in place is
  served with its new length and ETag, and one that lost its read bits is refused.

So a cached descriptor is never stale: the check runs on every use, and costs two
syscalls instead of four plus the path checks.  The inode it names was checked to be
inside the storage base when it was opened.

Descriptors are shared: every reply holds a reference (:class:`SharedFile`), and the
descriptor closes when it has left the cache *and* its last reply is done.  All reads of
a descriptor give their offset (``pread``, ``sendfile`` with an offset), so sharing one is
safe.  An entry unused for ``inactive`` seconds is closed by :meth:`OpenFileCache.sweep`
(so a deleted file's blocks are freed soon after its last reply); at most ``max_entries``
are kept, least recently used out first.  Synchronous and thread-confined: use it from
the thread that created it (the server's event loop).
"""

from __future__ import annotations

import os
import stat as stat_mod
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["OpenFileCache", "SharedFile"]


class SharedFile:
    """A descriptor shared by the cache and the replies using it (reference-counted)."""

    __slots__ = ("dev", "fd", "ino", "kept", "last_used", "users")

    def __init__(self, fd: int, dev: int, ino: int, now: float) -> None:
        self.fd = fd
        self.dev = dev
        self.ino = ino
        self.users = 0
        """Replies holding the descriptor now."""
        self.kept = True
        """Still in the cache (the cache's own reference)."""
        self.last_used = now

    def acquire(self) -> int:
        """Take a reference for one reply; returns the descriptor."""
        self.users += 1
        return self.fd

    def release(self) -> None:
        """Drop a reply's reference; the descriptor closes once nothing holds it."""
        self.users -= 1
        self._close_if_unused()

    def drop(self) -> None:
        """Drop the cache's reference (the entry has left the cache)."""
        self.kept = False
        self._close_if_unused()

    def _close_if_unused(self) -> None:
        if self.users <= 0 and not self.kept and self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


class OpenFileCache:
    """Up to ``max_entries`` open descriptors by absolute path, revalidated on every use.

    ``max_entries`` 0 keeps nothing (every :meth:`keep` is refused).  ``clock`` is
    monotonic seconds (tests pass a fake one).
    """

    def __init__(
        self,
        max_entries: int = 256,
        *,
        inactive: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 0 or inactive <= 0:
            raise ValueError("max_entries must be >= 0 and inactive > 0")
        self.max_entries = max_entries
        self.inactive = inactive
        self._clock = clock
        self._entries: OrderedDict[str, SharedFile] = OrderedDict()
        self._closed = False
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._closed

    def reuse(self, path: str) -> tuple[SharedFile, os.stat_result] | None:
        """The kept descriptor of ``path`` and its ``fstat`` now, or None (not kept, or
        no longer the file the path names: then it is dropped).  The caller owns one
        reference (release it with :meth:`SharedFile.release`)."""
        shared = self._entries.get(path)
        if shared is None:
            self.misses += 1
            return None
        try:
            named = os.lstat(path)
            st = os.fstat(shared.fd)
        except OSError:
            self._discard(path)
            self.misses += 1
            return None
        if (
            named.st_ino != shared.ino
            or named.st_dev != shared.dev
            or not stat_mod.S_ISREG(st.st_mode)
            or st.st_mode & 0o444 == 0
        ):
            self._discard(path)
            self.misses += 1
            return None
        self.hits += 1
        shared.last_used = self._clock()
        self._entries.move_to_end(path)
        shared.acquire()
        return shared, st

    def keep(self, path: str, fd: int, st: os.stat_result) -> SharedFile | None:
        """Take ``fd`` (a checked regular file opened at ``path``, with its ``fstat``)
        into the cache, with one reference for the caller; None when the cache keeps
        nothing (the caller still owns ``fd``)."""
        if self._closed or self.max_entries == 0:
            return None
        self._discard(path)
        now = self._clock()
        shared = SharedFile(fd, st.st_dev, st.st_ino, now)
        shared.acquire()
        self._entries[path] = shared
        while len(self._entries) > self.max_entries:
            _, oldest = self._entries.popitem(last=False)
            oldest.drop()
        self._sweep(now)
        return shared

    def sweep(self) -> int:
        """Close the entries unused for ``inactive`` seconds; returns how many left."""
        return self._sweep(self._clock())

    def close(self) -> None:
        """Drop every entry (descriptors in use close when their replies end); later
        :meth:`keep` calls keep nothing."""
        self._closed = True
        entries, self._entries = self._entries, OrderedDict()
        for shared in entries.values():
            shared.drop()

    def _sweep(self, now: float) -> int:
        expired = now - self.inactive
        dropped = 0
        entries = self._entries
        while entries:
            path, oldest = next(iter(entries.items()))
            if oldest.last_used > expired:
                break
            del entries[path]
            oldest.drop()
            dropped += 1
        return dropped

    def _discard(self, path: str) -> None:
        shared = self._entries.pop(path, None)
        if shared is not None:
            shared.drop()
