"""Files of remote-download jobs: target directories, ``.part`` files, publishing.

Blocking, descriptor-relative file operations (no Trio; the job runner calls the slow
ones through ``trio.to_thread``).  Every operation inside the download root goes through
a directory descriptor opened component by component with ``O_NOFOLLOW``, so a symlink
planted on the path cannot redirect a download outside the root, and the name checks of
:func:`~slipstream.pathsafety.safe_relative_path` apply as for ``/api/download``.

Publishing never overwrites: the finished ``.part`` file is hard-linked under its final
name (``link`` fails if the name exists, then ``name (1).ext`` is tried, and so on) and
the ``.part`` name is removed.  A reader sees either no file or the whole file.  The
``.part`` names themselves are :func:`slipstream.filenames.part_name`.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Sequence

from slipstream.buffers import aligned_buffer
from slipstream.directio import DIRECT_FLAG, direct_length, refused, set_direct
from slipstream.errors import PathNotAllowed
from slipstream.ext import MultiDigest
from slipstream.filenames import numbered
from slipstream.pathsafety import safe_relative_path
from slipstream.writeback import WritebackWindows

__all__ = ["PartFile", "open_directory", "publish"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_PUBLISH_TRIES = 10_000
_READ_CHUNK = 4 * 1024 * 1024


def open_directory(
    root: str | os.PathLike[str],
    directory: str,
    *,
    hidden: Sequence[str | os.PathLike[str]] = (),
    create: bool = True,
) -> int:
    """Open ``directory`` (relative to ``root``) and return a directory descriptor.

    Missing components are created when ``create``.  Raises ``PathNotAllowed`` for an
    unsafe path, a symlink on the way, a non-directory component, or a directory inside
    one of ``hidden`` (the state dir); ``OSError`` for other failures.
    """
    segments = safe_relative_path(directory) if directory not in ("", "/", ".") else ()
    hidden_real = [os.path.realpath(os.fspath(entry)) for entry in hidden]
    fd = os.open(os.fspath(root), _DIR_FLAGS)
    try:
        _check_not_hidden(fd, hidden_real)
        for segment in segments:
            _check_not_hidden(fd, hidden_real, segment)  # before anything is created there
            try:
                child = os.open(segment, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(segment, 0o755, dir_fd=fd)
                child = os.open(segment, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise PathNotAllowed() from None
                raise
            os.close(fd)
            fd = child
        _check_not_hidden(fd, hidden_real)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_not_hidden(dir_fd: int, hidden: Sequence[str], child: str = "") -> None:
    """Refuse the directory ``dir_fd`` (or its ``child``) if it is inside a hidden one."""
    real = os.readlink(f"/proc/self/fd/{dir_fd}")
    if child:
        real = os.path.join(real, child)
    for base in hidden:
        if real == base or real.startswith(base + os.sep):
            raise PathNotAllowed()


class PartFile:
    """The ``.part`` file a job streams into, opened in its directory (kept open).

    With ``direct`` (the default), the aligned part of every write goes to the disk
    with ``O_DIRECT`` (:mod:`slipstream.directio`): a job's aligned 1 MiB blocks skip
    the page cache, so no dirty pages pile up and :meth:`sync` at the end has little
    left to do.  What cannot be written directly (an unaligned tail, a file that
    refuses ``O_DIRECT``) goes through the page cache, and each whole 8 MiB of that is
    handed to the disk as soon as it is written (:mod:`slipstream.writeback`).
    """

    def __init__(self, dir_fd: int, name: str, *, resume: bool, direct: bool = True) -> None:
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        self.dir_fd = dir_fd
        self.name = name
        self.fd = os.open(name, flags, 0o644, dir_fd=dir_fd)
        if not resume:
            os.ftruncate(self.fd, 0)
        self.size = os.fstat(self.fd).st_size
        os.lseek(self.fd, self.size, os.SEEK_SET)
        self._writeback = WritebackWindows(self.fd, self.size)
        self.direct = direct and bool(DIRECT_FLAG)
        """Whether aligned writes still go with ``O_DIRECT`` (off once the file refused it)."""
        self._direct_on = False
        """Whether ``O_DIRECT`` is set on :attr:`fd` right now."""
        self.direct_bytes = 0
        """Bytes written with ``O_DIRECT`` so far."""

    def restart(self) -> None:
        """Drop what was written (the upstream could not resume)."""
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        self.size = 0
        self._writeback.restart()

    def hash_existing(self, digest: MultiDigest) -> None:
        """Feed the bytes already in the file to ``digest`` (resuming after a restart)."""
        self._switch_direct(False)  # reads of any length, at any offset
        with aligned_buffer(min(_READ_CHUNK, max(self.size, 1))) as view:
            done = 0
            while done < self.size:
                got = os.preadv(self.fd, [view[: min(len(view), self.size - done)]], done)
                if got == 0:
                    raise OSError(errno.EIO, "part file shrank while resuming")
                digest.update(view[:got])
                done += got

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` (its aligned part with ``O_DIRECT``, see the class docstring)."""
        with memoryview(data) as whole:
            view = whole.cast("B") if whole.format != "B" or whole.ndim != 1 else whole
            written = 0
            while written < len(view):
                rest = view[written:]
                direct = direct_length(rest, self.size) if self.direct else 0
                if direct:
                    try:
                        count = self._write_direct(rest[:direct])
                    except OSError as exc:
                        if not refused(exc):
                            raise
                        self.direct = False  # this file takes no direct writes
                        continue
                else:
                    self._switch_direct(False)
                    count = os.write(self.fd, rest)
                    self._writeback.written(self.size + count)
                written += count
                self.size += count

    def _write_direct(self, view: memoryview) -> int:
        if not self._switch_direct(True):
            raise OSError(errno.EINVAL, "O_DIRECT refused")
        count = os.write(self.fd, view)
        self.direct_bytes += count
        return count

    def _switch_direct(self, on: bool) -> bool:
        if on != self._direct_on:
            if not set_direct(self.fd, on):
                return False
            self._direct_on = on
        return True

    def sync(self) -> None:
        """``fsync`` the file (before it is published or checkpointed)."""
        os.fsync(self.fd)

    def remove(self) -> None:
        """Close and delete the part file (cancelled or failed jobs)."""
        self.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.name, dir_fd=self.dir_fd)

    def close(self) -> None:
        """Close the descriptor (idempotent)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def publish(dir_fd: int, part: str, name: str) -> tuple[str, os.stat_result]:
    """Give ``part`` its final name without overwriting; return the name used and its stat.

    Tries ``name``, then ``name (1)``, ``name (2)``, ...; the directory is fsynced after.
    """
    for n in range(_MAX_PUBLISH_TRIES):
        candidate = numbered(name, n) if n else name
        try:
            os.link(part, candidate, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
        except FileExistsError:
            continue
        os.unlink(part, dir_fd=dir_fd)
        os.fsync(dir_fd)
        return candidate, os.stat(candidate, dir_fd=dir_fd, follow_symlinks=False)
    raise FileExistsError(errno.EEXIST, "no free name for the download", name)
