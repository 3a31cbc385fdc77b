"""Requests sent ahead: a plain upstream ``GET`` written now, its answer's head read later.

A zip reply with a send thread (:mod:`slipstream.zip.threadsend`) writes the requests of its
next members while the thread relays the current one, and reads each answer's head when
that member's turn comes, all in the reply's own task: a member then costs the event
loop one request and one head, not a task, a generator and two context managers.

Only the common case is taken here: a request the bytes template writes
(:func:`~slipstream.upstream_request.request_head`) and an answer the fast head parser
reads (HTTP/1.1, a body framed by ``Content-Length``).  Anything else, and any failure
(a connection refused or closed meanwhile, a slow upstream, a malformed head), declines:
the connection is closed and the caller reads that member the general way
(:meth:`slipstream.fetch.Fetcher.stream`), which retries, follows redirects, lets h11
judge odd heads and reports errors with their keys.  So nothing here raises an
``Exception``.  The connections come from the fetcher's pool, opened by its guarded
connector for a URL the fetcher checked.
"""

from __future__ import annotations

import os

import trio

from .upstream import Exchange, read_fast_head
from .upstream_pool import ConnectionPool, UpstreamConnection

__all__ = ["SentRequest", "send_request"]


class SentRequest:
    """A request written on a pooled connection; :meth:`answer` reads its head (once),
    or :meth:`aclose` gives the connection up."""

    __slots__ = ("_conn", "_pool", "_timeout", "url")

    def __init__(
        self, pool: ConnectionPool, conn: UpstreamConnection, url: str, read_timeout: float
    ) -> None:
        self._pool = pool
        self._conn: UpstreamConnection | None = conn
        self._timeout = read_timeout
        self.url = url
        """The URL the request was sent for."""

    async def answer(self) -> Exchange | None:
        """The answer, head read (its body left for the :class:`Exchange`), or None when
        it is not a plain one or did not come within the read timeout (the connection is
        then closed)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return None
        received = bytearray()
        head = None
        with trio.move_on_after(self._timeout):
            try:
                head, _ended = await read_fast_head(conn.socket, received)
            except OSError:
                head = None
        if head is None:
            await conn.aclose()
            return None
        return Exchange.from_head(self._pool, conn, head, received, self._timeout)

    async def aclose(self) -> None:
        """Close the connection, unless :meth:`answer` took it."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.aclose()


async def send_request(
    pool: ConnectionPool, host: str, port: int, data: bytes, url: str, read_timeout: float
) -> SentRequest | None:
    """Write the request ``data`` on a connection to ``host:port`` from ``pool`` (a new
    one if none is idle), within ``read_timeout``; None when that fails."""
    try:
        with trio.move_on_after(read_timeout):
            conn, _reused = await pool.acquire(host, port)
            try:
                sock = conn.socket
                try:  # (a request fits an idle connection's send buffer: no wait)
                    view = memoryview(data)[os.write(sock.fileno(), data) :]
                except BlockingIOError:
                    view = memoryview(data)
                while view:
                    view = view[await sock.send(view) :]
            except BaseException:
                await conn.aclose()
                raise
            return SentRequest(pool, conn, url, read_timeout)
    except Exception:  # refused, unreachable, reset: the general path reports it
        return None
    # The move_on_after expired: the connection (if any) was closed above.
    return None
