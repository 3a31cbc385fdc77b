"""Zip-as-a-service (seed 004): member bytes nobody needs to look at are spliced.

The data of a member that a reply does not stream whole (a range that starts or ends
inside it) needs no CRC on the way, so after its first chunk it moves from the upstream
socket to the client's with ``os.splice``.  A member streamed whole is always read
through memory: its CRC goes into the descriptor and a cached one is checked.  Counted
here by wrapping ``os.splice`` as the pump module calls it.
"""

from __future__ import annotations

import os
import zipfile
from io import BytesIO

import httpx
import pytest
import trio

import slipstream.upstream
from tests.helpers.server import StartServer
from tests.helpers.upstream import Blob, Upstream
from tests.helpers.zip import create, fetch, member_bytes, zip_server

pytestmark = pytest.mark.usefixtures("zip_sender")

SIZE = 3 * 1024 * 1024


class SpliceCounter:
    """Wraps ``os.splice`` (the module's attribute is replaced: it is the ``os`` module)."""

    def __init__(self) -> None:
        self.moved = 0
        self._real = os.splice

    def splice(self, src: int, dst: int, count: int, *args: object, **kwargs: int) -> int:
        moved = self._real(src, dst, count, *args, **kwargs)  # type: ignore[arg-type]
        self.moved += moved
        return moved


@pytest.fixture
def spliced(monkeypatch: pytest.MonkeyPatch) -> SpliceCounter:
    counter = SpliceCounter()
    monkeypatch.setattr(slipstream.upstream.os, "splice", counter.splice)
    return counter


async def test_a_range_inside_a_member_is_spliced_and_exact(
    start_server: StartServer, upstream: Upstream, spliced: SpliceCounter
) -> None:
    served = await zip_server(start_server, upstream)
    data = {"a.bin": member_bytes(1, SIZE), "b.bin": member_bytes(2, 1000)}
    uris = [upstream.add(f"/sp/{name}", Blob(content)) for name, content in data.items()]
    path = await create(served, uris)
    start, stop = 1000, SIZE - 1000
    part = await fetch(served, path, Range=f"bytes={start}-{stop - 1}")
    assert part.status_code == 206
    # Inside member a: its first chunk is copied, the rest (MiBs) is spliced, counted
    # twice (upstream -> pipe, pipe -> client).
    assert spliced.moved >= 2 * (SIZE - 2 * 1024 * 1024)
    spliced.moved = 0
    whole = await fetch(served, path)
    assert whole.status_code == 200
    with zipfile.ZipFile(BytesIO(whole.content)) as archive:
        assert archive.testzip() is None
        assert {n: archive.read(n) for n in archive.namelist()} == data
    assert spliced.moved == 0, "members streamed whole go through memory (their CRC)"
    assert part.content == whole.content[start:stop]


async def test_a_resume_starts_its_background_crcs_once_its_first_bytes_are_in(
    start_server: StartServer, upstream: Upstream, nursery: trio.Nursery
) -> None:
    # A reply that starts inside the last member needs every earlier member's CRC (for
    # the central directory): those are computed in the background, but only once the
    # reply's first read has its first bytes, so they do not compete with them.
    served = await zip_server(start_server, upstream)
    data = {f"m{n}.bin": member_bytes(n, 40_000) for n in range(8)}
    uris = [upstream.add(f"/order/{name}", Blob(content)) for name, content in data.items()]
    path = await create(served, uris)
    whole_size = int((await fetch(served, path, "HEAD")).headers["content-length"])
    go = trio.Event()
    upstream.add("/order/m7.bin", Blob(data["m7.bin"], hold=go, hold_after=0))
    upstream.reset()
    replies: list[httpx.Response] = []

    async def resume() -> None:
        replies.append(await fetch(served, path, Range=f"bytes={whole_size - 30_000}-"))

    nursery.start_soon(resume)
    with trio.fail_after(5):
        while not upstream.requests:
            await trio.sleep(0.01)
    await trio.sleep(0.3)  # time enough for CRC reads to reach the upstream, if started
    early = [r.path for r in upstream.requests]
    go.set()
    with trio.fail_after(10):
        while not replies:
            await trio.sleep(0.01)
    assert replies[0].status_code == 206
    assert early == ["/order/m7.bin"], early
    assert {r.path for r in upstream.requests} >= {f"/order/m{n}.bin" for n in range(7)}
