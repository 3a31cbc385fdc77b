"""The websocket rate limit across worker processes (``slipstream serve --workers N``).

Every worker counts an IP's packets in one table in shared memory: a ``memfd`` made by
the supervisor before it forks the workers, mapped ``MAP_SHARED`` by each, and locked
with ``flock`` for each update (released by the kernel if a worker dies holding it;
about 2 us a packet).  A single process keeps :class:`~.ws_limits.RateLimiter`.

The table cannot hold ``limit`` timestamps per IP, so it counts with a *sliding-window
counter* (as rate limiters of CDNs do): the packets of the current fixed window plus
those of the previous one weighted by how much of it the sliding window still covers.
Within the first window, and whenever traffic is steady, this equals the exact count;
after a burst it can be off by the previous window's share, never by more.  The packet
that takes the count to ``limit`` or over is refused and blocks the IP for ``block``
seconds, in every worker.

The table has a fixed number of records (``slots``; 32 bytes each) found by the IP's
hash and linear probing over :data:`PROBES` records; an IP whose probe run is full
takes the record with the oldest window (an idle IP is forgotten first; an IP blocked
right now only when every record of its run is blocked too).  Times are
``CLOCK_MONOTONIC`` seconds (``time.monotonic``), the same in every process.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import mmap
import os
import struct
from typing import Final

from .ws_limits import Blocked

__all__ = ["PROBES", "SharedRateLimiter", "create_table"]

_RECORD: Final = struct.Struct("<QdIId")
"""key hash (0: free), window start, previous window's count, this window's count,
blocked until."""
PROBES: Final = 16
DEFAULT_SLOTS: Final = 65_536
"""Records in the table (2 MiB): IPs tracked at once before the idlest are forgotten."""


def create_table(slots: int = DEFAULT_SLOTS) -> int:
    """A new zeroed table in shared memory for ``slots`` IPs: its file descriptor
    (inherited by forked workers; close-on-exec)."""
    fd = os.memfd_create("slipstream-ws-rates", os.MFD_CLOEXEC)
    os.ftruncate(fd, slots * _RECORD.size)
    return fd


class SharedRateLimiter:
    """:class:`~.ws_limits.RateLimiter`'s interface over the shared table ``fd``."""

    def __init__(self, fd: int, limit: int, window: float, block: float) -> None:
        self.limit = limit
        self.window = window
        self.block = block
        self._fd = fd
        size = os.fstat(fd).st_size
        self._slots = size // _RECORD.size
        self._map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)

    def blocked(self, key: str, now: float) -> Blocked | None:
        """The block on ``key`` (``new=False``), or None; counts nothing."""
        if self.limit <= 0:
            return None
        code = _code(key)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            found = self._find(code, now, claim=False)
            if found is None:
                return None
            _, _, _, _, until = _RECORD.unpack_from(self._map, found)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        return Blocked(until - now, new=False) if until > now else None

    def hit(self, key: str, now: float) -> Blocked | None:
        """Count one packet from ``key`` in every worker's count; None if allowed."""
        if self.limit <= 0:
            return None
        code = _code(key)
        window = self.window
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            offset = self._find(code, now, claim=True)
            assert offset is not None
            _, start, previous, current, until = _RECORD.unpack_from(self._map, offset)
            if until > now:
                return Blocked(until - now, new=False)
            if now >= start + window:  # roll the fixed windows forward
                passed = math.floor((now - start) / window)
                previous = current if passed == 1 else 0
                current = 0
                start += passed * window
            covered = 1.0 - (now - start) / window
            if previous * covered + current >= self.limit:
                _RECORD.pack_into(self._map, offset, code, start, 0, 0, now + self.block)
                return Blocked(self.block, new=True)
            _RECORD.pack_into(self._map, offset, code, start, previous, current + 1, until)
            return None
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _find(self, code: int, now: float, *, claim: bool) -> int | None:
        """The offset of ``code``'s record; with ``claim``, a free, stale or the oldest
        record of its probe run is taken over (and reset) when it has none."""
        first = code % self._slots
        spare: int | None = None
        spare_rank = (3, math.inf)
        for probe in range(PROBES):
            offset = ((first + probe) % self._slots) * _RECORD.size
            owner, start, _, _, until = _RECORD.unpack_from(self._map, offset)
            if owner == code:
                return offset
            if not claim:
                continue
            # Taken over first: a free or stale record, then the idlest counting one;
            # a running block only when every record of the run holds one.
            if owner == 0 or (until <= now and start + 2 * self.window <= now):
                rank = (0, -math.inf)
            else:
                rank = (2 if until > now else 1, start)
            if rank < spare_rank:
                spare, spare_rank = offset, rank
        if spare is None:
            return None
        _RECORD.pack_into(self._map, spare, code, now, 0, 0, 0.0)
        return spare

    def close(self) -> None:
        """Unmap the table (the descriptor belongs to whoever made it)."""
        self._map.close()


def _code(key: str) -> int:
    """A 64-bit hash of ``key``, never 0, the same in every process."""
    value = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
    return value or 1
