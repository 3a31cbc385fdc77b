"""Blocking socket moves of a send thread (:mod:`.sendthread`), on the event loop's
non-blocking sockets: each wait is a ``poll`` on the socket and on the thread's stop
descriptor, within a timeout, and each returns a ``RELAY_*`` status, never raises for
what happens on the wire.  No Trio here: these run on the worker thread.
"""

from __future__ import annotations

import os
import select

from slipstream.ext import (
    RELAY_DONE,
    RELAY_ENDED,
    RELAY_READ_ERROR,
    RELAY_READ_TIMEOUT,
    RELAY_SEND_ERROR,
    RELAY_SEND_TIMEOUT,
    RELAY_STOPPED,
    Relayed,
)
from slipstream.upstream import SPLICE_CHUNK, SPLICE_FLAGS, splice_pipe

__all__ = ["splice_all", "wait_ready", "write_all"]


def _millis(seconds: float) -> int:
    """``seconds`` as a ``poll`` timeout: whole milliseconds, within a C int."""
    return max(0, min(int(seconds * 1000.0 + 0.5), 2**31 - 1))


def wait_ready(fd: int, events: int, stop: int, timeout: float, timed_out: int) -> int:
    """Wait until ``fd`` is ready for ``events``: RELAY_DONE; RELAY_STOPPED when
    ``stop`` becomes readable first; ``timed_out`` after ``timeout`` seconds."""
    poller = select.poll()
    poller.register(fd, events)
    poller.register(stop, select.POLLIN)
    ready = poller.poll(_millis(timeout))
    if not ready:
        return timed_out
    if any(ready_fd == stop for ready_fd, _ in ready):
        return RELAY_STOPPED
    return RELAY_DONE


def write_all(fd: int, data: bytes | bytearray | memoryview, stop: int, timeout: float) -> int:
    """Send all of ``data`` to the socket ``fd`` (each wait within ``timeout``):
    RELAY_DONE or why it stopped."""
    view = memoryview(data)
    while view:
        try:
            # os.write on a socket is send(2) without flags; Python ignores SIGPIPE.
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            status = wait_ready(fd, select.POLLOUT, stop, timeout, RELAY_SEND_TIMEOUT)
            if status != RELAY_DONE:
                return status
        except OSError:
            return RELAY_SEND_ERROR
    return RELAY_DONE


def splice_all(
    source: int, dest: int, count: int, stop: int, read_timeout: float, send_timeout: float
) -> Relayed:
    """Move ``count`` bytes from the socket ``source`` to the socket ``dest`` with
    ``splice`` (socket -> pipe -> socket); as :func:`~slipstream.ext.relay` reports it
    (no CRC)."""
    received = sent = 0
    read_end, write_end = splice_pipe()
    try:
        while received < count:
            try:
                moved = os.splice(
                    source, write_end, min(count - received, SPLICE_CHUNK), flags=SPLICE_FLAGS
                )
            except BlockingIOError:
                status = wait_ready(source, select.POLLIN, stop, read_timeout, RELAY_READ_TIMEOUT)
                if status != RELAY_DONE:
                    return Relayed(received, sent, 0, status, 0)
                continue
            except OSError as exc:
                return Relayed(received, sent, 0, RELAY_READ_ERROR, exc.errno or 0)
            if not moved:
                return Relayed(received, sent, 0, RELAY_ENDED, 0)
            received += moved
            while moved:
                try:
                    out = os.splice(read_end, dest, moved, flags=SPLICE_FLAGS)
                except BlockingIOError:
                    status = wait_ready(
                        dest, select.POLLOUT, stop, send_timeout, RELAY_SEND_TIMEOUT
                    )
                    if status != RELAY_DONE:
                        return Relayed(received, sent, 0, status, 0)
                    continue
                except OSError as exc:
                    return Relayed(received, sent, 0, RELAY_SEND_ERROR, exc.errno or 0)
                moved -= out
                sent += out
    finally:
        os.close(read_end)
        os.close(write_end)
    return Relayed(received, sent, 0, RELAY_DONE, 0)
