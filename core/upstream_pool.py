"""Idle keep-alive connections to upstreams, per origin, for :mod:`slipstream.upstream`.

A connection is taken back (:meth:`ConnectionPool.release`) only when its response was
read exactly to its end; one that idled past ``keepalive_expiry``, or that the upstream
closed or wrote to meanwhile, is closed instead of reused.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Final

import httpcore
import trio

__all__ = [
    "CLOSE_TIMEOUT",
    "NEAR_RTT_US",
    "Connect",
    "ConnectionPool",
    "UpstreamConnection",
    "size_near_receive_buffer",
]

CLOSE_TIMEOUT: Final = 5.0
"""Seconds a connection's close may take (shielded)."""

Connect = Callable[[str, int, "float | None"], Awaitable[httpcore.AsyncNetworkStream]]
"""``await connect(host, port, timeout)`` -> a stream to a checked address of ``host``."""


NEAR_RTT_US: Final = 1000
"""A connection whose round trip (measured by its handshake) is under this many
microseconds is to a near upstream (this host, or the local network)."""
_TCPI_RTT: Final = 68
"""Offset of ``tcpi_rtt`` (microseconds, u32) in Linux's ``struct tcp_info``."""


def size_near_receive_buffer(sock: trio.socket.SocketType, size: int) -> bool:
    """Set the receive buffer of a connection to a near upstream to ``size`` bytes
    (True), leaving any other to the kernel's autotuning (False; also off Linux).

    Why: Linux sizes a connection's receive buffer by its round trip times its rate,
    so on a near upstream it stays near its first 128 KiB, and the upstream cannot send
    a member that is read after another ahead of time: it sends a little, waits for the
    reader, sends a little more.  On a far upstream, autotuning grows the buffer to the
    path's needs (past any fixed size, where the administrator raised its ceiling), so
    it is left alone there.  The kernel holds at most twice ``size`` per connection, for
    bytes the upstream sent and the reader has not taken yet."""
    info_option = getattr(socket, "TCP_INFO", None)
    if info_option is None:
        return False
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, info_option, 104)
        if len(info) < _TCPI_RTT + 4:
            return False
        (rtt,) = struct.unpack_from("=I", info, _TCPI_RTT)
        if rtt >= NEAR_RTT_US:
            return False
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    except OSError:
        return False
    return True


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
        near_receive_buffer: int | None = None,
    ) -> None:
        self._connect = connect
        self.near_receive_buffer = near_receive_buffer
        """Receive buffer of new connections to near upstreams (see
        :func:`size_near_receive_buffer`); None: the kernel's autotuning for all."""
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
        conn = UpstreamConnection(stream, origin)
        if self.near_receive_buffer is not None:
            size_near_receive_buffer(conn.socket, self.near_receive_buffer)
        return conn, False

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
