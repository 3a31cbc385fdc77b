"""Where downloadable files live: the local filesystem or memory, chosen by ``fstype``.

Every layer validates client paths with :func:`slipstream.pathsafety.safe_relative_path`
and raises the same :mod:`slipstream.errors` for the same situations, so a route never
needs to know which layer it talks to.  These calls are synchronous and cheap (a few
syscalls); the server runs them directly or in a thread as it sees fit.

Error messages only ever show the client's own path, never a server path.
Empty-file and size-limit rules belong to the routes, not to storage.
"""

from __future__ import annotations

import abc
import bisect
import errno
import itertools
import os
import stat as stat_mod
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from slipstream.errors import (
    FileNotFound,
    FileNotReadable,
    FileSystemUnavailable,
    InternalError,
    IsADirectory,
    NotARegularFile,
    PathNotAllowed,
)
from slipstream.filenames import is_part_file
from slipstream.openfiles import OpenFileCache, SharedFile
from slipstream.pathsafety import safe_relative_path
from slipstream.segments import FileSlice, Literal, Segment

__all__ = [
    "DirEntry",
    "FileStat",
    "LocalOpenFile",
    "LocalStorage",
    "MemoryOpenFile",
    "MemoryStorage",
    "OpenFile",
    "Storage",
    "StorageRegistry",
]

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class FileStat:
    """The metadata of one opened file (taken from ``fstat`` of the open descriptor)."""

    size: int
    mtime_ns: int
    dev: int
    ino: int

    @classmethod
    def from_stat_result(cls, st: os.stat_result) -> FileStat:
        """Build from ``os.stat`` / ``os.fstat`` output."""
        return cls(size=st.st_size, mtime_ns=st.st_mtime_ns, dev=st.st_dev, ino=st.st_ino)

    @property
    def etag(self) -> str:
        """Strong ETag ``"ino-mtime-size"`` (hex); changes whenever the file is rewritten."""
        return f'"{self.ino:x}-{self.mtime_ns:x}-{self.size:x}"'

    @property
    def last_modified(self) -> int:
        """Modification time in whole seconds since the epoch (for ``Last-Modified``)."""
        return self.mtime_ns // 1_000_000_000


@dataclass(frozen=True, slots=True)
class DirEntry:
    """One entry of :meth:`Storage.list_dir`; ``size`` is 0 for directories."""

    name: str
    is_dir: bool
    size: int
    mtime_ns: int


class OpenFile(abc.ABC):
    """A file opened for download.  Use as a context manager; ``close()`` is idempotent."""

    name: str
    """Base name, for ``Content-Disposition``."""
    path: str
    """The normalised client-facing relative path, ``"a/b.txt"``."""
    stat: FileStat

    def __init__(self, segments: tuple[str, ...], stat: FileStat) -> None:
        self.name = segments[-1]
        self.path = "/".join(segments)
        self.stat = stat
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._closed

    def segment(self, offset: int = 0, length: int | None = None) -> Segment:
        """The bytes ``[offset, offset + length)`` (default: to the end) as one segment."""
        if self._closed:
            raise ValueError("I/O operation on closed file")
        size = self.stat.size
        if length is None:
            length = size - offset
        if offset < 0 or length < 0 or offset + length > size:
            raise ValueError(f"segment [{offset}, +{length}) outside file of size {size}")
        return self._segment(offset, length)

    @abc.abstractmethod
    def _segment(self, offset: int, length: int) -> Segment: ...

    def close(self) -> None:
        """Release the file; calling it again does nothing."""
        if not self._closed:
            self._closed = True
            self._close()

    def _close(self) -> None:  # noqa: B027 - optional hook
        """Layer-specific release (called at most once)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {self.path!r} {state} size={self.stat.size}>"


class Storage(abc.ABC):
    """A filesystem layer addressed by client-relative paths."""

    name: str
    """The ``fstype`` value that selects this layer (``"OsFs"``, ``"MemFs"``)."""

    @abc.abstractmethod
    def open(self, user_path: str) -> OpenFile:
        """Open a regular file for reading, or raise the matching :mod:`slipstream.errors`."""

    def stat(self, user_path: str) -> FileStat:
        """Metadata of the file ``open(user_path)`` would give (same checks, same errors)."""
        with self.open(user_path) as f:
            return f.stat

    @abc.abstractmethod
    def list_dir(self, user_path: str) -> list[DirEntry]:
        """Downloadable entries of a directory, sorted by name; ``""`` is the root."""


# --- local filesystem --------------------------------------------------------------------


class LocalOpenFile(OpenFile):
    """A local file held open by descriptor; its segments are :class:`FileSlice` s of it.

    With ``shared`` the descriptor belongs to an :class:`~slipstream.openfiles.OpenFileCache`
    entry, and closing releases this file's reference instead of the descriptor.
    """

    def __init__(
        self,
        segments: tuple[str, ...],
        fd: int,
        stat: FileStat,
        shared: SharedFile | None = None,
    ) -> None:
        super().__init__(segments, stat)
        self._fd = fd
        self._shared = shared

    def fileno(self) -> int:
        """The open descriptor (for ``os.sendfile`` / ``os.pread``)."""
        if self._closed:
            raise ValueError("I/O operation on closed file")
        return self._fd

    def _segment(self, offset: int, length: int) -> Segment:
        return FileSlice(self, offset, length)

    def _close(self) -> None:
        fd, self._fd = self._fd, -1
        shared, self._shared = self._shared, None
        if shared is None:
            os.close(fd)
        else:
            shared.release()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True) and getattr(self, "_fd", -1) >= 0:
            self.close()


class LocalStorage(Storage):
    """Files under ``base`` on the local filesystem.

    Symlinks are followed only while their target stays inside ``base``; anything
    resolving inside one of the ``hidden`` directories (e.g. the server's state dir)
    behaves as if it did not exist.  With ``open_files``, descriptors of files opened on
    their plain path are kept there and reused, revalidated on every use (see
    :mod:`slipstream.openfiles`; several layers may share one cache).
    """

    name = "OsFs"

    def __init__(
        self,
        base: str | os.PathLike[str],
        *,
        hidden: Sequence[str | os.PathLike[str]] = (),
        open_files: OpenFileCache | None = None,
    ) -> None:
        real_base = os.path.realpath(os.fspath(base))
        if not os.path.isdir(real_base):
            raise NotADirectoryError(errno.ENOTDIR, "storage base is not a directory", base)
        self._base = real_base
        self._prefix = real_base.rstrip(os.sep) + os.sep
        self._hidden = tuple(os.path.realpath(os.fspath(h)) for h in hidden)
        self._open_files = open_files

    @property
    def base(self) -> str:
        """The resolved base directory."""
        return self._base

    def open(self, user_path: str) -> OpenFile:
        segments = safe_relative_path(user_path)
        cache = self._open_files
        plain = self._prefix + "/".join(segments) if _HAVE_PROC_FD and segments else None
        if cache is not None and plain is not None:
            kept = cache.reuse(plain)
            if kept is not None:
                shared, st = kept
                return LocalOpenFile(segments, shared.fd, FileStat.from_stat_result(st), shared)
        fd = self._open_fast(plain) if plain is not None else None
        if fd is None:
            plain = None  # opened through the careful path: not a cache entry
            segments, real = self._resolve(user_path)
            if not segments:
                raise IsADirectory(user_path)
            try:
                fd = os.open(real, _OPEN_FLAGS)
            except OSError as exc:
                raise _open_error(exc, user_path) from None
        try:
            st = os.fstat(fd)
            self._check_opened(fd, user_path)
            if stat_mod.S_ISDIR(st.st_mode):
                raise IsADirectory(user_path)
            if not stat_mod.S_ISREG(st.st_mode):
                raise NotARegularFile()
            if st.st_mode & 0o444 == 0:
                raise FileNotReadable()  # root ignores permissions; honour the bits anyway
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        held = cache.keep(plain, fd, st) if cache is not None and plain is not None else None
        return LocalOpenFile(segments, fd, FileStat.from_stat_result(st), held)

    def list_dir(self, user_path: str) -> list[DirEntry]:
        if user_path in ("", "."):
            real = self._base
        else:
            _, real = self._resolve(user_path)
        try:
            with os.scandir(real) as it:
                found = list(it)
        except OSError as exc:
            raise _listing_error(exc, user_path) from None
        entries = [e for e in (self._dir_entry(entry) for entry in found) if e is not None]
        entries.sort(key=lambda e: e.name)
        return entries

    def list_dir_page(
        self, user_path: str, after: str | None, limit: int
    ) -> tuple[list[DirEntry], bool]:
        """The first ``limit`` entries of :meth:`list_dir` whose names sort after
        ``after`` (None: from the first), and whether more follow.

        The same entries as slicing :meth:`list_dir`, but only the names are sorted:
        an entry is examined (``realpath``, ``stat``) only when its page needs it, so a
        page of a folder of 10,000 entries costs one directory read, not 10,000 stats.
        """
        real = self._base if user_path in ("", ".") else self._resolve(user_path)[1]
        try:
            names = sorted(os.listdir(real))
        except OSError as exc:
            raise _listing_error(exc, user_path) from None
        start = 0 if after is None else bisect.bisect_right(names, after)
        page: list[DirEntry] = []
        for name in itertools.islice(names, start, None):
            listed = self._named_entry(name, os.path.join(real, name))
            if listed is None:
                continue
            if len(page) == limit:
                return page, True
            page.append(listed)
        return page, False

    def resolve_directory(self, user_path: str) -> str:
        """The real path of directory ``user_path`` (``""`` is the base), checked like
        :meth:`open`; raises ``FileNotFound`` / ``PathNotAllowed`` / ``NotARegularFile``."""
        real = self._base if user_path in ("", "/") else self._resolve(user_path)[1]
        if not os.path.isdir(real):
            raise FileNotFound(user_path) if not os.path.exists(real) else NotARegularFile()
        return real

    def resolve(self, user_path: str) -> tuple[tuple[str, ...], str]:
        """The segments and real path of ``user_path`` (``""`` is the base), checked like
        :meth:`open` (``PathNotAllowed``; ``FileNotFound`` in a hidden folder), whatever
        it is (it may not exist)."""
        if user_path in ("", "/"):
            return (), self._base
        return self._resolve(user_path)

    # -- helpers --------------------------------------------------------------------------

    def _open_fast(self, path: str) -> int | None:
        """Open ``path`` (the base joined with the client's segments) without
        ``realpath`` when nothing on the path is a final symlink.

        The hot path: one ``openat`` instead of an ``lstat`` per component.  Safety
        comes from ``_check_opened`` (the descriptor's real path, from procfs, must be
        inside the base and outside hidden dirs), which ``open`` runs on every
        descriptor.  Any failure returns None, and the careful path decides the error.
        """
        try:
            return os.open(path, _OPEN_FLAGS)
        except OSError:
            return None

    def _resolve(self, user_path: str) -> tuple[tuple[str, ...], str]:
        """Validate and resolve; the real path is inside the base and outside hidden dirs."""
        segments = safe_relative_path(user_path)
        candidate = os.path.join(self._base, *segments)
        try:
            real = os.path.realpath(candidate)
        except (OSError, ValueError):
            raise PathNotAllowed() from None
        self._check_real(real, user_path)
        return segments, real

    def _check_real(self, real: str, user_path: str) -> None:
        if not _is_within(real, self._base):
            raise PathNotAllowed()
        if any(_is_within(real, hidden) for hidden in self._hidden):
            raise FileNotFound(user_path)

    def _check_opened(self, fd: int, user_path: str) -> None:
        """Re-check where the descriptor really points (closes the realpath/open race)."""
        try:
            actual = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return  # no procfs: the realpath check and O_NOFOLLOW still apply
        if actual.startswith("/"):
            self._check_real(actual, user_path)

    def _dir_entry(self, entry: os.DirEntry[str]) -> DirEntry | None:
        """A listing entry, or None for what a client could not download by that name."""
        return self._named_entry(entry.name, entry.path)

    def _named_entry(self, name: str, path: str) -> DirEntry | None:
        """The listing entry of ``name`` at ``path``, or None (see :meth:`_dir_entry`)."""
        try:
            if safe_relative_path(name) != (name,) or is_part_file(name):
                return None  # (a running download's .part file is not a file yet)
            real = os.path.realpath(path)
            if not _is_within(real, self._base):
                return None
            if any(_is_within(real, hidden) for hidden in self._hidden):
                return None
            st = os.stat(real)
        except (OSError, ValueError, PathNotAllowed):
            return None
        if stat_mod.S_ISDIR(st.st_mode):
            return DirEntry(name, True, 0, st.st_mtime_ns)
        if stat_mod.S_ISREG(st.st_mode):
            return DirEntry(name, False, st.st_size, st.st_mtime_ns)
        return None


_HAVE_PROC_FD = os.path.isdir("/proc/self/fd")
"""Without procfs ``_check_opened`` cannot verify a descriptor, so every open resolves first."""


def _is_within(path: str, directory: str) -> bool:
    """``path`` is ``directory`` or below it (both absolute and normalised)."""
    if path == directory:
        return True
    prefix = directory if directory.endswith(os.sep) else directory + os.sep
    return path.startswith(prefix)


def _listing_error(exc: OSError, user_path: str) -> Exception:
    """Map a failure to read directory ``user_path`` to the client-facing error."""
    if isinstance(exc, FileNotFoundError | NotADirectoryError):
        return FileNotFound(user_path)
    if isinstance(exc, PermissionError):
        return FileNotReadable()
    return InternalError(f"failed to read directory: {exc.strerror}")


def _open_error(exc: OSError, user_path: str) -> Exception:
    """Map an ``os.open`` failure to the client-facing error."""
    code = exc.errno
    if code in (errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG):
        return FileNotFound(user_path)
    if code in (errno.EACCES, errno.EPERM):
        return FileNotReadable()
    if code == errno.ELOOP:
        return PathNotAllowed()  # a symlink swapped in after resolution
    if code in (errno.ENXIO, errno.ENODEV, errno.EOPNOTSUPP):
        return NotARegularFile()  # sockets, absent devices
    if code == errno.EISDIR:
        return IsADirectory(user_path)
    return InternalError(f"failed to open file: {os.strerror(code) if code else exc}")


# --- in memory ---------------------------------------------------------------------------

_inodes = itertools.count(1)


@dataclass(frozen=True, slots=True)
class _MemFile:
    data: bytes
    stat: FileStat


class MemoryOpenFile(OpenFile):
    """An in-memory file; its segments are zero-copy :class:`Literal` views."""

    def __init__(self, segments: tuple[str, ...], data: bytes, stat: FileStat) -> None:
        super().__init__(segments, stat)
        self._data = data

    def _segment(self, offset: int, length: int) -> Segment:
        return Literal(memoryview(self._data)[offset : offset + length])


class MemoryStorage(Storage):
    """Files held in a dict (tests, generated content).  Directories are implicit."""

    name = "MemFs"
    _DEV = 0

    def __init__(self) -> None:
        self._files: dict[tuple[str, ...], _MemFile] = {}

    def put(self, path: str, data: bytes, *, mtime_ns: int | None = None) -> None:
        """Store ``data`` at ``path`` (replacing any file there); new inode each time."""
        segments = safe_relative_path(path)
        if not segments:
            raise ValueError("cannot put a file at the root")
        for i in range(1, len(segments)):
            if segments[:i] in self._files:
                raise ValueError(f"{'/'.join(segments[:i])} is a file, not a directory")
        if self._is_dir(segments):
            raise ValueError(f"{path} is a directory")
        blob = bytes(data)
        stat = FileStat(
            size=len(blob),
            mtime_ns=time.time_ns() if mtime_ns is None else mtime_ns,
            dev=self._DEV,
            ino=next(_inodes),
        )
        self._files[segments] = _MemFile(blob, stat)

    def delete(self, path: str) -> None:
        """Remove the file at ``path`` (FileNotFound if there is none)."""
        segments = safe_relative_path(path)
        if self._files.pop(segments, None) is None:
            raise FileNotFound(path)

    def open(self, user_path: str) -> OpenFile:
        segments = safe_relative_path(user_path)
        found = self._files.get(segments)
        if found is not None:
            return MemoryOpenFile(segments, found.data, found.stat)
        if not segments or self._is_dir(segments):
            raise IsADirectory(user_path)
        raise FileNotFound(user_path)

    def list_dir(self, user_path: str) -> list[DirEntry]:
        segments = () if user_path in ("", ".") else safe_relative_path(user_path)
        if segments in self._files or (segments and not self._is_dir(segments)):
            raise FileNotFound(user_path)
        depth = len(segments)
        files: dict[str, DirEntry] = {}
        dirs: dict[str, int] = {}
        for key, mem in self._files.items():
            if len(key) <= depth or key[:depth] != segments:
                continue
            child = key[depth]
            if len(key) == depth + 1:
                files[child] = DirEntry(child, False, mem.stat.size, mem.stat.mtime_ns)
            else:
                dirs[child] = max(dirs.get(child, 0), mem.stat.mtime_ns)
        entries = list(files.values()) + [DirEntry(n, True, 0, m) for n, m in dirs.items()]
        entries.sort(key=lambda e: e.name)
        return entries

    def _is_dir(self, segments: tuple[str, ...]) -> bool:
        depth = len(segments)
        return any(len(k) > depth and k[:depth] == segments for k in self._files)


# --- registry ----------------------------------------------------------------------------


class StorageRegistry:
    """Maps ``fstype`` query values to layers; a missing/empty value picks the default."""

    def __init__(self, layers: Mapping[str, Storage], default: str = "OsFs") -> None:
        if default not in layers:
            raise ValueError(f"default file system {default!r} is not among the layers")
        self._layers = dict(layers)
        self.default = default

    @property
    def names(self) -> tuple[str, ...]:
        """The registered ``fstype`` values."""
        return tuple(self._layers)

    def get(self, fstype: str | None) -> Storage:
        """The layer for ``fstype``, or :class:`FileSystemUnavailable` if unknown."""
        if not fstype:
            return self._layers[self.default]
        layer = self._layers.get(fstype)
        if layer is None:
            raise FileSystemUnavailable(f"unknown file system {fstype!r}")
        return layer
