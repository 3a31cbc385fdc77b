"""Floors: what the building blocks of a job or a zip can do on their own, in the same run.

Remote downloads and zip members come through slipstream's guarded fetcher
(:class:`slipstream.fetch.Fetcher`: for a plaintext ``GET``, h11 for the head and the
body pump, ``recv_into`` reused buffers).  These floors time exactly that block with
nothing else around it (no server, no disk, no zip), in the benchmark's own process,
against the same nginx URL:

- :func:`httpx_receive` (the name is historical: the fetcher was httpx alone) reads the
  body with :meth:`~slipstream.fetch.Fetched.readinto` into 1 MiB aligned blocks and
  drops it;
- with ``digest=True`` every block is also fed to one ``MultiDigest`` over the
  algorithms a job computes as bytes arrive (all but SHA-1), in a worker-thread stage
  pipelined with the receiving, as a job does (one thread for the whole body, fed by a
  queue; with as many hashing threads as a job uses).

- :func:`durable_write` writes as many bytes from memory into a job's ``.part`` file
  (:class:`slipstream.jobs.files.PartFile`: 1 MiB aligned blocks, written with
  ``O_DIRECT`` where the filesystem takes it) on the same filesystem, then ``fsync``: the
  least a job must do to have a file on disk before it says ``completed``, with no
  network and no hashing.

A target above the floor's ratio cannot be met with these blocks: the real thing does
strictly more work on the same bytes.  ``zip.py`` has a second floor, a bare Trio relay
with and without a CRC-32 per chunk, that runs as a server of its own
(``_pump_server.py``).
"""

from __future__ import annotations

import os
import queue
import time
from pathlib import Path

import trio

from slipstream.buffers import aligned_buffer
from slipstream.ext import MultiDigest
from slipstream.fetch import Fetcher
from slipstream.jobs.files import PartFile
from slipstream.jobs.transfer import INLINE_ALGORITHMS, hash_threads
from slipstream.netpolicy import NetworkPolicy

BLOCK = 1024 * 1024
BLOCKS = 4


async def _receive(url: str, digest: bool) -> int:
    received = 0
    hasher = MultiDigest(INLINE_ALGORITHMS, threads=hash_threads())
    free_in, free = trio.open_memory_channel[memoryview](BLOCKS)
    for _ in range(BLOCKS):
        free_in.send_nowait(aligned_buffer(BLOCK))
    token = trio.lowlevel.current_trio_token()
    blocks: queue.SimpleQueue[tuple[memoryview, int] | None] = queue.SimpleQueue()

    def hash_stage() -> None:  # one worker thread for the whole body, as a job's stage
        while (item := blocks.get()) is not None:
            block, filled = item
            hasher.update(block[:filled])
            token.run_sync_soon(free_in.send_nowait, block)

    policy = NetworkPolicy(allow_private_networks=True)
    async with Fetcher(policy) as fetcher, trio.open_nursery() as nursery:
        if digest:
            nursery.start_soon(trio.to_thread.run_sync, hash_stage)
        try:
            async with fetcher.stream(url) as got:
                if got.status != 200:
                    raise RuntimeError(f"floor: {url} answered {got.status}")
                filled = BLOCK
                while filled == BLOCK:  # a block not filled: the body ended
                    block = await free.receive()
                    filled = await got.fill(block)
                    received += filled
                    if digest and filled:
                        blocks.put((block, filled))
                    else:
                        free_in.send_nowait(block)
        finally:
            blocks.put(None)
    return received


def httpx_receive(url: str, *, digest: bool = False) -> dict[str, float]:
    """Fetch ``url`` once through the guarded fetcher; seconds, bytes and bytes/s."""
    started = time.perf_counter()
    received = trio.run(_receive, url, digest)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "bytes": received, "bytes_per_s": received / seconds}


def durable_write(directory: Path, size: int) -> dict[str, float]:
    """Write ``size`` bytes into a ``.part`` file in ``directory`` as a job does, then
    ``fsync``; seconds, bytes and bytes/s.  The file is deleted and the page cache
    flushed afterwards (not timed)."""
    block = aligned_buffer(BLOCK)
    block[:] = os.urandom(BLOCK)
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        started = time.perf_counter()
        part = PartFile(dir_fd, ".floor.part", resume=False)
        try:
            for offset in range(0, size, BLOCK):
                part.write(block[: min(BLOCK, size - offset)])
            part.sync()
            seconds = time.perf_counter() - started
        finally:
            part.remove()
    finally:
        os.close(dir_fd)
    os.sync()
    return {"seconds": seconds, "bytes": size, "bytes_per_s": size / seconds}
