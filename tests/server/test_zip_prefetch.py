"""Zip-as-a-service (seed 004): member reads opened ahead of their turn.

While one member is sent, the reads of the next ``PREFETCH_MEMBERS`` are already open, so
a zip of many members behind a slow first byte is not one round trip per member.  The
bytes and the errors stay those of reading one member after the other: a member read
ahead that changed or fails cuts the reply where its data would start (after everything
before it, the previous member's descriptor included), never the member being sent; and a
client that goes away leaves no upstream read open.

Several tests hold the first member's upstream reply after its first chunk (``hold``)
until the reads ahead have reached the upstream: they check that those reads happen while
that member is being sent, without a clock.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from slipstream.zip.ahead import PREFETCH_MEMBERS
from slipstream.zip.threadfetch import REQUESTS_AHEAD
from tests.helpers.server import Served, StartServer
from tests.helpers.upstream import DEFAULT_CHUNK, Blob, Handler, RecordedRequest, Status, Upstream
from tests.helpers.zip import (
    check_error,
    create,
    fetch,
    fetch_partial,
    format_params,
    member_bytes,
    read_zip,
    zip_server,
)

pytestmark = pytest.mark.usefixtures("zip_sender")

MEMBERS = 30
DELAY = 0.1
"""Seconds every upstream answer waits before its first byte."""
WITHIN = 5.0
"""Seconds a reply that is held until a read ahead arrives may take (it never waits that
long when the member is read ahead; without reads ahead it would wait forever)."""


async def test_many_members_behind_a_slow_first_byte_take_a_fraction_of_one_by_one(
    start_server: StartServer, upstream: Upstream
) -> None:
    served = await zip_server(start_server, upstream)
    data = {f"s{n}.bin": member_bytes(n, 3000 + n) for n in range(MEMBERS)}
    uris = [
        upstream.add(f"/slow/{name}", Blob(content, delay_head=DELAY))
        for name, content in data.items()
    ]
    path = await create(served, uris)
    started = trio.current_time()
    reply = await fetch(served, path)
    elapsed = trio.current_time() - started
    assert reply.status_code == 200 and read_zip(reply.content) == data
    one_by_one = MEMBERS * DELAY  # at least this long when each read waits for the last
    assert elapsed < 0.5 * one_by_one, f"{elapsed:.2f} s for {MEMBERS} x {DELAY} s first bytes"


FIRST = member_bytes(0, 5 * DEFAULT_CHUNK)
SECOND = member_bytes(1, 5000)
THIRD = member_bytes(2, 7000)


async def three_members(served: Served, upstream: Upstream) -> tuple[list[str], bytes, str]:
    """Three members (the second with a fixed ETag), the reference zip (a 200 of another
    manifest of the same URIs), and a fresh manifest's ``/stream`` path (JSON errors)."""
    uris = [
        upstream.add("/ahead/a.bin", Blob(FIRST)),
        upstream.add("/ahead/b.bin", Blob(SECOND, etag='"b1"')),
        upstream.add("/ahead/c.bin", Blob(THIRD)),
    ]
    full = await fetch(served, await create(served, uris))
    assert full.status_code == 200
    return uris, full.content, await create(served, uris, **format_params("json"))


def hold_first_until_the_second_is_read(upstream: Upstream, second: Blob | Status) -> None:
    """From now on the first member's reply stops after its first chunk until the second
    member is read (which is then answered with ``second``)."""
    go = trio.Event()
    upstream.add("/ahead/a.bin", Blob(FIRST, hold=go, hold_after=DEFAULT_CHUNK))

    def read(request: RecordedRequest) -> Blob | Status:
        go.set()
        return second

    upstream.add("/ahead/b.bin", Handler(read))


@pytest.mark.parametrize("change", ["etag", "size"])
async def test_a_member_changed_before_its_turn_cuts_where_its_data_starts(
    start_server: StartServer, upstream: Upstream, change: str
) -> None:
    served = await zip_server(start_server, upstream)
    _, full, path = await three_members(served, upstream)
    if change == "etag":
        changed = Blob(member_bytes(9, len(SECOND)), etag='"b2"')
    else:
        changed = Blob(member_bytes(1, len(SECOND) + 1), etag='"b1"')
    hold_first_until_the_second_is_read(upstream, changed)
    with trio.fail_after(WITHIN):
        reply = await fetch_partial(served, path)
    assert reply.status == 200 and not reply.complete
    # The first member whole, its descriptor, the second's header: then the cut.
    assert reply.body == full[: full.index(SECOND)]
    check_error(await fetch(served, path), "CHECKSUM_ERROR", "json")


async def test_a_failing_member_read_ahead_leaves_the_one_before_it_whole(
    start_server: StartServer, upstream: Upstream
) -> None:
    served = await zip_server(start_server, upstream)
    uris, full, path = await three_members(served, upstream)
    hold_first_until_the_second_is_read(upstream, Status(404, b"gone"))
    with trio.fail_after(WITHIN):
        reply = await fetch_partial(served, path)
    assert reply.status == 200 and not reply.complete
    assert reply.body == full[: full.index(SECOND)]
    # As when the member is read in its turn: remembered as failing, listed in the 502.
    check_error(await fetch(served, path), "FAILED_FETCHING_URIS", "json", uris[1:2])
    upstream.add("/ahead/b.bin", Blob(SECOND, etag='"b1"'))
    healed = await fetch(served, path)
    assert healed.status_code == 200 and healed.content == full


async def test_a_client_gone_mid_zip_leaves_no_upstream_read_open(
    start_server: StartServer, upstream: Upstream, tmp_path: Path, zip_sender: bool
) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as sparse:
        sparse.truncate(32 * 1024 * 1024)  # more than the socket buffers hold
    # With a send thread, the thread writes the requests of the REQUESTS_AHEAD members
    # after the one it sends (the first, stuck) before it sends it; without, the event
    # loop reads PREFETCH_MEMBERS ahead.
    opened = REQUESTS_AHEAD if zip_sender else PREFETCH_MEMBERS
    count = opened + 2
    uris = [upstream.add(f"/gone/m{n}.bin", Blob(path=big)) for n in range(count)]
    served = await zip_server(start_server, upstream)
    path = await create(served, uris)
    go = trio.Event()
    ahead: set[int] = set()
    upstream.add("/gone/m0.bin", Blob(path=big, hold=go, hold_after=DEFAULT_CHUNK))

    def reader(n: int) -> Handler:
        def read(request: RecordedRequest) -> Blob:
            ahead.add(n)
            if len(ahead) == PREFETCH_MEMBERS:
                go.set()
            return Blob(path=big)

        return Handler(read)

    for n in range(1, count):
        upstream.add(f"/gone/m{n}.bin", reader(n))
    with trio.fail_after(WITHIN):
        async with served.client() as client, client.stream("GET", path) as reply:
            assert reply.status_code == 200
            received = 0
            async for chunk in reply.aiter_raw():
                received += len(chunk)
                if received > 1024 * 1024:
                    break  # and close the connection, 1 MiB into the first member
        assert ahead == set(range(1, opened + 1)), "read ahead, and no further"
        # Every upstream reply ends: the reads ahead were closed, none is left hanging
        # (a read left open would keep its reply blocked on a full socket buffer).
        while upstream.responding:
            await trio.sleep(0.01)
    assert (await fetch(served, "/healthz")).status_code == 200
