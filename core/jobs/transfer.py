"""One job's transfer: request the body (resuming a ``.part`` file if it can), decide from
the response head, stream the body through write and hash stages, then verify and publish.

:class:`Transfer` owns the bytes of one job; the runner (:mod:`slipstream.jobs.runner`)
owns when it runs, its deadline, its status and how its end is recorded.  A failure with
a seed-001 key is a :class:`JobFailed`; a ``FetchError`` or ``OSError`` passes through.
"""

from __future__ import annotations

import os
import queue
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Final

import trio

from slipstream.buffers import aligned_buffer
from slipstream.digests import DigestCache, Digests, FileKey
from slipstream.digests.values import ON_DEMAND
from slipstream.ext import ALGORITHMS, MultiDigest
from slipstream.fetch import Fetched, Fetcher
from slipstream.filenames import disposition_filename, safe_filename
from slipstream.http.contentrange import ContentRange, parse_content_range
from slipstream.http.validators import strong_validator
from slipstream.numeric import parse_uint_or_none

from .files import PartFile, publish
from .store import JobRecord

__all__ = ["BLOCK_SIZE", "INLINE_ALGORITHMS", "JobFailed", "Transfer", "hash_threads"]

INLINE_ALGORITHMS: Final = tuple(name for name in ALGORITHMS if name not in ON_DEMAND)
"""What a job hashes as the bytes arrive: every algorithm but SHA-1, which only the drive
API's ``content_hash`` uses; the digest cache computes it when it is first asked for."""

BLOCK_SIZE: Final = 1024 * 1024
"""Bytes gathered before one write+hash step in the worker thread."""
_BLOCKS: Final = 4
"""Blocks per transfer (4 MiB): one being filled while the stages work on the others."""


_Work = Callable[[memoryview], object]
"""What a stage does with one block (writing it, hashing it)."""
_Queue = queue.SimpleQueue[tuple[memoryview, int] | None]
"""A stage's blocks (a block and how much of it is filled); None: the body has ended."""


def hash_threads() -> int | None:
    """Threads for a job's hashing: one where the machine has two CPUs or fewer (the
    job's write and hash stages already keep two busy: alternated 1 GiB jobs on 2 vCPUs
    took 3.1 s with one against 3.8 s with two), else as :class:`MultiDigest` decides."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cpus = os.cpu_count() or 1
    return 1 if cpus <= 2 else None


class JobFailed(Exception):
    """The job failed with the seed-001 error ``key``."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The failure a pipeline nursery reports (its group holds one real error)."""
    for exc in group.exceptions:
        if not isinstance(exc, trio.Cancelled):
            return _single(exc) if isinstance(exc, BaseExceptionGroup) else exc
    return group


def _validator(fetched: Fetched) -> str | None:
    return strong_validator(fetched.headers.get("etag"), fetched.headers.get("last-modified"))


def _int_header(fetched: Fetched, name: str) -> int | None:
    """Header field ``name`` as a number of ASCII digits (None: absent or not one)."""
    return parse_uint_or_none(fetched.headers.get(name))


@dataclass(eq=False)
class Transfer:
    """The bytes of one job: ``record``'s URL into ``part``, its digests on the way
    (:data:`INLINE_ALGORITHMS`).

    ``progress()`` is called as bytes arrive (``record.current_size`` counts them);
    ``downloading()`` once the response head is accepted and the size is known.  One
    attempt: :meth:`run`, then :meth:`complete`, once each.
    """

    record: JobRecord
    part: PartFile
    fetcher: Fetcher
    max_fetch_size: int | None
    progress: Callable[[], None]
    downloading: Callable[[], Awaitable[None]]
    digest: MultiDigest = field(
        default_factory=lambda: MultiDigest(INLINE_ALGORITHMS, threads=hash_threads())
    )

    async def run(self) -> None:
        """Fetch the body into the part file (appending to what it holds, if it can)."""
        record, part = self.record, self.part
        offset = part.size
        headers: list[tuple[str, str]] = []
        if offset and record.validator:
            headers = [("Range", f"bytes={offset}-"), ("If-Range", record.validator)]
        elif offset:
            part.restart()
            offset = 0
        async with self.fetcher.stream(record.url, headers) as fetched:
            expected = await self._accept(fetched, offset)
            record.current_size = part.size
            record.expected_size = expected
            limit = self.max_fetch_size
            if limit and expected is not None and expected > limit:
                raise JobFailed("FILE_TOO_LARGE", f"{expected} bytes is over the limit")
            await self.downloading()
            if fetched.status != 416:
                await self._stream_body(fetched)
        if expected is not None and part.size != expected:
            raise JobFailed("NETWORK_ERROR", f"body ended at {part.size} of {expected} bytes")

    async def _accept(self, fetched: Fetched, offset: int) -> int | None:
        """Decide from the response head whether to append, restart or fail; the size."""
        record, part = self.record, self.part
        status = fetched.status
        if status in (404, 410):
            raise JobFailed("REMOTE_FILE_NOT_FOUND", f"upstream answered {status}")
        if offset and status == 206:
            answered = parse_content_range(fetched.headers.get("content-range"))
            if not isinstance(answered, ContentRange) or answered.first != offset:
                raise JobFailed("NETWORK_ERROR", "upstream resumed at the wrong offset")
            await trio.to_thread.run_sync(part.hash_existing, self.digest)
            return answered.size
        if offset and status == 416 and record.expected_size == offset:
            # Everything had arrived before the restart; only publishing was left.
            await trio.to_thread.run_sync(part.hash_existing, self.digest)
            return offset
        if not 200 <= status < 300 or status == 206:
            raise JobFailed("NETWORK_ERROR", f"upstream answered {status}")
        if offset:
            part.restart()
        record.validator = _validator(fetched)
        if not record.name_given:
            given = disposition_filename(fetched.headers.get("content-disposition", ""))
            if given:
                record.filename = safe_filename(given)
        return _int_header(fetched, "content-length")

    async def _stream_body(self, fetched: Fetched) -> None:
        """Receive into blocks; two stages, each in a worker thread, write and hash them.

        The body is read straight into :data:`_BLOCKS` reused aligned blocks (no copy
        besides the kernel's).  The stages run independently (each has its own queue of
        blocks), so the slower of writing and hashing sets the pace, not their sum; both
        release the GIL.  A block is refilled once both stages are done with it.

        Each stage is one worker thread for the whole body (one ``trio.to_thread`` call
        looping over its queue), not one thread hop per block: a hop (there and back)
        cost about 175 us on the test machine, and with a hop per block a stage idled between
        blocks even when the next one was waiting (0.8 s per GiB of pure hand-off).
        Blocks go to a stage through a ``queue.SimpleQueue`` and come back through the
        Trio token (``run_sync_soon``); whatever ends the body (its end, a failure, a
        cancellation) puts the end marker in both queues, so no thread outlives it.
        """
        record, part = self.record, self.part
        limit = self.max_fetch_size
        free_in, free = trio.open_memory_channel[memoryview](_BLOCKS)
        for _ in range(_BLOCKS):
            free_in.send_nowait(aligned_buffer(BLOCK_SIZE))
        users: dict[int, int] = {}
        """id(block) -> stages not done with it yet (touched on the Trio thread only)."""
        token = trio.lowlevel.current_trio_token()

        def done(block: memoryview) -> None:  # on the Trio thread, through the token
            users[id(block)] -= 1
            if not users[id(block)]:
                free_in.send_nowait(block)

        def stage(blocks: _Queue, work: _Work) -> None:  # in a worker thread
            while (item := blocks.get()) is not None:
                block, filled = item
                work(block[:filled])
                token.run_sync_soon(done, block)

        to_disk: _Queue = queue.SimpleQueue()
        to_hash: _Queue = queue.SimpleQueue()
        # The two threads have a limiter of their own: held for the whole body, they must
        # neither wait for nor take the default limiter's threads, which the rest of
        # the server (and the other jobs' stages) need meanwhile.
        threads = trio.CapacityLimiter(2)
        try:
            async with trio.open_nursery() as nursery:
                for blocks, work in ((to_disk, part.write), (to_hash, self.digest.update)):
                    nursery.start_soon(
                        partial(trio.to_thread.run_sync, stage, blocks, work, limiter=threads)
                    )
                try:
                    received = part.size
                    ended = False
                    while not ended:
                        block = await free.receive()
                        filled = 0
                        while filled < BLOCK_SIZE:
                            count = await fetched.readinto(block[filled:])
                            if not count:
                                ended = True
                                break
                            filled += count
                            received += count
                            if limit and received > limit:
                                raise JobFailed("FILE_TOO_LARGE", f"more than {limit} bytes")
                            # Progress counts bytes as they arrive, not per block: a slow
                            # upstream would otherwise show no progress for a whole MiB.
                            record.current_size = received
                            self.progress()
                        if filled:
                            users[id(block)] = 2
                            to_disk.put((block, filled))
                            to_hash.put((block, filled))
                        else:
                            free_in.send_nowait(block)
                finally:
                    to_disk.put(None)
                    to_hash.put(None)
        except BaseExceptionGroup as group:
            raise _single(group) from None

    async def complete(self, dir_fd: int, digests: DigestCache | None) -> None:
        """fsync, verify, publish under a free name in ``dir_fd``, record the digests."""
        record, part = self.record, self.part
        await trio.to_thread.run_sync(part.sync)
        found = Digests.from_values(part.size, self.digest.digest())
        sha256 = found.hex("sha256")
        if record.expected_sha256 and sha256 != record.expected_sha256:
            raise JobFailed("CHECKSUM_MISMATCH", f"sha256 {sha256} does not match")
        name, st = await trio.to_thread.run_sync(publish, dir_fd, part.name, record.filename)
        part.close()
        record.filename = name
        record.sha256 = sha256
        record.total_bytes = part.size
        record.current_size = part.size
        if digests is not None and not digests.closed:
            digests.store(FileKey.from_stat(st), found)
