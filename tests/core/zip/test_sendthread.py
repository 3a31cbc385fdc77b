"""``slipstream.zip.sendthread`` without a server: a reply's send thread over real socket
pairs (the client's, and an upstream's), in the order and with the failures the zip body
relies on."""

from __future__ import annotations

import socket
import zlib
from collections.abc import AsyncIterator

import pytest
import trio

from slipstream.ext import RELAY_DONE, RELAY_ENDED
from slipstream.zip.sendthread import (
    SEND_THREADS,
    CrcMismatch,
    SendStopped,
    SendThread,
    acquire_send_thread,
    release_send_thread,
)

DESCRIPTOR = b"PK\x07\x08" + bytes(4) + b"sizes..."
"""A descriptor template: the CRC-32 goes at offset 4."""


def with_crc(value: int) -> bytes:
    return DESCRIPTOR[:4] + value.to_bytes(4, "little") + DESCRIPTOR[8:]


class Wire:
    """The client's socket pair (the thread writes ``ours``) and an upstream's (the test
    writes ``upstream``, the thread relays from ``source``)."""

    def __init__(self) -> None:
        ours, self.client = socket.socketpair()
        self.ours = trio.socket.from_stdlib_socket(ours)
        self.upstream, source = socket.socketpair()
        source.setblocking(False)
        self.source = source

    def received(self) -> bytes:
        """Everything the client got, up to the thread's end (``ours`` closed)."""
        self.ours.close()
        data = bytearray()
        while chunk := self.client.recv(1 << 16):
            data += chunk
        return bytes(data)

    def close(self) -> None:
        for sock in (self.client, self.upstream, self.source):
            sock.close()
        self.ours.close()


@pytest.fixture
async def wire() -> AsyncIterator[Wire]:
    w = Wire()
    try:
        yield w
    finally:
        w.close()


async def test_members_go_out_in_order_with_their_descriptors(wire: Wire) -> None:
    body = b"relayed member bytes" * 1000
    wire.upstream.sendall(body[100:])
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            sender = SendThread(wire.ours, 5.0)
            nursery.start_soon(sender.run)
            sender.send(b"<header 0>")
            first = sender.member(5, DESCRIPTOR, 4, (0, len(DESCRIPTOR)))
            first.send_soon(b"small")
            sender.send(b"<header 1>")
            second = sender.member(len(body), DESCRIPTOR, 4, (0, len(DESCRIPTOR)))
            sent_first, moved = await second.relay(
                wire.source.fileno(), memoryview(body[:100]), len(body) - 100, 5.0
            )
            assert sent_first == 100 and moved.status == RELAY_DONE
            assert await first.ended.wait() == zlib.crc32(b"small")
            assert await second.ended.wait() == zlib.crc32(body)
            sender.send(b"<central>")
            sender.close()
            await sender.ended.wait()
        assert sender.failure is None
    expected = b"<header 0>small" + with_crc(zlib.crc32(b"small"))
    expected += b"<header 1>" + body + with_crc(zlib.crc32(body)) + b"<central>"
    assert wire.received() == expected


async def test_a_descriptor_cut_by_the_range_is_sent_in_part(wire: Wire) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            sender = SendThread(wire.ours, 5.0)
            nursery.start_soon(sender.run)
            lane = sender.member(4, DESCRIPTOR, 4, (2, 5))
            lane.send_soon(b"data")
            await lane.ended.wait()
            await sender.drained()
            sender.close()
    assert wire.received() == b"data" + with_crc(zlib.crc32(b"data"))[2:7]


@pytest.mark.parametrize("relayed", [False, True])
async def test_bytes_with_another_crc_get_no_descriptor_and_end_the_thread(
    wire: Wire, relayed: bool
) -> None:
    wire.upstream.sendall(b"tampered")
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            sender = SendThread(wire.ours, 5.0)
            nursery.start_soon(sender.run)
            lane = sender.member(8, DESCRIPTOR, 4, (0, len(DESCRIPTOR)), zlib.crc32(b"original"))
            if relayed:
                _, moved = await lane.relay(wire.source.fileno(), memoryview(b""), 8, 5.0)
                assert moved.status == RELAY_DONE  # every byte moved: not an upstream failure
            else:
                lane.send_soon(b"tampered")
            with pytest.raises(CrcMismatch):
                await lane.ended.wait()
            sender.send(b"never sent")
            await sender.ended.wait()
    assert wire.received() == b"tampered"


async def test_an_upstream_that_stops_short_is_retried_through_the_same_lane(wire: Wire) -> None:
    body = b"0123456789" * 100
    wire.upstream.sendall(body[:300])
    wire.upstream.shutdown(socket.SHUT_WR)
    retry_up, retry_source = socket.socketpair()
    retry_source.setblocking(False)
    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                sender = SendThread(wire.ours, 5.0)
                nursery.start_soon(sender.run)
                lane = sender.member(len(body), DESCRIPTOR, 4, (0, len(DESCRIPTOR)))
                sender.send(b"<next>")  # queued behind the member: waits for its end
                _, moved = await lane.relay(wire.source.fileno(), memoryview(b""), len(body), 5)
                assert (moved.received, moved.status) == (300, RELAY_ENDED)
                retry_up.sendall(body[300:])
                _, moved = await lane.relay(retry_source.fileno(), memoryview(b""), 700, 5.0)
                assert moved.status == RELAY_DONE
                assert await lane.ended.wait() == zlib.crc32(body)
                sender.close()
        assert wire.received() == body + with_crc(zlib.crc32(body)) + b"<next>"
    finally:
        retry_up.close()
        retry_source.close()


async def test_an_aborted_member_ends_the_thread_after_what_came_before(wire: Wire) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            sender = SendThread(wire.ours, 5.0)
            nursery.start_soon(sender.run)
            whole = sender.member(3)
            whole.send_soon(b"one")
            sender.send(b"<header>")
            cut = sender.member(100)
            cut.send_soon(b"part")
            cut.abort()
            sender.send(b"never sent")
            await sender.ended.wait()
    assert sender.failure is None
    assert wire.received() == b"one<header>part"


async def test_stop_ends_a_relay_waiting_for_its_upstream(wire: Wire) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            sender = SendThread(wire.ours, 5.0)
            nursery.start_soon(sender.run)
            lane = sender.member(10)

            async def relay() -> None:
                with pytest.raises(SendStopped):
                    await lane.relay(wire.source.fileno(), memoryview(b""), 10, 60.0)

            nursery.start_soon(relay)
            await trio.sleep(0.05)
            sender.stop()
            await sender.ended.wait()
        with pytest.raises(SendStopped):  # once ended, nothing more is taken
            await sender.member(1).ended.wait()


async def test_cancelling_the_run_stops_the_thread_and_waits_for_it(wire: Wire) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            sender = SendThread(wire.ours, 5.0)
            nursery.start_soon(sender.run)
            lane = sender.member(10)
            nursery.start_soon(lane.relay, wire.source.fileno(), memoryview(b""), 10, 60.0)
            await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
        assert sender.ended.is_set()


async def test_a_client_gone_fails_what_waits_with_a_broken_socket(wire: Wire) -> None:
    wire.client.close()
    wire.upstream.sendall(b"x" * 100_000)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            sender = SendThread(wire.ours, 5.0)
            nursery.start_soon(sender.run)
            lane = sender.member(100_000)
            with pytest.raises(trio.BrokenResourceError):
                await lane.relay(wire.source.fileno(), memoryview(b""), 100_000, 5.0)
            with pytest.raises(trio.BrokenResourceError):
                await lane.ended.wait()
            await sender.ended.wait()
    assert isinstance(sender.failure, trio.BrokenResourceError)


async def test_the_places_for_send_threads_are_bounded_per_run() -> None:
    taken = 0
    while acquire_send_thread():
        taken += 1
    assert taken == SEND_THREADS
    release_send_thread()
    assert acquire_send_thread()
    for _ in range(SEND_THREADS):
        release_send_thread()
