# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Relaying a socket's bytes to another socket with their CRC-32, compiled twin of
``_relay_py`` (same API and results; see it for the contract).

The whole loop (``recv``, the CRC-32 with the folding kernel of ``csrc/crc.c``, ``send``,
and ``poll`` where a socket would block) runs without the GIL, so the thread that runs
it costs the event loop's thread nothing while a member's bytes move.
"""

from collections import namedtuple

from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from libc.errno cimport EAGAIN, EINTR, EIO, errno
from libc.stdint cimport uint64_t

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


include "_crc.pxi"


cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents

    int poll(pollfd *fds, unsigned long nfds, int timeout)
    short POLLIN
    short POLLOUT


cdef extern from "<sys/socket.h>" nogil:
    ssize_t recv(int fd, void *buf, size_t n, int flags)
    ssize_t send(int fd, const void *buf, size_t n, int flags)
    int MSG_NOSIGNAL
    int MSG_DONTWAIT


cdef enum:
    _DONE = 0
    _ENDED = 1
    _READ_ERROR = 2
    _READ_TIMEOUT = 3
    _SEND_ERROR = 4
    _SEND_TIMEOUT = 5
    _STOPPED = 6
    _MISMATCH = 7

RELAY_DONE = _DONE
RELAY_ENDED = _ENDED
RELAY_READ_ERROR = _READ_ERROR
RELAY_READ_TIMEOUT = _READ_TIMEOUT
RELAY_SEND_ERROR = _SEND_ERROR
RELAY_SEND_TIMEOUT = _SEND_TIMEOUT
RELAY_STOPPED = _STOPPED
RELAY_MISMATCH = _MISMATCH

Relayed = namedtuple("Relayed", ["received", "sent", "crc32", "status", "error"])
Relayed.__doc__ = "How far a :func:`relay` got (see ``_relay_py.Relayed``)."

cdef slip_crc_model _crc32
cdef uint64_t _MASK32 = 0xFFFFFFFF
slip_crc_model_init(&_crc32, 32, 0xEDB88320, 0xFFFFFFFF, 0xFFFFFFFF)


cdef int _wait(int fd, short events, int stop, int timeout_ms, int timed_out) noexcept nogil:
    """``_DONE`` when ``fd`` is ready (or failed), ``_STOPPED`` when ``stop`` is readable,
    ``timed_out`` after ``timeout_ms``; a failing poll counts as ready (the next call
    reports the error)."""
    cdef pollfd fds[2]
    cdef int ready
    fds[0].fd = fd
    fds[0].events = events
    fds[0].revents = 0
    fds[1].fd = stop
    fds[1].events = POLLIN
    fds[1].revents = 0
    while True:
        ready = poll(fds, 2, timeout_ms)
        if ready < 0:
            if errno == EINTR:
                continue
            return _DONE
        if ready == 0:
            return timed_out
        if fds[1].revents:
            return _STOPPED
        return _DONE


cdef int _millis(double seconds):
    if seconds <= 0:
        return 0
    if seconds >= 2147483.0:
        return 2147483647
    return <int> (seconds * 1000.0 + 0.5)


cdef int _send_all(int dest, const unsigned char *p, size_t n, int stop, int send_ms,
                   int *error, long long *sent) noexcept nogil:
    """Send all ``n`` bytes at ``p``, adding to ``sent`` what went: ``_DONE`` or why it
    stopped (``error`` set to the errno of a failed send)."""
    cdef ssize_t wrote
    cdef int status
    while n:
        wrote = send(dest, p, n, MSG_NOSIGNAL | MSG_DONTWAIT)
        if wrote < 0:
            if errno == EAGAIN:  # EWOULDBLOCK is EAGAIN on Linux
                status = _wait(dest, POLLOUT, stop, send_ms, _SEND_TIMEOUT)
                if status != _DONE:
                    return status
                continue
            if errno == EINTR:
                continue
            error[0] = errno if errno else EIO
            return _SEND_ERROR
        p += wrote
        n -= <size_t> wrote
        sent[0] += wrote
    return _DONE


def relay(int source, int dest, buffer, long long count, initial, double read_timeout,
          double send_timeout, int stop, head=b"", trailer=None, int crc_at=-1,
          long long expected=-1):
    """Move up to ``count`` bytes from socket ``source`` to socket ``dest`` through
    ``buffer`` (writable, any size above 0), with their CRC-32 continuing ``initial``;
    ``head`` before them, ``trailer`` (with the CRC-32 at ``crc_at``) after them.

    See ``_relay_py``; blocking, for a worker thread; the GIL is released throughout.
    """
    cdef Py_buffer buf
    cdef Py_buffer head_buf
    cdef Py_buffer tail_buf
    cdef bint have_tail = False
    cdef unsigned char *p
    cdef unsigned char *tail
    cdef size_t size
    cdef long long received = 0
    cdef long long sent = 0
    cdef long long extra = 0  # head and trailer bytes sent (not counted in the result)
    cdef uint64_t reg
    cdef uint64_t final
    cdef ssize_t got
    cdef size_t want
    cdef int status = _DONE
    cdef int error = 0
    cdef int read_ms = _millis(read_timeout)
    cdef int send_ms = _millis(send_timeout)
    if count < 0:
        raise ValueError("count must be >= 0")
    value = int(initial)
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError("initial must be a CRC-32 (0..2**32-1)")
    if not -1 <= expected <= 0xFFFFFFFF:
        raise ValueError("expected must be a CRC-32 (0..2**32-1) or -1")
    reg = <uint64_t> value ^ 0xFFFFFFFF
    try:
        PyObject_GetBuffer(buffer, &buf, PyBUF_WRITABLE)
    except BufferError as exc:
        raise ValueError("buffer must be writable and not empty") from exc
    try:
        if buf.len <= 0:
            raise ValueError("buffer must be writable and not empty")
        PyObject_GetBuffer(head, &head_buf, PyBUF_SIMPLE)
        try:
            if trailer is not None:
                try:
                    PyObject_GetBuffer(
                        trailer, &tail_buf, PyBUF_WRITABLE if crc_at != -1 else PyBUF_SIMPLE
                    )
                except BufferError as exc:
                    raise ValueError(
                        "crc_at must be -1 or leave 4 bytes in a writable trailer"
                    ) from exc
                have_tail = True
            if crc_at != -1 and (not have_tail or crc_at < 0 or crc_at > tail_buf.len - 4):
                raise ValueError("crc_at must be -1 or leave 4 bytes in a writable trailer")
            p = <unsigned char *> buf.buf
            size = <size_t> buf.len
            with nogil:
                status = _send_all(dest, <const unsigned char *> head_buf.buf,
                                   <size_t> head_buf.len, stop, send_ms, &error, &extra)
                while status == _DONE and received < count:
                    want = size
                    if <long long> want > count - received:
                        want = <size_t> (count - received)
                    got = recv(source, p, want, MSG_DONTWAIT)
                    if got < 0:
                        if errno == EAGAIN:  # EWOULDBLOCK is EAGAIN on Linux
                            status = _wait(source, POLLIN, stop, read_ms, _READ_TIMEOUT)
                            if status != _DONE:
                                break
                            continue
                        if errno == EINTR:
                            continue
                        status = _READ_ERROR
                        error = errno if errno else EIO
                        break
                    if got == 0:
                        status = _ENDED
                        break
                    received += got
                    reg = slip_crc_update(&_crc32, reg, p, <size_t> got)
                    status = _send_all(dest, p, <size_t> got, stop, send_ms, &error, &sent)
                if status == _DONE:
                    final = reg ^ _MASK32
                    if expected != -1 and <long long> final != expected:
                        status = _MISMATCH
                    elif have_tail:
                        tail = <unsigned char *> tail_buf.buf
                        if crc_at != -1:
                            tail[crc_at] = <unsigned char> (final & 0xFF)
                            tail[crc_at + 1] = <unsigned char> ((final >> 8) & 0xFF)
                            tail[crc_at + 2] = <unsigned char> ((final >> 16) & 0xFF)
                            tail[crc_at + 3] = <unsigned char> ((final >> 24) & 0xFF)
                        status = _send_all(dest, <const unsigned char *> tail_buf.buf,
                                           <size_t> tail_buf.len, stop, send_ms, &error,
                                           &extra)
        finally:
            if have_tail:
                PyBuffer_Release(&tail_buf)
            PyBuffer_Release(&head_buf)
    finally:
        PyBuffer_Release(&buf)
    return Relayed(received, sent, reg ^ 0xFFFFFFFF, status, error)
