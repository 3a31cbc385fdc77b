"""Idle keep-alive connections to upstreams, per origin, for :mod:`slipstream.upstream`.

A connection is taken back (:meth:`ConnectionPool.release`) only when its response was
read exactly to its end; one that idled past ``keepalive_expiry``, or that the upstream
closed or wrote to meanwhile, is closed instead of reused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

import httpcore
import trio

__all__ = ["CLOSE_TIMEOUT", "Connect", "ConnectionPool", "UpstreamConnection"]

CLOSE_TIMEOUT: Final = 5.0
"""Seconds a connection's close may take (shielded)."""

Connect = Callable[[str, int, "float | None"], Awaitable[httpcore.AsyncNetworkStream]]
"""``await connect(host, port, timeout)`` -> a stream to a checked address of ``host``."""


class UpstreamConnection:
    """One connected stream to an origin, and the socket under it."""

    __slots__ = ("idle_since", "origin", "socket", "stream")

    def __init__(self, stream: httpcore.AsyncNetworkStream, origin: tuple[str, int]) -> None:
        self.stream = stream
        self.socket: trio.socket.SocketType = stream.get_extra_info("socket")
        self.origin = origin
        self.idle_since = 0.0

    async def aclose(self) -> None:
        """Close the stream (shielded, bounded)."""
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
            await self.stream.aclose()


class ConnectionPool:
    """Idle keep-alive connections per ``(host, port)``; at most ``max_idle`` each."""

    def __init__(
        self,
        connect: Connect,
        *,
        connect_timeout: float,
        max_idle: int = 8,
        keepalive_expiry: float = 5.0,
    ) -> None:
        self._connect = connect
        self._connect_timeout = connect_timeout
        self.max_idle = max_idle
        self.keepalive_expiry = keepalive_expiry
        self._idle: dict[tuple[str, int], list[UpstreamConnection]] = {}
        self._pruned = 0.0

    async def acquire(self, host: str, port: int) -> tuple[UpstreamConnection, bool]:
        """A connection to ``host:port``: an idle one (True) or a new one (False)."""
        origin = (host, port)
        idle = self._idle.get(origin)
        now = trio.current_time()
        while idle:
            conn = idle.pop()
            if now - conn.idle_since < self.keepalive_expiry and not conn.socket.is_readable():
                return conn, True
            await conn.aclose()  # expired, or the upstream closed it / sent stray bytes
        stream = await self._connect(host, port, self._connect_timeout)
        return UpstreamConnection(stream, origin), False

    async def release(self, conn: UpstreamConnection) -> None:
        """Keep ``conn`` for reuse (or close it when the origin has enough idle ones).

        Connections idle for longer than ``keepalive_expiry``, to any origin, are closed
        here too (at most once per ``keepalive_expiry``), so hosts never asked again do
        not keep sockets open.
        """
        now = trio.current_time()
        if now - self._pruned >= self.keepalive_expiry:
            await self._prune(now)
        idle = self._idle.setdefault(conn.origin, [])
        if len(idle) >= self.max_idle:
            await conn.aclose()
            return
        conn.idle_since = now
        idle.append(conn)

    async def _prune(self, now: float) -> None:
        self._pruned = now
        expired: list[UpstreamConnection] = []
        for origin, conns in list(self._idle.items()):
            kept = [c for c in conns if now - c.idle_since < self.keepalive_expiry]
            expired += [c for c in conns if now - c.idle_since >= self.keepalive_expiry]
            if kept:
                self._idle[origin] = kept
            else:
                del self._idle[origin]
        for conn in expired:
            await conn.aclose()

    def idle_count(self) -> int:
        """Idle connections kept, all origins together."""
        return sum(len(conns) for conns in self._idle.values())

    async def aclose(self) -> None:
        """Close every idle connection."""
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                await conn.aclose()
