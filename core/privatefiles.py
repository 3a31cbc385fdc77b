"""Owner-only files: the server's state dir (0700) and the SQLite databases in it (0600).

``mkdir(mode=0o700)`` does nothing to a directory that already exists, and SQLite
creates its ``-wal``, ``-shm`` and ``-journal`` files with the permissions of the main
database file, which ``sqlite3.connect`` creates through the process umask (0644 under
the usual 022).  So the database file is created here, 0600, before it is connected
to, and anything that already exists with group or other bits is tightened.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

__all__ = ["DIR_MODE", "FILE_MODE", "SQLITE_SIDECARS", "private_dir", "private_sqlite"]

DIR_MODE = 0o700
FILE_MODE = 0o600
SQLITE_SIDECARS = ("-wal", "-shm", "-journal")
"""Suffixes of the files SQLite keeps next to a database."""


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create directory ``path`` (and missing parents) readable by its owner only.

    An existing directory loses every permission bit outside 0700, and the regular
    files directly in it every bit outside 0600 (symlinks and subdirectories are left
    alone: their targets may be someone else's).  Returns ``path`` as a Path; raises
    ``OSError`` when the directory cannot be created or tightened.
    """
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    _tighten(directory, DIR_MODE, stat.S_ISDIR)
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                _tighten(entry.path, FILE_MODE, stat.S_ISREG)
    return directory


def private_sqlite(path: str | os.PathLike[str]) -> None:
    """Make ``path`` a database file only its owner can read, before ``sqlite3.connect``.

    Creates the parent directory (0700) and an empty database file (0600) when missing,
    so SQLite's own files inherit 0600; tightens an existing database and its
    ``-wal`` / ``-shm`` / ``-journal`` files to 0600.  ``":memory:"`` and ``""`` (SQLite's
    private databases) are left alone, as is a database path that is a symlink.
    """
    name = os.fspath(path)
    if name in ("", ":memory:"):
        return
    os.makedirs(os.path.dirname(os.path.abspath(name)), mode=DIR_MODE, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with contextlib.suppress(FileExistsError):  # an existing one is tightened below
        os.close(os.open(name, flags, FILE_MODE))
    for file in (name, *(name + suffix for suffix in SQLITE_SIDECARS)):
        _tighten(file, FILE_MODE, stat.S_ISREG)


def _tighten(path: str | os.PathLike[str], keep: int, kind: Callable[[int], bool]) -> None:
    """Clear the permission bits of ``path`` outside ``keep`` if it is of ``kind``
    (``lstat``: a symlink is never followed).  A missing path is fine."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    mode = stat.S_IMODE(info.st_mode)
    if kind(info.st_mode) and mode & ~keep:
        os.chmod(path, mode & keep)
