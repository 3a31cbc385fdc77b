"""The ``.part`` file of a client download: where it lives, its ETag, hashing and writing.

``DEST.part`` holds the bytes received so far and ``DEST.part.etag`` the ETag of the
version they belong to; :mod:`slipstream.client` resumes from them.  File work runs in
worker threads (never abandoned on cancel, so a write is whole or not started).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, BinaryIO

import trio

from .errors import DownloadFailed

__all__ = [
    "HASH_CHUNK",
    "discard",
    "etag_path_for",
    "hash_prefix",
    "part_path_for",
    "resume_state",
    "sync_file",
    "write_chunk",
    "write_etag",
]

HASH_CHUNK = 4 * 1024 * 1024
"""The prefix of a resumed ``.part`` file is re-hashed this many bytes per thread call."""


def part_path_for(dest: Path) -> Path:
    """Where a download to ``dest`` keeps its bytes until verified: ``dest + ".part"``."""
    return dest.with_name(dest.name + ".part")


def etag_path_for(dest: Path) -> Path:
    """Where the ETag of ``dest``'s ``.part`` bytes is kept: ``dest + ".part.etag"``."""
    return dest.with_name(dest.name + ".part.etag")


def resume_state(part: Path, etag_path: Path) -> tuple[int, str | None]:
    """(bytes already in ``part``, their ETag), or (0, None) when there is nothing to resume."""
    try:
        etag = etag_path.read_text("ascii").strip()
        offset = part.stat().st_size
    except (OSError, UnicodeDecodeError):
        return 0, None
    if not etag or offset == 0:
        return 0, None
    return offset, etag


def discard(part: Path, etag_path: Path) -> None:
    """Remove ``part`` and its ETag file (either may be absent)."""
    part.unlink(missing_ok=True)
    etag_path.unlink(missing_ok=True)


def write_etag(etag_path: Path, etag: str) -> None:
    """Record ``etag`` atomically (it must never describe bytes of another version)."""
    tmp = etag_path.with_name(etag_path.name + ".tmp")
    tmp.write_text(etag + "\n", "ascii")
    os.replace(tmp, etag_path)


async def hash_prefix(handle: BinaryIO, length: int, hasher: Any) -> None:
    """Feed the first ``length`` bytes of ``handle`` to ``hasher`` (a thread per chunk)."""

    def step(start: int) -> int:
        handle.seek(start)
        data = handle.read(min(HASH_CHUNK, length - start))
        hasher.update(data)
        return len(data)

    position = 0
    while position < length:
        read = await trio.to_thread.run_sync(step, position)
        if not read:
            raise DownloadFailed(f"{handle.name} shrank while being resumed")
        position += read


async def write_chunk(handle: BinaryIO, hasher: Any, buffer: bytearray) -> int:
    """Write and hash ``buffer`` in a thread (not abandoned on cancel: the file stays whole)."""
    data = bytes(buffer)

    def step() -> None:
        handle.write(data)
        hasher.update(data)

    await trio.to_thread.run_sync(step)
    return len(data)


def sync_file(handle: BinaryIO) -> None:
    """Flush ``handle`` and fsync it (before the rename to the final name)."""
    handle.flush()
    os.fsync(handle.fileno())
