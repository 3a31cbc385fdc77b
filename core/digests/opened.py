"""Digests of an opened file: the one helper every caller uses, with an explicit policy
for a file that changes while it is hashed.

The digest cache (:class:`~slipstream.digests.DigestCache`) hashes a descriptor only
if the file still has the version (:class:`~slipstream.digests.FileKey`) it was opened
with, before and after the read, and raises :class:`~slipstream.digests.FileChanged`
otherwise.  What a caller does then is its own documented outcome, chosen here by
:class:`OnChange`:

* ``NONE``: go on without digests (a file reply leaves out its integrity headers);
* ``FAIL``: raise ``FileChanged`` for the caller to report (websocket type 7 answers
  status 6, a local zip refuses the reply with 503);
* ``RETRY``: open the file again and hash the new version, :data:`RETRY_ATTEMPTS`
  times in all, then raise ``FileChanged`` (the drive API answers 503
  ``ServiceUnavailable.FileBusy``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from typing import Final, Literal, Protocol, TypeVar, overload

from .cache import DigestCache
from .values import Digests, FileChanged, FileKey

__all__ = ["RETRY_ATTEMPTS", "HashableFile", "OnChange", "opened_file_digests"]

RETRY_ATTEMPTS: Final = 3
"""Versions of a file ``OnChange.RETRY`` hashes before it gives up."""


class OnChange(enum.Enum):
    """What :func:`opened_file_digests` does when the file changes while it is hashed."""

    NONE = "none"
    """Answer ``None``: the caller goes on without digests."""
    FAIL = "fail"
    """Raise :class:`~slipstream.digests.FileChanged`."""
    RETRY = "retry"
    """Open the file again (the caller's ``reopen``) and hash that version; raise
    ``FileChanged`` once ``attempts`` versions all changed."""


class HashableFile(Protocol):
    """An opened file: its version (``stat``, as :meth:`FileKey.from_stat` reads it) and
    ``close()``; it is hashed through its ``fileno()`` when it has one."""

    @property
    def stat(self) -> object:
        """The metadata taken from the open descriptor."""
        ...

    def close(self) -> None:
        """Release the file."""
        ...


F = TypeVar("F", bound=HashableFile)


@overload
async def opened_file_digests(
    cache: DigestCache,
    opened: F,
    *,
    on_change: Literal[OnChange.NONE],
    need: Iterable[str] = (),
) -> tuple[F, Digests | None]: ...


@overload
async def opened_file_digests(
    cache: DigestCache,
    opened: F,
    *,
    on_change: Literal[OnChange.FAIL],
    need: Iterable[str] = (),
) -> tuple[F, Digests]: ...


@overload
async def opened_file_digests(
    cache: DigestCache,
    opened: F,
    *,
    on_change: Literal[OnChange.RETRY],
    reopen: Callable[[], F],
    attempts: int = RETRY_ATTEMPTS,
    need: Iterable[str] = (),
) -> tuple[F, Digests]: ...


async def opened_file_digests(
    cache: DigestCache,
    opened: F,
    *,
    on_change: OnChange,
    reopen: Callable[[], F] | None = None,
    attempts: int = RETRY_ATTEMPTS,
    need: Iterable[str] = (),
) -> tuple[F, Digests | None]:
    """``(file, digests)``: the digests of ``opened``, cached or hashed now (in a worker
    thread, see :meth:`DigestCache.get`), and the file they belong to.

    The file is ``opened`` except after a ``RETRY``: then every version found changed
    has been closed and the file returned is the one ``reopen()`` gave last (the caller
    closes it).  With ``RETRY`` the helper owns ``opened`` from the call on: if it
    raises, the file it holds has been closed.  With ``NONE`` and ``FAIL`` it never
    closes anything.

    A file without a descriptor (an in-memory layer) has no digests: ``None`` under
    ``NONE``, ``TypeError`` otherwise.  ``need`` names on-demand algorithms the caller
    uses (``("sha1",)``), computed if the cached row lacks them (:meth:`DigestCache.get`).
    """
    need = tuple(need)
    if on_change is OnChange.RETRY and (reopen is None or attempts < 1):
        raise ValueError("OnChange.RETRY needs reopen and attempts >= 1")
    current = opened
    attempt = 1
    try:
        while True:
            fileno = getattr(current, "fileno", None)
            if fileno is None:
                if on_change is OnChange.NONE:
                    return current, None
                raise TypeError(f"{current!r} has no file descriptor to hash")
            try:
                key = FileKey.from_stat(current.stat)
                return current, await cache.get(key, fileno(), need=need)
            except FileChanged:
                if on_change is OnChange.NONE:
                    return current, None
                if on_change is OnChange.FAIL or attempt >= attempts:
                    raise
            assert reopen is not None
            current.close()
            current = reopen()
            attempt += 1
    except BaseException:
        if on_change is OnChange.RETRY:
            current.close()
        raise
