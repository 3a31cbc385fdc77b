"""Relaying a socket's bytes to another socket with their CRC-32, pure-Python reference
twin (the spec for ``_relay_c``).

:func:`relay` is a blocking loop meant to run on a worker thread: it receives up to
``count`` bytes from ``source`` into ``buffer``, updates the CRC-32 over them and sends
them to ``dest``, chunk after chunk, every received chunk sent before the next is
received.  Both descriptors are non-blocking sockets (the event loop's): where one would
block, the loop waits with ``poll`` on it and on ``stop``, within ``read_timeout`` (for
``source``) or ``send_timeout`` (for ``dest``) seconds per wait.  ``stop`` is a
descriptor (an eventfd or a pipe's read end) that the owner makes readable to end the
relay at once: the owner's task was cancelled.

A ``head`` can go before the relayed bytes and a ``trailer`` after them, with their
CRC-32 written into it and checked first against an ``expected`` value: a zip member's
local header, data and data descriptor in one call, so a thread relaying many members
takes the GIL once per member rather than once per write.

It never raises for what happens on the wire; it returns a :class:`Relayed` saying how
far it got and why it stopped (one of the ``RELAY_*`` codes).  The compiled twin runs
the whole loop without the GIL; this one holds it between system calls.
"""

from __future__ import annotations

import errno
import os
import select
import zlib
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = [
    "RELAY_DONE",
    "RELAY_ENDED",
    "RELAY_MISMATCH",
    "RELAY_READ_ERROR",
    "RELAY_READ_TIMEOUT",
    "RELAY_SEND_ERROR",
    "RELAY_SEND_TIMEOUT",
    "RELAY_STOPPED",
    "Relayed",
    "relay",
]

RELAY_DONE = 0
"""All ``count`` bytes were moved."""
RELAY_ENDED = 1
"""``source`` reached its end (the peer closed) first."""
RELAY_READ_ERROR = 2
"""Receiving from ``source`` failed (``error`` is the errno)."""
RELAY_READ_TIMEOUT = 3
"""Nothing arrived from ``source`` within ``read_timeout``."""
RELAY_SEND_ERROR = 4
"""Sending to ``dest`` failed (``error`` is the errno)."""
RELAY_SEND_TIMEOUT = 5
"""``dest`` took nothing within ``send_timeout``."""
RELAY_STOPPED = 6
"""``stop`` became readable."""
RELAY_MISMATCH = 7
"""All ``count`` bytes were moved, but their CRC-32 is not ``expected``: the trailer was
not sent."""


class Relayed(NamedTuple):
    """How far a :func:`relay` got."""

    received: int
    """Bytes received from ``source``."""
    sent: int
    """Bytes sent to ``dest`` (equal to ``received`` unless sending stopped it)."""
    crc32: int
    """CRC-32 of ``initial``'s data followed by every byte received."""
    status: int
    """Why it stopped: one of the ``RELAY_*`` codes."""
    error: int
    """The errno of a failed receive or send, else 0."""


def _millis(seconds: float) -> int:
    """``seconds`` as a ``poll`` timeout: whole milliseconds, rounded, within a C int."""
    if seconds <= 0:
        return 0
    if seconds >= 2147483.0:
        return 2147483647
    return int(seconds * 1000.0 + 0.5)


def _wait(fd: int, events: int, stop: int, timeout_ms: int, timed_out: int) -> int | None:
    """Wait until ``fd`` is ready for ``events`` (or fails): None; ``RELAY_STOPPED`` when
    ``stop`` is readable first; ``timed_out`` after ``timeout_ms`` with neither."""
    poller = select.poll()
    poller.register(fd, events)
    poller.register(stop, select.POLLIN)
    ready = poller.poll(timeout_ms)  # PEP 475: retried on EINTR
    if not ready:
        return timed_out
    if any(ready_fd == stop for ready_fd, _ in ready):
        return RELAY_STOPPED
    return None


def relay(
    source: int,
    dest: int,
    buffer: Buffer,
    count: int,
    initial: int,
    read_timeout: float,
    send_timeout: float,
    stop: int,
    head: Buffer = b"",
    trailer: Buffer | None = None,
    crc_at: int = -1,
    expected: int = -1,
) -> Relayed:
    """Move up to ``count`` bytes from socket ``source`` to socket ``dest`` through
    ``buffer`` (writable, any size above 0), with their CRC-32 continuing ``initial``.

    ``head`` is sent before them (not counted, not in the CRC).  Once all ``count`` are
    sent, the CRC-32 is checked against ``expected`` (unless it is -1:
    ``RELAY_MISMATCH``), then written little-endian at ``crc_at`` into ``trailer`` (a
    writable buffer; unless ``crc_at`` is -1) and ``trailer`` is sent (not counted).

    See the module docstring; blocking, for a worker thread.
    """
    view = memoryview(buffer).cast("B")
    if view.readonly or not len(view):
        raise ValueError("buffer must be writable and not empty")
    if count < 0:
        raise ValueError("count must be >= 0")
    if not 0 <= initial <= 0xFFFFFFFF:
        raise ValueError("initial must be a CRC-32 (0..2**32-1)")
    if not -1 <= expected <= 0xFFFFFFFF:
        raise ValueError("expected must be a CRC-32 (0..2**32-1) or -1")
    tail = memoryview(trailer).cast("B") if trailer is not None else None
    if crc_at != -1 and (tail is None or tail.readonly or not 0 <= crc_at <= len(tail) - 4):
        raise ValueError("crc_at must be -1 or leave 4 bytes in a writable trailer")
    read_ms, send_ms = _millis(read_timeout), _millis(send_timeout)
    received = sent = 0
    value = initial
    stopped, _ = _send(dest, memoryview(head).cast("B"), stop, send_ms)
    if stopped is not None:
        return Relayed(0, 0, value, *stopped)
    while received < count:
        want = min(len(view), count - received)
        try:
            got = os.readv(source, [view[:want]])
        except BlockingIOError:
            waited = _wait(source, select.POLLIN, stop, read_ms, RELAY_READ_TIMEOUT)
            if waited is not None:
                return Relayed(received, sent, value, waited, 0)
            continue
        except OSError as exc:
            return Relayed(received, sent, value, RELAY_READ_ERROR, exc.errno or errno.EIO)
        if not got:
            return Relayed(received, sent, value, RELAY_ENDED, 0)
        received += got
        value = zlib.crc32(view[:got], value)
        stopped, moved = _send(dest, view[:got], stop, send_ms)
        sent += moved
        if stopped is not None:
            return Relayed(received, sent, value, *stopped)
    if expected != -1 and value != expected:
        return Relayed(received, sent, value, RELAY_MISMATCH, 0)
    if tail is not None:
        if crc_at != -1:
            tail[crc_at : crc_at + 4] = value.to_bytes(4, "little")
        stopped, _ = _send(dest, tail, stop, send_ms)
        if stopped is not None:
            return Relayed(received, sent, value, *stopped)
    return Relayed(received, sent, value, RELAY_DONE, 0)


def _send(
    dest: int, data: memoryview, stop: int, send_ms: int
) -> tuple[tuple[int, int] | None, int]:
    """Send all of ``data``: (None, or (status, errno) of what stopped it; bytes sent)."""
    sent = 0
    while sent < len(data):
        try:
            # os.write on a socket is send(2) without flags; Python ignores SIGPIPE, so a
            # closed peer is EPIPE here.
            sent += os.write(dest, data[sent:])
        except BlockingIOError:
            waited = _wait(dest, select.POLLOUT, stop, send_ms, RELAY_SEND_TIMEOUT)
            if waited is not None:
                return (waited, 0), sent
        except OSError as exc:
            return (RELAY_SEND_ERROR, exc.errno or errno.EIO), sent
    return None, sent
