"""Integrity headers from the digest cache.

Every file reply whose digests are cached carries ``Repr-Digest`` (RFC 9530,
SHA-256 of the whole file), ``x-oss-hash-crc64ecma`` (CRC-64/XZ, decimal) and
``x-goog-hash: crc32c=`` (base64 of the big-endian CRC-32C).  Small cold files are
hashed before the reply (one short worker-thread job); large cold files are served
at once and hashed in the background, so a reply never waits on a long hash.
A single-range 206 of a local file also gets ``Content-Digest`` (SHA-256 of the
bytes it carries) when the range is at most ``CONTENT_DIGEST_MAX`` bytes.
"""

from __future__ import annotations

import base64
import hashlib
import os

import trio

from slipstream.digests import DigestCache, Digests, FileChanged, FileKey
from slipstream.storage import OpenFile

INLINE_HASH_MAX = 1024 * 1024
"""Cold files up to this size are hashed before the reply; larger ones in the background."""
CONTENT_DIGEST_MAX = 16 * 1024 * 1024
"""Largest single range that gets a ``Content-Digest`` (hashing it means reading it twice)."""
_READ_CHUNK = 1024 * 1024


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def integrity_headers(digests: Digests) -> list[tuple[str, str]]:
    """The representation-level checksum headers for ``digests``."""
    return [
        ("Repr-Digest", f"sha-256=:{_b64(digests.sha256)}:"),
        ("x-oss-hash-crc64ecma", str(digests.crc64xz)),
        ("x-goog-hash", f"crc32c={_b64(digests.raw('crc32c'))}"),
    ]


async def file_digests(
    cache: DigestCache, opened: OpenFile, background: trio.Nursery | None
) -> Digests | None:
    """Cached digests of ``opened``, hashing small cold files now and large ones later."""
    fileno = getattr(opened, "fileno", None)
    if fileno is None:  # in-memory layers have no descriptor to hash from
        return None
    key = FileKey.from_stat(opened.stat)
    found = cache.lookup(key)
    if found is not None:
        return found
    fd: int = fileno()
    if key.size <= INLINE_HASH_MAX or background is None:
        if key.size > INLINE_HASH_MAX:
            return None
        try:
            return await cache.get(key, fd)
        except FileChanged:
            return None
    cache.schedule(background, key, fd)
    return None


def content_digest(sha256: bytes) -> str:
    """``Content-Digest`` value for the SHA-256 of a reply's content."""
    return f"sha-256=:{_b64(sha256)}:"


async def range_sha256(opened: OpenFile, start: int, stop: int) -> bytes | None:
    """SHA-256 of bytes ``[start, stop)`` of a local file, read in a worker thread."""
    fileno = getattr(opened, "fileno", None)
    if fileno is None or stop - start > CONTENT_DIGEST_MAX:
        return None
    fd = os.dup(fileno())
    try:
        return await trio.to_thread.run_sync(_hash_range, fd, start, stop)
    finally:
        os.close(fd)


def _hash_range(fd: int, start: int, stop: int) -> bytes | None:
    sha = hashlib.sha256()
    buffer = bytearray(min(_READ_CHUNK, stop - start))
    with memoryview(buffer) as view:
        offset = start
        while offset < stop:
            got = os.preadv(fd, [view[: min(len(view), stop - offset)]], offset)
            if got == 0:
                return None  # the file shrank: no digest rather than a wrong one
            sha.update(view[:got])
            offset += got
    return sha.digest()
