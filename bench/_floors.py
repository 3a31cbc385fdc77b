"""Floors: what the building blocks an issue prescribes can do on their own, in the same run.

Issue 5 asks remote downloads to go through httpx on Trio and to compute every digest;
issue 6 asks zip members to come through the same guarded fetcher.  These floors time
exactly those blocks with nothing else around them (no server, no disk, no zip), in the
benchmark's own process, against the same nginx URL:

- :func:`httpx_receive` reads the body through :class:`slipstream.fetch.Fetcher`
  and drops it;
- with ``digest=True`` every byte is also fed to one ``MultiDigest`` over all the
  algorithms, in a worker-thread stage pipelined with the receiving, as a job does.

A target above the floor's ratio cannot be met while those blocks are required: the
real thing does strictly more work on the same bytes.  ``zip.py`` has a second floor, a
bare Trio relay with and without a CRC-32 per chunk, that runs as a server of its own
(``_pump_server.py``).
"""

from __future__ import annotations

import time

import trio

from slipstream.ext import ALGORITHMS, MultiDigest
from slipstream.fetch import Fetcher
from slipstream.netpolicy import NetworkPolicy

BLOCK = 1024 * 1024


async def _receive(url: str, digest: bool) -> int:
    received = 0
    hasher = MultiDigest(ALGORITHMS)
    send, blocks = trio.open_memory_channel[bytes](2)

    async def hash_stage() -> None:
        async with blocks:
            async for block in blocks:
                await trio.to_thread.run_sync(hasher.update, block)

    policy = NetworkPolicy(allow_private_networks=True)
    async with Fetcher(policy) as fetcher, trio.open_nursery() as nursery:
        if digest:
            nursery.start_soon(hash_stage)
        async with send, fetcher.stream(url) as got:
            if got.status != 200:
                raise RuntimeError(f"floor: {url} answered {got.status}")
            pending: list[bytes] = []
            size = 0
            async for chunk in got.chunks():
                received += len(chunk)
                if digest:
                    pending.append(chunk)
                    size += len(chunk)
                    if size >= BLOCK:
                        await send.send(b"".join(pending))
                        pending, size = [], 0
            if pending:
                await send.send(b"".join(pending))
    return received


def httpx_receive(url: str, *, digest: bool = False) -> dict[str, float]:
    """Fetch ``url`` once through the guarded fetcher; seconds, bytes and bytes/s."""
    started = time.perf_counter()
    received = trio.run(_receive, url, digest)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "bytes": received, "bytes_per_s": received / seconds}
