"""The SQLite stores of the state dir: checked when opened, migrated, set aside when damaged.

Every store has a :class:`Schema`: its name, whether it is a *cache* (derivable from the
files it describes, like the digest cache) or a *record* (download jobs, zip manifests:
nothing else knows them), and its migrations.  The schema version is SQLite's
``PRAGMA user_version``: ``migrations[i]`` takes a store from version ``i`` to ``i + 1``
in one transaction, so a crash mid-migration leaves the old version, and version 0 is a
new (or pre-versioning) file.

:func:`examine` says what is wrong with a store without changing it: not a regular file,
a damaged header, a failed ``PRAGMA quick_check`` (``integrity_check`` when asked for the
full check), an error while reading it, or a schema newer than this program knows.
:func:`open_store` acts on that answer:

* a damaged *cache* is moved aside (:func:`set_aside`: ``NAME.corrupt-<UTC time>``, with
  its ``-wal``/``-shm``), one warning is logged, and an empty store takes its place;
* a damaged *record* raises :class:`StateDamaged`, whose message is one line naming the
  file, what is wrong, and the way out.  Records are never discarded silently.

The token and the URL secret are records too, one line of text each
(:func:`load_or_create_secret`): written once, atomically, and refused when damaged.

A new store is built under a temporary name and linked into place once its schema is
written, so a crash while creating one never leaves an empty or half-made file where the
store belongs.  Stores run in WAL mode with ``synchronous=NORMAL``: a commit is atomic
and a crash of the process never loses one; a power cut may lose the last commits not yet
checkpointed, never the consistency of the file.  No trio here.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import logging
import os
import shlex
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .privatefiles import FILE_MODE, SQLITE_SIDECARS, private_sqlite

__all__ = [
    "SECRET_FILES",
    "Health",
    "Kind",
    "Schema",
    "StateDamaged",
    "busy",
    "connect_store",
    "examine",
    "examine_secret",
    "load_or_create_secret",
    "open_store",
    "quarantine_command",
    "set_aside",
    "state_lock",
]

log = logging.getLogger("slipstream.state")

SQLITE_MAGIC = b"SQLite format 3\0"


class Kind(enum.Enum):
    """What losing a store costs: a cache is rebuilt, a record is gone."""

    CACHE = "cache"
    RECORD = "record"


@dataclass(frozen=True, slots=True)
class Schema:
    """A store's layout: ``migrations[i]`` holds the statements from version i to i + 1."""

    name: str
    """The file name in the state dir (``downloads.sqlite3``)."""
    kind: Kind
    migrations: tuple[tuple[str, ...], ...]

    @property
    def version(self) -> int:
        """The schema version this program writes."""
        return len(self.migrations)


class StateDamaged(Exception):
    """A store or state file that cannot be used as it is (one line: file, problem, way out)."""

    def __init__(self, path: str | os.PathLike[str], problem: str, way_out: str) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        self.way_out = way_out
        super().__init__(f"{self.path} {problem}; {way_out}")


@dataclass(frozen=True, slots=True)
class Health:
    """What :func:`examine` found: ``problem`` is None for a usable store."""

    path: str
    exists: bool
    problem: str | None
    version: int | None
    """The schema version read from the file (None when it could not be read)."""


def examine(
    path: str | os.PathLike[str], schema: Schema, *, full: bool = False, timeout: float = 5.0
) -> Health:
    """Check ``path`` as a store of ``schema`` without changing what it holds.

    ``full`` runs ``PRAGMA integrity_check`` (every page and index) instead of
    ``quick_check``.  A missing file is healthy (it is created when opened).  A store
    another process keeps locked past ``timeout`` seconds is not damaged: that
    ``sqlite3.OperationalError`` (:func:`busy`) is raised.
    """
    name = os.fspath(path)
    try:
        info = os.stat(name)
    except FileNotFoundError:
        return Health(name, False, None, None)
    except OSError as exc:
        return Health(name, True, f"cannot be read ({exc.strerror or exc})", None)
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        return Health(name, True, f"is {kind}, not a SQLite database", None)
    if info.st_size == 0:
        return Health(name, True, "is empty (zero bytes), not a SQLite database", None)
    try:
        with open(name, "rb") as handle:
            header = handle.read(len(SQLITE_MAGIC))
    except OSError as exc:
        return Health(name, True, f"cannot be read ({exc.strerror or exc})", None)
    if header != SQLITE_MAGIC:
        return Health(name, True, "is not a SQLite database (its header is damaged)", None)
    version: int | None = None
    try:
        db = sqlite3.connect(name, timeout=timeout, isolation_level=None)
        try:
            db.execute("PRAGMA query_only=1")
            (version,) = db.execute("PRAGMA user_version").fetchone()
            check = "integrity_check" if full else "quick_check"
            rows = db.execute(f"PRAGMA {check}(5)").fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        if busy(exc):  # in use by another process, not damaged: the caller's failure
            raise
        return Health(name, True, f"is damaged ({_first_line(exc)})", version)
    found = [str(row[0]) for row in rows]
    if found != ["ok"]:
        return Health(name, True, f"fails its integrity check ({_first_line(found[0])})", version)
    if version is not None and version > schema.version:
        problem = (
            f"was written by a newer slipstream (schema version {version}; "
            f"this one knows up to {schema.version})"
        )
        return Health(name, True, problem, version)
    return Health(name, True, None, version)


def set_aside(path: str | os.PathLike[str]) -> Path:
    """Rename ``path`` (and its SQLite sidecars) to ``PATH.corrupt-<UTC time>``; the new name."""
    name = os.fspath(path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = f"{name}.corrupt-{stamp}"
    serial = 1
    while os.path.lexists(aside):
        serial += 1
        aside = f"{name}.corrupt-{stamp}-{serial}"
    os.rename(name, aside)
    for suffix in SQLITE_SIDECARS:
        with contextlib.suppress(FileNotFoundError):
            os.rename(name + suffix, aside + suffix)
    return Path(aside)


def quarantine_command(path: str | os.PathLike[str]) -> str:
    """The command that moves the store at ``path`` aside (for messages)."""
    name = os.fspath(path)
    directory = shlex.quote(os.path.dirname(os.path.abspath(name)))
    store = os.path.basename(name).removesuffix(".sqlite3")
    return f"slipstream state quarantine {store} --state-dir {directory}"


def way_out(path: str | os.PathLike[str]) -> str:
    """What an operator can do about a damaged record store (the end of its one line)."""
    return (
        "its records are not discarded: restore it from a backup, or run "
        f"`{quarantine_command(path)}` to move it aside and start with an empty one"
    )


def open_store(
    path: str | os.PathLike[str], schema: Schema, *, timeout: float = 5.0
) -> sqlite3.Connection:
    """A connection to the store at ``path`` (created when missing), checked and migrated.

    WAL mode, ``synchronous=NORMAL``, autocommit (``isolation_level=None``), usable from
    any thread (``check_same_thread=False``; the caller serialises).  A damaged cache is
    set aside and replaced by an empty one; a damaged record raises :class:`StateDamaged`.
    ``":memory:"`` gives a private in-memory store.
    """
    name = os.fspath(path)
    if name == ":memory:":
        db = _connect(name, timeout)
        _migrate(db, schema)
        return db
    health = examine(name, schema)
    if health.problem is not None:
        if schema.kind is Kind.RECORD:
            raise StateDamaged(name, health.problem, way_out(name))
        aside = set_aside(name)
        log.warning(
            "%s %s: moved it aside to %s; starting with an empty cache, rebuilt as files are used",
            name,
            health.problem,
            aside.name,
        )
    _remove_stale_temporaries(name)
    if not os.path.lexists(name):
        _set_orphans_aside(name)
        _create(name, schema, timeout)
    private_sqlite(name)  # an existing store and its sidecars: 0600
    return connect_store(name, schema, timeout=timeout)


def connect_store(
    path: str | os.PathLike[str], schema: Schema, *, timeout: float = 5.0
) -> sqlite3.Connection:
    """Connect to an existing store and migrate it (no check: :func:`open_store` checks)."""
    db = _connect(os.fspath(path), timeout)
    try:
        _migrate(db, schema)
    except BaseException:
        db.close()
        raise
    return db


def _connect(name: str, timeout: float) -> sqlite3.Connection:
    db = sqlite3.connect(name, timeout=timeout, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        db.close()
        raise
    return db


def _migrate(db: sqlite3.Connection, schema: Schema) -> None:
    """Bring the store to ``schema.version``, one version per transaction."""
    while True:
        db.execute("BEGIN IMMEDIATE")
        try:
            (version,) = db.execute("PRAGMA user_version").fetchone()
            if version >= schema.version:
                db.execute("COMMIT")
                if version > schema.version:  # written by a newer program meanwhile
                    raise sqlite3.DatabaseError(f"schema version {version} is newer")
                return
            for statement in schema.migrations[version]:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {version + 1}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise


def _create(name: str, schema: Schema, timeout: float) -> None:
    """Build a new store beside ``name`` and link it into place (never over another)."""
    directory = os.path.dirname(os.path.abspath(name))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    temporary = f"{name}.new-{os.getpid()}"
    _remove_store(temporary)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    os.close(os.open(temporary, flags, FILE_MODE))
    try:
        db = _connect(temporary, timeout)
        try:
            _migrate(db, schema)
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            db.close()
        fd = os.open(temporary, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        with contextlib.suppress(FileExistsError):  # another process created it first
            os.link(temporary, name)
        _sync_directory(directory)
    finally:
        _remove_store(temporary)


SECRET_FILES = {
    "token": "clients must then be given the new access token",
    "secret": "presigned URLs issued before stop working",
}
"""The one-line state files, and what making a new one costs."""

_SECRET_MAX = 1024


def examine_secret(path: str | os.PathLike[str]) -> tuple[str | None, str | None]:
    """``(value, problem)`` of a token or secret file: the value when it is usable,
    else what is wrong (both None when the file does not exist).

    The file is one line of printable ASCII ending with a newline, as
    :func:`load_or_create_secret` writes it; without the newline it was cut short.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read(_SECRET_MAX + 2)
    except FileNotFoundError:
        return None, None
    except IsADirectoryError:
        return None, "is a directory, not a file holding one line"
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or exc})"
    text = data.strip(b" \t\r\n")
    if not text:
        return None, "is empty"
    if len(text) > _SECRET_MAX or any(not 0x21 <= byte <= 0x7E for byte in text):
        return None, "is damaged (not one line of printable ASCII)"
    if not data.endswith(b"\n"):  # written with its newline: a cut one lost the end
        return None, "is truncated (its line has no newline at the end)"
    return text.decode("ascii"), None


def load_or_create_secret(path: str | os.PathLike[str], make: Callable[[], str]) -> str:
    """The value kept in ``path`` (``token``, ``secret``); ``make()`` it on first start.

    A new value is written under a temporary name, synced and linked into place, so a
    crash never leaves an empty file.  A damaged file raises :class:`StateDamaged`:
    a new value would lock out whoever holds the old one, so that is the operator's call.
    """
    name = os.fspath(path)
    _remove_stale_temporaries(name)
    value, problem = examine_secret(name)
    if problem is not None:
        cost = SECRET_FILES.get(os.path.basename(name), "whoever holds the old value loses it")
        out = (
            f"restore it from a backup, or run `{quarantine_command(name)}` "
            f"to move it aside and make a new one ({cost})"
        )
        raise StateDamaged(name, problem, out)
    if value is not None:
        return value
    value = make()
    temporary = f"{name}.new-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temporary, flags, FILE_MODE)
    try:
        os.write(fd, (value + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temporary, name)
    except FileExistsError:  # another process made one first: use that
        value, problem = examine_secret(name)
        if value is None:
            raise StateDamaged(name, problem or "vanished", "start again") from None
    finally:
        os.unlink(temporary)
    _sync_directory(os.path.dirname(os.path.abspath(name)))
    return value


LOCK_FILE = "lock"
"""The file :func:`state_lock` locks in the state dir (empty; kept)."""


@contextlib.contextmanager
def state_lock(directory: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on the state dir for the block (``flock`` on its ``lock``
    file; the kernel drops it when the holder dies).

    What several processes of one server do once at start (create the token and the
    secret, check and migrate the stores) runs under it, so a value is created once and
    one process checks a store while the others wait.
    """
    path = os.path.join(os.fspath(directory), LOCK_FILE)
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def busy(exc: BaseException) -> bool:
    """True for SQLite's "busy" or "locked" (another connection holds a lock)."""
    code = getattr(exc, "sqlite_errorname", "")
    return isinstance(code, str) and code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))


def _set_orphans_aside(name: str) -> None:
    """Move aside a ``-wal``/``-shm``/``-journal`` whose database file is gone: SQLite
    would apply an old write-ahead log to the new, empty store."""
    for suffix in SQLITE_SIDECARS:
        if os.path.lexists(name + suffix):
            aside = set_aside(name + suffix)
            log.warning(
                "%s%s has no database beside it: moved it aside to %s", name, suffix, aside.name
            )


def _remove_stale_temporaries(name: str) -> None:
    """Delete the ``NAME.new-<pid>`` files (and sidecars) of creators that died before
    linking them into place (a SIGKILL mid-creation); a live process's are left alone."""
    prefix = f"{os.path.basename(name)}.new-"
    try:
        entries = os.listdir(os.path.dirname(os.path.abspath(name)))
    except OSError:
        return
    for entry in entries:
        if not entry.startswith(prefix):
            continue
        pid = entry[len(prefix) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(os.path.dirname(os.path.abspath(name)), entry))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _remove_store(name: str) -> None:
    for file in (name, *(name + suffix for suffix in SQLITE_SIDECARS)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(file)


def _sync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _first_line(value: object) -> str:
    text = " ".join(str(value).split())
    return text[:200]
