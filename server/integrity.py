"""Integrity headers from the digest cache.

Every file reply whose digests are cached carries ``Repr-Digest`` (RFC 9530,
SHA-256 of the whole file), ``x-oss-hash-crc64ecma`` (CRC-64/XZ, decimal) and
``x-goog-hash: crc32c=`` (base64 of the big-endian CRC-32C).  Small cold files are
hashed before the reply (one short worker-thread job); large cold files are served
at once and hashed in the background, so a reply never waits on a long hash.
A 206 to a GET also gets ``Content-Digest`` (SHA-256 of the bytes it carries, single
range or multipart) when its body is at most ``Config.content_digest_max`` bytes: the
digest goes in the head, so the bytes are hashed before the first one is sent.  A HEAD
reply carries no content, so it gets no ``Content-Digest`` and nothing is hashed for it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
from collections.abc import Sequence

import trio

from slipstream.buffers import aligned_buffer
from slipstream.digests import DigestCache, Digests, FileKey, OnChange, opened_file_digests
from slipstream.segments import FileSlice, Literal, Segment, UpstreamSlice
from slipstream.storage import OpenFile

INLINE_HASH_MAX = 1024 * 1024
"""Cold files up to this size are hashed before the reply; larger ones in the background."""
_READ_CHUNK = 1024 * 1024


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


@functools.lru_cache(maxsize=4096)  # per file version; built for every reply
def integrity_headers(digests: Digests) -> tuple[tuple[str, str], ...]:
    """The representation-level checksum headers for ``digests``."""
    return (
        ("Repr-Digest", f"sha-256=:{_b64(digests.sha256)}:"),
        ("x-oss-hash-crc64ecma", str(digests.crc64xz)),
        ("x-goog-hash", f"crc32c={_b64(digests.raw('crc32c'))}"),
    )


async def file_digests(
    cache: DigestCache, opened: OpenFile, background: trio.Nursery | None
) -> Digests | None:
    """Cached digests of ``opened``, hashing small cold files now and large ones later.

    None (no integrity headers) for a large cold file, a file without a descriptor (an
    in-memory layer), and a file that changes while it is hashed (``OnChange.NONE``).
    """
    fileno = getattr(opened, "fileno", None)
    if fileno is None:  # in-memory layers have no descriptor to hash from
        return None
    key = FileKey.from_stat(opened.stat)
    found = cache.lookup(key)
    if found is not None:
        return found
    if key.size <= INLINE_HASH_MAX:
        _, digests = await opened_file_digests(cache, opened, on_change=OnChange.NONE)
        return digests
    if background is not None:
        cache.schedule(background, key, fileno())
    return None


def content_digest(sha256: bytes) -> str:
    """``Content-Digest`` value for the SHA-256 of a reply's content."""
    return f"sha-256=:{_b64(sha256)}:"


async def content_sha256(segments: Sequence[Segment]) -> bytes | None:
    """SHA-256 of the bytes ``segments`` hold, read in a worker thread; None if unknowable.

    The descriptors stay open meanwhile: the reply that owns them awaits this first.
    """
    if any(isinstance(segment, UpstreamSlice) for segment in segments):
        return None
    return await trio.to_thread.run_sync(_hash_segments, segments)


def _hash_segments(segments: Sequence[Segment]) -> bytes | None:
    sha = hashlib.sha256()
    with aligned_buffer(_READ_CHUNK) as view:
        for segment in segments:
            if isinstance(segment, Literal):
                sha.update(segment.data)
                continue
            assert isinstance(segment, FileSlice)
            fd = segment.source.fileno()
            offset, stop = segment.offset, segment.offset + segment.length
            while offset < stop:
                got = os.preadv(fd, [view[: min(len(view), stop - offset)]], offset)
                if got == 0:
                    return None  # the file shrank: no digest rather than a wrong one
                sha.update(view[:got])
                offset += got
    return sha.digest()
