"""Per-client packet rate limiting for the websocket protocol (sans-IO: time is passed in).

A client (an IP address) may send at most ``limit`` packets in any ``window`` seconds
(an exact sliding window over the times of its recent packets).  The packet that goes
over is refused and blocks the client for ``block`` seconds; while blocked, every
packet and every new connection from it is refused with the seconds left.

Memory is bounded: a client's log holds at most ``limit`` timestamps, and clients
whose packets have all left the window (and that are not blocked) are forgotten on
a periodic sweep, or at once when more than ``max_clients`` are tracked.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Blocked", "Limiter", "RateLimiter"]


@dataclass(frozen=True, slots=True)
class Blocked:
    """A refusal: ``new`` is True for the packet that triggered the block."""

    seconds_left: float
    new: bool

    @property
    def whole_seconds(self) -> int:
        """Seconds left rounded up (at least 1), as shown to clients."""
        return max(1, math.ceil(self.seconds_left))


class Limiter(Protocol):
    """What the websocket layer asks of a rate limiter (this module's, or the one
    workers share: :class:`~.ws_shared_limits.SharedRateLimiter`)."""

    def blocked(self, key: str, now: float) -> Blocked | None:
        """The block on ``key``, or None; counts nothing (new connections)."""

    def hit(self, key: str, now: float) -> Blocked | None:
        """Count one packet from ``key``; None if allowed, else why it is refused."""


class RateLimiter:
    """Sliding-window packet counter with a temporary block per key.

    ``limit <= 0`` disables limiting (every packet is allowed, nobody is blocked).
    """

    def __init__(
        self,
        limit: int,
        window: float,
        block: float,
        *,
        max_clients: int = 100_000,
        sweep_every: int = 4096,
    ) -> None:
        self.limit = limit
        self.window = window
        self.block = block
        self.max_clients = max_clients
        self._sweep_every = sweep_every
        self._hits: dict[str, deque[float]] = {}
        self._blocked: dict[str, float] = {}
        self._since_sweep = 0

    def blocked(self, key: str, now: float) -> Blocked | None:
        """The block on ``key`` (``new=False``), or None; counts nothing (new connections)."""
        until = self._blocked.get(key)
        if until is None:
            return None
        if now >= until:
            del self._blocked[key]
            return None
        return Blocked(until - now, new=False)

    def hit(self, key: str, now: float) -> Blocked | None:
        """Count one packet from ``key``; None if allowed, else why it is refused."""
        if self.limit <= 0:
            return None
        current = self.blocked(key, now)
        if current is not None:
            return current
        self._since_sweep += 1
        if self._since_sweep >= self._sweep_every or len(self._hits) > self.max_clients:
            self.sweep(now)
        log = self._hits.get(key)
        if log is None:
            log = self._hits[key] = deque(maxlen=self.limit)
        horizon = now - self.window
        while log and log[0] <= horizon:
            log.popleft()
        if len(log) >= self.limit:
            del self._hits[key]
            self._blocked[key] = now + self.block
            return Blocked(self.block, new=True)
        log.append(now)
        return None

    def sweep(self, now: float) -> None:
        """Forget clients with nothing left in the window and blocks that expired."""
        self._since_sweep = 0
        horizon = now - self.window
        self._hits = {k: log for k, log in self._hits.items() if log and log[-1] > horizon}
        self._blocked = {k: until for k, until in self._blocked.items() if until > now}
        excess = len(self._hits) - self.max_clients
        if excess > 0:  # still too many live clients: drop the oldest-tracked ones
            for key in list(self._hits)[:excess]:
                del self._hits[key]

    def __len__(self) -> int:
        """How many clients are tracked (logs and blocks)."""
        return len(self._hits) + len(self._blocked)
