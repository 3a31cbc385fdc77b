"""Members a send thread fetches itself: request, answer and relay without the event loop.

A zip reply of plain ``http://`` members that honour Range (``ZipSource.sends_ahead``)
hands each member to its send thread (:mod:`.sendthread`) with a :class:`PlainFetch`:
the request's bytes (written by :meth:`slipstream.fetch.Fetcher.plan_request`, for a URL
the fetcher checked) and what the answer must be.  The thread then does all of that
member's work: it keeps the requests of the next members written ahead
(:data:`REQUESTS_AHEAD`) on keep-alive connections, reads the member's answer head,
checks it with :func:`~slipstream.zip.remote.plain_answer`, and relays the body with its
CRC-32 in the same call as the header and the descriptor.  Measured on 1,000 members of
1 MiB, this is what the event loop's part per member (a request, a head, a hand-over
through the Trio token) cost: the thread waited for the loop between members.

Anything unusual declines, and the member is read the general way (through its lane, see
:class:`~slipstream.zip.sendthread.Lane`), which retries, follows redirects and reports
the error with its key: a connection that cannot be had or written, an answer that is
late, malformed, chunked, not exactly the range asked, or longer than announced.

Connections: :class:`ThreadUpstreams` holds the reply's.  One the thread has read to the
end of its answer, on keep-alive, is used again for a later member of the same origin
(after a ``poll`` that finds nothing unread on it); a new one is asked of the fetcher's
pool in the event loop (``trio.from_thread.run``), through its guarded connector.  When
the thread has ended, the idle ones go back to the pool and the others are closed.
"""

from __future__ import annotations

import os
import select
import time
from collections import deque
from collections.abc import Callable
from typing import Final

import trio

from slipstream.ext import NEED_MORE, RELAY_DONE, RELAY_READ_TIMEOUT, ResponseHead
from slipstream.ext import parse_response_head as parse_head
from slipstream.upstream import FAST_FIELDS, HEAD_READ, MAX_HEAD, keep_alive
from slipstream.upstream_pool import ConnectionPool, UpstreamConnection
from slipstream.upstream_request import PlannedRequest

from .remote import RemoteObject, plain_answer
from .threadio import wait_ready, write_all

__all__ = ["MAX_IDLE", "REQUESTS_AHEAD", "PlainFetch", "ThreadUpstreams"]

REQUESTS_AHEAD: Final = 8
"""Requests a send thread keeps written (the member it is sending included), each on a
connection of its own: the next answers are on their way while one member is relayed.
Measured: 200 members of 256 KiB behind a 20 ms first byte took 0.95 s with 8, 1.49 s
with 4; 1,000 members of 1 MiB from a near upstream, the same either way."""
MAX_IDLE: Final = 8
"""Idle connections a send thread keeps per origin (more are closed when it ends)."""

_NEW, _SENT, _FAILED, _ANSWERED = range(4)


class PlainFetch:
    """One member as its send thread fetches it: ``request`` for bytes ``[offset,
    offset + length)`` of ``obj``.  The thread's state of it is private."""

    __slots__ = ("_conn", "_keep", "_state", "length", "obj", "offset", "request")

    def __init__(
        self, request: PlannedRequest, obj: RemoteObject, offset: int, length: int
    ) -> None:
        self.request = request
        self.obj = obj
        self.offset = offset
        self.length = length
        self._conn: UpstreamConnection | None = None
        self._keep = False
        self._state = _NEW

    @property
    def sent(self) -> bool:
        """Whether the request was written, or writing it failed (either way, its turn
        only reads the outcome)."""
        return self._state != _NEW


class ThreadUpstreams:
    """The upstream connections of one send thread (see the module docstring).

    :meth:`send`, :meth:`answer` and :meth:`done` are called by the thread; :meth:`aclose`
    by the event loop once the thread has ended."""

    def __init__(self, pool: ConnectionPool, stop_fd: int, before_wait: Callable[[], None]) -> None:
        self._pool = pool
        self._stop = stop_fd
        self._before_wait = before_wait
        """Called before the thread waits for the loop or the upstream."""
        self._idle: dict[tuple[str, int], list[UpstreamConnection]] = {}
        self._held: set[UpstreamConnection] = set()
        """Every connection taken and not dropped, idle or not."""
        self._dropped: deque[UpstreamConnection] = deque()
        """Connections the thread will not use again, for the loop to close."""
        self.outstanding = 0
        """Requests written whose answers were not read yet."""

    # -- the thread's side ----------------------------------------------------------------

    def send(self, fetch: PlainFetch) -> None:
        """Write ``fetch``'s request on a connection to its origin (a failure is kept
        in ``fetch`` and seen at :meth:`answer`)."""
        request = fetch.request
        conn = self._connection((request.host, request.port))
        if conn is None:
            fetch._state = _FAILED
            return
        status = write_all(conn.socket.fileno(), request.data, self._stop, request.read_timeout)
        if status != RELAY_DONE:
            fetch._state = _FAILED
            return
        fetch._conn, fetch._state = conn, _SENT
        self.outstanding += 1

    def answer(self, fetch: PlainFetch) -> tuple[int, memoryview] | None:
        """Read the answer's head (sending the request first if it was not) and check
        it: the connection's descriptor and the body bytes that came with the head, or
        None when it is not exactly the member's range (the connection is then never
        used again)."""
        if not fetch.sent:
            self.send(fetch)
        conn = fetch._conn
        if conn is None:
            return None
        fetch._state = _ANSWERED
        self.outstanding -= 1
        fd = conn.socket.fileno()
        received = bytearray()
        head = self._read_head(fd, received, fetch.request.read_timeout)
        if (
            head is None
            or head.content_length != fetch.length
            or not plain_answer(head.status, head.headers, fetch.obj, fetch.offset, fetch.length)
            or len(received) - head.end > fetch.length  # more than announced
        ):
            self.drop(fetch)
            return None
        fetch._keep = keep_alive(head.headers)
        return fd, memoryview(received)[head.end :]

    def done(self, fetch: PlainFetch) -> None:
        """``fetch``'s body was read to its end: its connection may serve another member
        (on keep-alive)."""
        conn, fetch._conn = fetch._conn, None
        if conn is not None:
            if fetch._keep:
                self._idle.setdefault(conn.origin, []).append(conn)
            else:
                self._drop(conn)

    def drop(self, fetch: PlainFetch) -> None:
        """``fetch``'s connection will not be used again (its answer was declined, or
        stopped short): the loop closes it (:meth:`close_dropped`)."""
        conn, fetch._conn = fetch._conn, None
        if conn is not None:
            self._drop(conn)

    def _drop(self, conn: UpstreamConnection) -> None:
        self._held.discard(conn)
        self._dropped.append(conn)

    def _connection(self, origin: tuple[str, int]) -> UpstreamConnection | None:
        """An idle connection to ``origin`` with nothing unread on it, else a new one
        from the pool (through the event loop); None when none can be had."""
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            poller = select.poll()
            poller.register(conn.socket.fileno(), select.POLLIN)
            if not poller.poll(0):
                return conn
            self._drop(conn)  # readable: closed by the upstream, or stray bytes
        self._before_wait()
        try:
            conn, _reused = trio.from_thread.run(self._pool.acquire, *origin)
        except BaseException:  # refused, unreachable, the reply cancelled: declined
            return None
        self._held.add(conn)
        return conn

    def _read_head(self, fd: int, received: bytearray, timeout: float) -> ResponseHead | None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                chunk = os.read(fd, HEAD_READ)
            except BlockingIOError:
                self._before_wait()
                left = deadline - time.monotonic()
                if (
                    wait_ready(fd, select.POLLIN, self._stop, left, RELAY_READ_TIMEOUT)
                    != RELAY_DONE
                ):
                    return None
                continue
            except OSError:
                return None
            if not chunk:
                return None
            received += chunk
            head = parse_head(received, 0, MAX_HEAD, FAST_FIELDS)
            if isinstance(head, ResponseHead):
                return head
            if head != NEED_MORE:
                return None

    # -- the event loop's side ------------------------------------------------------------

    @property
    def open_count(self) -> int:
        """Connections taken and not closed yet."""
        return len(self._held) + len(self._dropped)

    async def close_dropped(self) -> None:
        """Close the connections the thread dropped so far (while it runs: a reply whose
        members are all declined holds no more than :data:`REQUESTS_AHEAD` open)."""
        while self._dropped:
            await self._dropped.popleft().aclose()

    async def aclose(self) -> None:
        """Give the idle connections back to the pool and close the others (once the
        thread has ended; shielded by the caller)."""
        idle = {id(conn) for conns in self._idle.values() for conn in conns[:MAX_IDLE]}
        held, self._held, self._idle = self._held, set(), {}
        await self.close_dropped()
        for conn in held:
            if id(conn) in idle:
                await self._pool.release(conn)
            else:
                await conn.aclose()
