"""``relay``: both twins move a socket's bytes to another socket with their CRC-32, stop
where the contract says, and agree on every result."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import threading
import zlib
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.twins import load_twin

pytestmark = pytest.mark.twins
"""Each twin is loaded by name, whatever twin the environment selected: run once, in the
first pass of ``make pytest`` (see the README, "The compiled extension and its twins")."""


@pytest.fixture
def rl(twin_kind: str) -> ModuleType:
    """The ``relay`` twin of this parametrisation."""
    return load_twin("relay", twin_kind)


class Pipe:
    """Two socket pairs, as a relay sees them: it reads ``source`` and writes ``dest``;
    the test writes ``upstream`` and reads ``client``.  The relay's ends are
    non-blocking, as the event loop's sockets are."""

    def __init__(self) -> None:
        self.upstream, self.source = socket.socketpair()
        self.dest, self.client = socket.socketpair()
        self.source.setblocking(False)
        self.dest.setblocking(False)
        self.stop_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)

    def close(self) -> None:
        for sock in (self.upstream, self.source, self.dest, self.client):
            sock.close()
        os.close(self.stop_fd)

    def run(self, rl: ModuleType, count: int, *, buffer: int = 65536, **kw: Any) -> Any:
        """Relay ``count`` bytes with default timeouts (overridable); other keywords
        (``head``, ``trailer``, ``crc_at``, ``expected``) are passed on."""
        args = {"initial": 0, "read_timeout": 5.0, "send_timeout": 5.0, **kw}
        return rl.relay(
            self.source.fileno(),
            self.dest.fileno(),
            bytearray(buffer),
            count,
            args.pop("initial"),
            args.pop("read_timeout"),
            args.pop("send_timeout"),
            self.stop_fd,
            **args,
        )


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    p = Pipe()
    try:
        yield p
    finally:
        p.close()


def drain(sock: socket.socket, into: bytearray) -> threading.Thread:
    """Read ``sock`` to its end in a thread (the relay's sends must not fill it up)."""

    def read() -> None:
        while chunk := sock.recv(1 << 20):
            into.extend(chunk)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def test_it_moves_exactly_count_bytes_with_their_crc(rl: ModuleType, pipe: Pipe) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    pipe.upstream.sendall(data[:1000])  # some bytes are there before the relay starts
    feeder = threading.Thread(target=pipe.upstream.sendall, args=(data[1000:] + b"next",))
    got = bytearray()
    feeder.start()
    reader = drain(pipe.client, got)
    done = pipe.run(rl, len(data), buffer=100_000, initial=0)
    feeder.join()
    pipe.dest.close()  # pipe.close() closes it again: harmless
    reader.join(5)
    assert done == (len(data), len(data), zlib.crc32(data), rl.RELAY_DONE, 0)
    assert bytes(got) == data
    assert pipe.source.recv(16) == b"next"  # nothing past count was taken


def test_the_crc_continues_initial_and_zero_bytes_do_nothing(rl: ModuleType, pipe: Pipe) -> None:
    pipe.upstream.sendall(b"world")
    done = pipe.run(rl, 5, initial=zlib.crc32(b"hello "))
    assert done.crc32 == zlib.crc32(b"hello world")
    assert pipe.client.recv(16) == b"world"
    assert pipe.run(rl, 0, initial=123) == (0, 0, 123, rl.RELAY_DONE, 0)


def test_a_source_that_ends_early_stops_the_relay(rl: ModuleType, pipe: Pipe) -> None:
    pipe.upstream.sendall(b"abc")
    pipe.upstream.shutdown(socket.SHUT_WR)
    done = pipe.run(rl, 10)
    assert done == (3, 3, zlib.crc32(b"abc"), rl.RELAY_ENDED, 0)
    assert pipe.client.recv(16) == b"abc"


def test_a_silent_source_times_out(rl: ModuleType, pipe: Pipe) -> None:
    pipe.upstream.sendall(b"x")
    done = pipe.run(rl, 2, read_timeout=0.05)
    assert done == (1, 1, zlib.crc32(b"x"), rl.RELAY_READ_TIMEOUT, 0)


def test_a_client_gone_is_a_send_error(rl: ModuleType, pipe: Pipe) -> None:
    pipe.client.close()
    pipe.upstream.sendall(b"data")
    done = pipe.run(rl, 4)
    assert done.received == 4 and done.sent == 0
    assert done.status == rl.RELAY_SEND_ERROR
    assert done.error in (errno.EPIPE, errno.ECONNRESET)


def test_a_client_that_reads_nothing_times_out(rl: ModuleType, pipe: Pipe) -> None:
    big = os.urandom(8 * 1024 * 1024)  # more than both socket buffers hold

    def feed() -> None:
        with contextlib.suppress(OSError):  # the upstream is shut down once the test is done
            pipe.upstream.sendall(big)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    done = pipe.run(rl, len(big), send_timeout=0.1)
    assert done.status == rl.RELAY_SEND_TIMEOUT
    assert 0 < done.sent < done.received <= len(big)
    pipe.upstream.shutdown(socket.SHUT_RDWR)
    feeder.join(5)


def test_the_stop_descriptor_ends_a_wait_at_once(rl: ModuleType, pipe: Pipe) -> None:
    timer = threading.Timer(0.05, os.eventfd_write, args=(pipe.stop_fd, 1))
    timer.start()
    done = pipe.run(rl, 10, read_timeout=1e12)  # past a C int of milliseconds: capped
    timer.join()
    assert done == (0, 0, 0, rl.RELAY_STOPPED, 0)


def test_a_head_goes_before_and_a_trailer_with_the_crc_after(rl: ModuleType, pipe: Pipe) -> None:
    pipe.upstream.sendall(b"member data")
    trailer = bytearray(b"PK\x07\x08" + bytes(4) + b"sizes")
    done = pipe.run(rl, 11, head=b"header:", trailer=trailer, crc_at=4)
    value = zlib.crc32(b"member data")
    assert done == (11, 11, value, rl.RELAY_DONE, 0)  # head and trailer are not counted
    assert trailer == b"PK\x07\x08" + value.to_bytes(4, "little") + b"sizes"
    expected = b"header:member data" + bytes(trailer)
    assert pipe.client.recv(100) == expected


def test_a_trailer_without_crc_at_is_sent_as_it_is(rl: ModuleType, pipe: Pipe) -> None:
    pipe.upstream.sendall(b"ab")
    done = pipe.run(rl, 2, trailer=b"end", expected=zlib.crc32(b"ab"))
    assert done.status == rl.RELAY_DONE
    assert pipe.client.recv(16) == b"abend"


def test_bytes_with_another_crc_than_expected_get_no_trailer(rl: ModuleType, pipe: Pipe) -> None:
    pipe.upstream.sendall(b"changed")
    trailer = bytearray(8)
    done = pipe.run(rl, 7, head=b"h", trailer=trailer, crc_at=0, expected=zlib.crc32(b"original"))
    assert done == (7, 7, zlib.crc32(b"changed"), rl.RELAY_MISMATCH, 0)
    assert trailer == bytes(8), "not written"
    pipe.dest.close()
    assert pipe.client.recv(100) == b"hchanged"


def test_a_source_that_ends_early_gets_no_trailer(rl: ModuleType, pipe: Pipe) -> None:
    pipe.upstream.sendall(b"abc")
    pipe.upstream.shutdown(socket.SHUT_WR)
    done = pipe.run(rl, 5, head=b"<", trailer=b">")
    assert done.status == rl.RELAY_ENDED
    pipe.dest.close()
    assert pipe.client.recv(100) == b"<abc"


def test_a_client_gone_before_the_head_is_a_send_error(rl: ModuleType, pipe: Pipe) -> None:
    pipe.client.close()
    done = pipe.run(rl, 4, head=b"header")
    assert done[:4] == (0, 0, 0, rl.RELAY_SEND_ERROR)
    assert done.error in (errno.EPIPE, errno.ECONNRESET)


@pytest.mark.parametrize(
    ("trailer", "crc_at", "expected"),
    [
        (None, 0, -1),
        (bytes(8), 0, -1),
        (bytearray(3), 0, -1),
        (bytearray(8), 5, -1),
        (bytearray(8), -2, -1),
        (None, -1, -2),
        (None, -1, 1 << 32),
    ],
)
def test_bad_trailer_arguments_are_refused(
    rl: ModuleType, pipe: Pipe, trailer: Any, crc_at: int, expected: int
) -> None:
    with pytest.raises(ValueError):
        pipe.run(rl, 0, trailer=trailer, crc_at=crc_at, expected=expected)


@pytest.mark.parametrize(
    ("buffer", "count", "initial"),
    [(bytes(16), 1, 0), (bytearray(), 1, 0), (bytearray(16), -1, 0), (bytearray(16), 1, 1 << 32)],
)
def test_bad_arguments_are_refused(
    rl: ModuleType, pipe: Pipe, buffer: Any, count: int, initial: int
) -> None:
    with pytest.raises(ValueError):
        rl.relay(pipe.source.fileno(), pipe.dest.fileno(), buffer, count, initial, 1, 1, 0)


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(min_size=0, max_size=40_000),
    buffer=st.integers(1, 9000),
    initial=st.integers(0, 0xFFFFFFFF),
    extra=st.integers(0, 3),
    head=st.binary(max_size=100),
    trailer=st.none() | st.binary(min_size=4, max_size=30),
    crc_at=st.integers(0, 26),
    check=st.sampled_from(["none", "right", "wrong"]),
)
def test_the_twins_agree(
    data: bytes,
    buffer: int,
    initial: int,
    extra: int,
    head: bytes,
    trailer: bytes | None,
    crc_at: int,
    check: str,
) -> None:
    value = zlib.crc32(data, initial)
    expected = {"none": -1, "right": value, "wrong": value ^ 1}[check]
    at = min(crc_at, len(trailer) - 4) if trailer is not None else -1
    results = []
    for kind in ("c", "py"):
        rl = load_twin("relay", kind)
        pipe = Pipe()
        tail = bytearray(trailer) if trailer is not None else None
        try:
            pipe.upstream.sendall(data)
            pipe.upstream.shutdown(socket.SHUT_WR)
            done = pipe.run(
                rl,
                len(data) + extra,
                buffer=buffer,
                initial=initial,
                head=head,
                trailer=tail,
                crc_at=at,
                expected=expected,
            )
            pipe.dest.shutdown(socket.SHUT_WR)
            out = bytearray()
            while chunk := pipe.client.recv(1 << 16):
                out += chunk
        finally:
            pipe.close()
        results.append((tuple(done), bytes(out)))
    assert results[0] == results[1]
    py = load_twin("relay", "py")
    if extra:
        status, sent_after = py.RELAY_ENDED, b""
    elif check == "wrong":
        status, sent_after = py.RELAY_MISMATCH, b""
    else:
        status = py.RELAY_DONE
        sent_after = trailer or b""
        if trailer is not None:
            sent_after = trailer[:at] + value.to_bytes(4, "little") + trailer[at + 4 :]
    assert results[0] == ((len(data), len(data), value, status, 0), head + data + sent_after)
