"""Ways a store file gets damaged (a crash, a bad disk, an older or newer program)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path


def random_header(path: Path) -> None:
    """Random bytes over the first 4 KiB (the SQLite header and more)."""
    with path.open("r+b") as handle:
        handle.write(os.urandom(min(4096, path.stat().st_size)))


def truncated(path: Path) -> None:
    """Only the first half of the file is left."""
    os.truncate(path, path.stat().st_size // 2)


def zero_length(path: Path) -> None:
    os.truncate(path, 0)


def directory(path: Path) -> None:
    """A directory where the file belongs."""
    path.unlink()
    path.mkdir()


def newer_schema(path: Path) -> None:
    """A store as a newer slipstream (schema version 99) leaves it."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()


DAMAGES: dict[str, Callable[[Path], None]] = {
    "random header": random_header,
    "truncated": truncated,
    "zero length": zero_length,
    "directory": directory,
    "newer schema": newer_schema,
}
