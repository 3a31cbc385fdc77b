"""``slipstream.zip.stream`` without a server: :class:`ZipBody` replies of members on the
loopback upstream, sent through a real socket pair, against the reference layout.

The body reads members ahead (several upstream reads open at once, answering at different
speeds, in chunks of different sizes); what it sends must still be the pieces of the
layout one after the other (:func:`tests.helpers.zip_layout.full_zip`), for any range,
sent by a send thread and by the event loop alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import slipstream.zip.stream
from slipstream.fetch import Fetcher
from slipstream.netpolicy import NetworkPolicy, Target
from slipstream.send import send_body
from slipstream.zip.plan import ZipMember, plan_zip
from slipstream.zip.remote import probe_all
from slipstream.zip.stream import ZipBody, ZipSource
from tests.helpers.upstream import Blob, Upstream
from tests.helpers.zip import member_bytes
from tests.helpers.zip_layout import full_zip

OPEN = NetworkPolicy(allow_private_networks=True)


def anything(target: Target) -> None:
    """An allow list that allows every URI."""


@pytest.fixture(autouse=True)
def _send_thread_back() -> Iterator[None]:
    """Whatever a test sets ``SEND_THREAD`` to, it is set back after it."""
    before = slipstream.zip.stream.SEND_THREAD
    yield
    slipstream.zip.stream.SEND_THREAD = before


async def sent(body: ZipBody) -> bytes:
    """Every byte ``body`` sends when opened and written as the server does (then closed)."""
    left, right = trio.socket.socketpair()
    ours, theirs = trio.SocketStream(left), trio.SocketStream(right)
    received = bytearray()

    async def drain() -> None:
        while data := await theirs.receive_some(1 << 16):
            received.extend(data)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        try:
            await body.open()
            await send_body(ours, body)
        finally:
            await body.aclose()
            await ours.aclose()
    await theirs.aclose()
    return bytes(received)


member = st.tuples(
    st.integers(0, 40) | st.integers(0, 300_000),  # size
    st.sampled_from([0.0, 0.0, 0.004, 0.012]),  # first-byte delay: answers out of order
    st.booleans() | st.just(True),  # whether the upstream honours Range
)


@pytest.mark.parametrize("threaded", [True, False], ids=["send-thread", "event-loop"])
@settings(max_examples=30, deadline=None)
@given(
    members=st.lists(member, min_size=1, max_size=9),
    chunk=st.sampled_from([1000, 16_384, 65_536]),
    data=st.data(),
)
async def test_a_body_reading_ahead_is_the_reference_layout_byte_for_byte(
    members: list[tuple[int, float, bool]], chunk: int, data: st.DataObject, threaded: bool
) -> None:
    slipstream.zip.stream.SEND_THREAD = threaded  # (set back by the fixture below)
    contents = [member_bytes(n, size) for n, (size, _, _) in enumerate(members)]
    async with Fetcher(OPEN) as fetcher, trio.open_nursery() as background:
        upstream = Upstream()  # its own, in this example's nursery (not a fixture's)
        await background.start(upstream.run)
        uris = [
            upstream.add(f"/m{n}", Blob(content, chunk=chunk, delay_head=delay, ranges=ranged))
            for n, (content, (_, delay, ranged)) in enumerate(zip(contents, members, strict=True))
        ]
        objects = await probe_all(fetcher, uris, [], anything)
        layout = plan_zip([ZipMember(f"m{n}", o.size, o.mtime) for n, o in enumerate(objects)])
        expected = full_zip(layout, contents)
        start = data.draw(st.integers(0, layout.total), label="start")
        stop = data.draw(st.integers(start, layout.total), label="stop")
        source = ZipSource(layout, objects, fetcher, (), anything)
        assert await sent(source.body(start, stop, background)) == expected[start:stop]
        assert source.failure is None and not source.unavailable
        background.cancel_scope.cancel()


async def test_cancelling_a_threaded_reply_closes_every_member_it_handed_or_requested(
    upstream: Upstream, tmp_path: Path
) -> None:
    slipstream.zip.stream.SEND_THREAD = True  # (set back by the fixture above)
    big = tmp_path / "big.bin"
    with big.open("wb") as sparse:
        sparse.truncate(32 * 1024 * 1024)  # more than the socket buffers hold
    stuck = trio.Event()  # the second member's upstream stops mid-body until it is set
    uris = [
        upstream.add(f"/c{n}", Blob(path=big, hold=stuck if n == 1 else None, hold_after=65536))
        for n in range(8)
    ]
    async with Fetcher(OPEN) as fetcher, trio.open_nursery() as background:
        objects = await probe_all(fetcher, uris, [], anything)
        layout = plan_zip([ZipMember(f"c{n}", o.size, o.mtime) for n, o in enumerate(objects)])
        source = ZipSource(layout, objects, fetcher, (), anything)
        assert source.sends_ahead
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sent, source.body(0, layout.total, background))
                # The thread waits in member 1, with the requests of the members
                # after it written ahead (REQUESTS_AHEAD): then the reply is cancelled.
                while len(upstream.requests_for("/c4")) < 2:  # (the probe, then the read)
                    await trio.sleep(0.01)
                nursery.cancel_scope.cancel()
            stuck.set()
            # Every upstream reply ends: nothing handed or written ahead is left open (a
            # reply left open would block on a full socket buffer).
            while upstream.responding:
                await trio.sleep(0.01)
        background.cancel_scope.cancel()
