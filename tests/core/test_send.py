"""``slipstream.send`` over a real socket pair: what goes out in which write, file
slices by ``sendfile`` in bounded chunks, the send timeout on a peer that stops
reading, a file that shrinks mid-send, a peer that goes away, and cancellation.

Tests that wait for a stalled peer run on trio's autojumping mock clock: nothing can
happen on a socket nobody reads, so the clock may jump straight to the deadline.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import trio
import trio.testing

from slipstream.segments import FileSlice, Literal, Segment, SegmentMap, UpstreamSlice
from slipstream.send import (
    COALESCE_LIMIT,
    SENDFILE_CHUNK,
    SMALL_SLICE,
    BodyTruncated,
    send_all_within,
    send_body,
    send_segments,
)

HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
STALLED = 16 * 1024 * 1024
"""More than any socket buffer holds: a send of this many bytes to a peer that does not
read must wait."""


class Recording:
    """A socket stream whose ``send_all`` calls are recorded; ``sendfile`` reaches the
    real socket (``.socket``) without passing through here."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.socket = stream.socket
        self.sends: list[bytes] = []

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.sends.append(bytes(data))
        await self.stream.send_all(data)


@asynccontextmanager
async def socket_pair() -> AsyncIterator[tuple[Recording, trio.SocketStream]]:
    """A connected pair: the sending end (recorded) and the peer."""
    left, right = trio.socket.socketpair()
    async with trio.SocketStream(left) as sender, trio.SocketStream(right) as peer:
        yield Recording(sender), peer


async def receive_all(peer: trio.SocketStream) -> bytes:
    """Everything the peer receives until the other end closes."""
    data = bytearray()
    while chunk := await peer.receive_some(1 << 20):
        data += chunk
    return bytes(data)


async def send_and_receive(body: Any, *, head: bytes = HEAD) -> tuple[list[bytes], bytes]:
    """Send ``body`` through one socket pair; the recorded writes and what arrived."""
    async with socket_pair() as (sender, peer), trio.open_nursery() as nursery:
        received: list[bytes] = []

        async def read() -> None:
            received.append(await receive_all(peer))

        nursery.start_soon(read)
        await send_body(as_stream(sender), body, head=head)
        await sender.stream.send_eof()
    return sender.sends, received[0]


def as_stream(sender: Recording) -> Any:
    """The recorder where the API wants a ``trio.SocketStream``."""
    return sender


@pytest.fixture
def content(tmp_path: Path) -> bytes:
    """The bytes of ``tmp_path / "file.bin"`` (1 MiB of random bytes)."""
    data = os.urandom(1 << 20)
    (tmp_path / "file.bin").write_bytes(data)
    return data


@pytest.fixture
def opened(tmp_path: Path, content: bytes) -> Iterator[BinaryIO]:
    with (tmp_path / "file.bin").open("rb") as file:
        yield file


# --- what goes out in which write ------------------------------------------------------


async def test_head_literals_and_small_file_slices_leave_in_one_write(
    opened: BinaryIO, content: bytes
) -> None:
    body = SegmentMap([Literal(b"--a\r\n"), FileSlice(opened, 10, 1000), Literal(b"--end")])
    sends, received = await send_and_receive(body)
    expected = HEAD + b"--a\r\n" + content[10:1010] + b"--end"
    assert sends == [expected]
    assert received == expected


async def test_a_slice_over_the_small_size_goes_by_sendfile_between_the_writes(
    opened: BinaryIO, content: bytes
) -> None:
    small = FileSlice(opened, 0, SMALL_SLICE)
    large = FileSlice(opened, 7, SMALL_SLICE + 1)
    body = SegmentMap([Literal(b"<"), small, Literal(b"|"), large, Literal(b">")])
    sends, received = await send_and_receive(body)
    # the pending bytes are flushed before the large slice; its bytes are not written
    # through send_all at all
    assert sends == [HEAD + b"<" + content[:SMALL_SLICE] + b"|", b">"]
    assert received == (
        HEAD + b"<" + content[:SMALL_SLICE] + b"|" + content[7 : 7 + SMALL_SLICE + 1] + b">"
    )


async def test_small_slices_are_flushed_once_they_reach_the_coalesce_limit(
    opened: BinaryIO, content: bytes
) -> None:
    count = COALESCE_LIMIT // SMALL_SLICE + 1
    slices = [FileSlice(opened, n * SMALL_SLICE, SMALL_SLICE) for n in range(count)]
    sends, received = await send_and_receive(SegmentMap(slices), head=b"")
    # COALESCE_LIMIT is a whole number of small slices: one write at the limit, then the rest
    assert [len(s) for s in sends] == [COALESCE_LIMIT, SMALL_SLICE]
    assert received == content[: count * SMALL_SLICE]


async def test_a_bytes_body_and_an_empty_body(opened: BinaryIO) -> None:
    assert await send_and_receive(b"payload") == ([HEAD + b"payload"], HEAD + b"payload")
    assert await send_and_receive(SegmentMap([])) == ([HEAD], HEAD)
    assert await send_and_receive(b"", head=b"") == ([], b"")


async def test_sendfile_goes_in_bounded_chunks_over_exactly_the_slice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = 2 * SENDFILE_CHUNK + 12345
    data = os.urandom(1 << 20) * (size // (1 << 20) + 2)
    (tmp_path / "big.bin").write_bytes(data)
    calls: list[tuple[int, int]] = []
    real_sendfile = os.sendfile

    def sendfile(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        calls.append((offset or 0, count))
        return real_sendfile(out_fd, in_fd, offset, count)

    monkeypatch.setattr(os, "sendfile", sendfile)
    with (tmp_path / "big.bin").open("rb") as file:
        _, received = await send_and_receive(SegmentMap([FileSlice(file, 99, size)]), head=b"")
    assert received == data[99 : 99 + size]
    assert calls and max(count for _, count in calls) <= SENDFILE_CHUNK
    assert calls[0][0] == 99
    assert all(offset < 99 + size for offset, _ in calls)


async def test_send_segments_counts_the_body_and_relays_upstream_slices(
    opened: BinaryIO, content: bytes
) -> None:
    relayed: list[tuple[bytes, UpstreamSlice]] = []
    segments: list[Segment] = [
        Literal(b"[local header]"),
        UpstreamSlice("http://u.example/a", 5, 3),
        FileSlice(opened, 0, 4),
    ]
    async with socket_pair() as (sender, peer), trio.open_nursery() as nursery:
        received: list[bytes] = []

        async def read() -> None:
            received.append(await receive_all(peer))

        async def upstream(stream: trio.SocketStream, piece: UpstreamSlice) -> None:
            relayed.append((b"".join(sender.sends), piece))
            await stream.send_all(b"abc")

        nursery.start_soon(read)
        sent = await send_segments(as_stream(sender), segments, head=HEAD, upstream=upstream)
        await sender.stream.send_eof()
    assert sent == 14 + 3 + 4
    # what came before the upstream slice was flushed before the upstream writer ran
    assert relayed == [(HEAD + b"[local header]", segments[1])]
    assert received[0] == HEAD + b"[local header]abc" + content[:4]


async def test_an_upstream_slice_without_an_upstream_writer_is_a_type_error() -> None:
    async with socket_pair() as (sender, _):
        with pytest.raises(TypeError, match="upstream"):
            await send_segments(as_stream(sender), [UpstreamSlice("http://u.example/", 0, 1)])


@pytest.mark.parametrize("length", [10, SMALL_SLICE + 1])
async def test_a_file_source_without_a_descriptor_is_a_type_error(length: int) -> None:
    async with socket_pair() as (sender, _):
        with pytest.raises(TypeError, match="fileno"):
            await send_segments(as_stream(sender), [FileSlice("/a/path", 0, length)])


# --- a file that shrinks, a peer that goes away ----------------------------------------


async def test_a_small_slice_past_the_end_of_the_file_is_body_truncated(
    opened: BinaryIO, content: bytes
) -> None:
    async with socket_pair() as (sender, _):
        with pytest.raises(BodyTruncated):
            await send_body(
                as_stream(sender), SegmentMap([FileSlice(opened, len(content) - 5, 10)])
            )


async def test_a_file_that_shrinks_mid_send_is_body_truncated(tmp_path: Path) -> None:
    path = tmp_path / "shrinking.bin"
    path.write_bytes(os.urandom(1 << 20) * 16)
    async with socket_pair() as (sender, peer), trio.open_nursery() as nursery:

        async def shrink_then_read() -> None:
            await peer.receive_some(65536)  # the send is under way
            os.truncate(path, 4 << 20)
            await receive_all(peer)

        nursery.start_soon(shrink_then_read)
        with path.open("rb") as file, pytest.raises(BodyTruncated), trio.fail_after(10):
            await send_body(as_stream(sender), SegmentMap([FileSlice(file, 0, 16 << 20)]))
        await sender.stream.aclose()


@pytest.mark.parametrize("kind", ["file", "literal"])
async def test_a_peer_that_closed_is_a_broken_resource(opened: BinaryIO, kind: str) -> None:
    segment: Segment = (
        FileSlice(opened, 0, SMALL_SLICE + 1) if kind == "file" else Literal(b"x" * STALLED)
    )
    async with socket_pair() as (sender, peer):
        await peer.aclose()
        with pytest.raises(trio.BrokenResourceError):
            await send_body(as_stream(sender), SegmentMap([segment]), head=b"")


# --- a peer that stops reading: timeouts and cancellation -------------------------------


def stalled_bodies(tmp_path: Path) -> dict[str, Callable[[], SegmentMap]]:
    path = tmp_path / "stalled.bin"
    path.write_bytes(bytes(STALLED))
    return {
        "sendfile": lambda: SegmentMap([FileSlice(path.open("rb"), 0, STALLED)]),
        "literal": lambda: SegmentMap([Literal(bytes(STALLED))]),
    }


@pytest.mark.parametrize("kind", ["sendfile", "literal"])
async def test_a_peer_that_stops_reading_times_out_after_send_timeout(
    tmp_path: Path, kind: str, autojump_clock: trio.testing.MockClock
) -> None:
    body = stalled_bodies(tmp_path)[kind]()
    async with socket_pair() as (sender, _peer):
        started = trio.current_time()
        with pytest.raises(trio.TooSlowError):
            await send_body(as_stream(sender), body, send_timeout=7.0)
        assert trio.current_time() - started == pytest.approx(7.0)
    close_files(body)


@pytest.mark.parametrize("kind", ["sendfile", "literal"])
async def test_a_cancelled_send_ends_as_cancelled_not_as_a_timeout(
    tmp_path: Path, kind: str, autojump_clock: trio.testing.MockClock
) -> None:
    body = stalled_bodies(tmp_path)[kind]()
    async with socket_pair() as (sender, peer):
        with trio.move_on_after(3.0) as scope:
            await send_body(as_stream(sender), body, send_timeout=30.0)
        assert scope.cancelled_caught
        await sender.stream.aclose()  # what the connection does next
        received = await receive_all(peer)
    assert 0 < len(received) < STALLED  # the reply was cut short, and the peer sees EOF
    close_files(body)


def close_files(body: SegmentMap) -> None:
    for segment in body.segments:
        if isinstance(segment, FileSlice):
            segment.source.close()


@pytest.fixture
def autojump_clock(mock_clock: trio.testing.MockClock) -> trio.testing.MockClock:
    """Trio's mock clock, jumping to the next deadline whenever every task waits."""
    mock_clock.autojump_threshold = 0
    return mock_clock


# -- send_all_within on a real socket stream: the non-blocking write first -----------------


async def test_a_reply_that_fits_goes_out_in_one_write_on_a_socket_stream() -> None:
    async with socket_pair() as (sender, peer):
        await send_all_within(sender.stream, b"x" * 1000, 5.0)
        await send_all_within(sender.stream, bytearray(b"y" * 10), 5.0)
        await send_all_within(sender.stream, b"", 5.0)
        await sender.stream.send_eof()
        assert await receive_all(peer) == b"x" * 1000 + b"y" * 10
    assert sender.sends == []  # the stream's send_all was never needed


async def test_what_one_write_leaves_goes_by_send_all_in_order() -> None:
    data = os.urandom(STALLED)  # more than the buffer holds: the first write is partial
    async with socket_pair() as (sender, peer), trio.open_nursery() as nursery:
        received: list[bytes] = []

        async def read() -> None:
            received.append(await receive_all(peer))

        nursery.start_soon(read)
        await send_all_within(sender.stream, data, 30.0)
        await sender.stream.send_eof()
    assert received[0] == data


async def test_a_closed_peer_is_a_broken_resource_on_the_direct_write() -> None:
    async with socket_pair() as (sender, peer):
        await peer.aclose()
        with pytest.raises(trio.BrokenResourceError):
            for _ in range(3):  # the first write may still be taken by the kernel
                await send_all_within(sender.stream, b"x" * 1000, 5.0)


async def test_a_loop_of_direct_writes_still_checkpoints() -> None:
    async with socket_pair() as (sender, peer), trio.open_nursery() as nursery:
        nursery.start_soon(receive_all, peer)
        with trio.CancelScope() as scope:
            scope.cancel()
            await send_all_within(sender.stream, b"x", 5.0)  # fits: the checkpoint raises
        assert scope.cancelled_caught
        await sender.stream.send_eof()
