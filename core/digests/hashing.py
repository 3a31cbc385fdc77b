"""Hashing a file with every algorithm of :data:`slipstream.ext.ALGORITHMS` in one read
pass (blocking: the digest cache runs it in worker threads, the CLI calls it directly)."""

from __future__ import annotations

import errno
import os
import stat as stat_mod
from collections.abc import Callable, Iterable

from slipstream.ext import ALGORITHMS, MultiDigest

from .values import Digests, FileChanged

__all__ = ["CHUNK_SIZE", "Hasher", "complete_digests", "hash_fd", "hash_path"]

CHUNK_SIZE = 16 * 1024 * 1024
"""Bytes :func:`hash_fd` hands to one ``MultiDigest.update_from_fd`` call (and between
two ``progress`` calls)."""

Hasher = Callable[[int, int], Digests]
"""``hasher(fd, size) -> Digests``: what the digest cache runs in its worker threads."""


def hash_fd(
    fd: int,
    size: int,
    progress: Callable[[int], None] | None = None,
    *,
    chunk: int = CHUNK_SIZE,
    algorithms: Iterable[str] = ALGORITHMS,
) -> Digests:
    """Hash the first ``size`` bytes of ``fd`` with ``algorithms`` (every one by default,
    else at least all but :data:`~slipstream.digests.values.ON_DEMAND`), in one read pass.

    Blocking.  The file is read ``chunk`` bytes at a time by
    :meth:`~slipstream.ext.MultiDigest.update_from_fd`, with ``os.preadv`` (the file
    offset is left alone, so a shared or duplicated descriptor is not disturbed) into a
    few reused, page-aligned buffers; with two threads it reads the next piece while the
    worker thread hashes the last.  ``progress(n)`` is called after each ``chunk`` with
    the number of bytes just hashed (an increment, as for ``rich``'s ``advance``).
    Raises :class:`FileChanged` if the file ends before ``size`` bytes.
    """
    return Digests.from_values(size, _hash_values(fd, size, progress, chunk, algorithms))


def complete_digests(
    fd: int, found: Digests, progress: Callable[[int], None] | None = None
) -> Digests:
    """``found`` with its :attr:`~Digests.missing` algorithms computed from ``fd`` (one
    read pass, of those algorithms only)."""
    missing = found.missing
    if not missing:
        return found
    values = _hash_values(fd, found.size, progress, CHUNK_SIZE, missing)
    return Digests.from_values(found.size, {**found.values(), **values})


def _hash_values(
    fd: int,
    size: int,
    progress: Callable[[int], None] | None,
    chunk: int,
    algorithms: Iterable[str],
) -> dict[str, int | bytes]:
    if size < 0:
        raise ValueError("size must be >= 0")
    if chunk <= 0:
        raise ValueError("chunk must be > 0")
    digest = MultiDigest(algorithms)
    done = 0
    while done < size:
        want = min(chunk, size - done)
        got = digest.update_from_fd(fd, done, want)
        done += got
        if got and progress is not None:
            progress(got)
        if got < want:
            raise FileChanged(f"file ended after {done} of {size} bytes")
    return digest.digest()


def hash_path(
    path: str | os.PathLike[str], progress: Callable[[int], None] | None = None
) -> Digests:
    """Open ``path`` and hash it with :func:`hash_fd` (for the ``slipstream digest`` command).

    Raises ``OSError`` for a path that cannot be opened or is not a regular file.  The
    open never blocks: ``O_NONBLOCK`` keeps a FIFO without a writer (or a device) from
    waiting forever, and the type is checked on the open descriptor before any read.
    """
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode):
            code = errno.EISDIR if stat_mod.S_ISDIR(st.st_mode) else errno.EINVAL
            raise OSError(code, "not a regular file", os.fspath(path))
        os.set_blocking(fd, True)
        return hash_fd(fd, st.st_size, progress)
    finally:
        os.close(fd)
