"""What a job may do before it runs: :class:`JobSettings` (where jobs write, their
limits) and the sans-IO checks of a start request, refused with :class:`JobRefused`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from slipstream.errors import SlipstreamError
from slipstream.pathsafety import safe_relative_path

__all__ = ["MAX_TIMEOUT", "JobRefused", "JobSettings", "check_start"]

MAX_TIMEOUT: Final = 86_400 * 7
"""Largest ``timeout`` a start request may ask for, in seconds (a week)."""
_SHA256: Final = re.compile(r"[0-9a-fA-F]{64}")


class JobRefused(SlipstreamError):
    """A start request refused before any work: the seed-001 ``key`` (its ``code``) and
    the HTTP ``status`` to answer."""

    def __init__(self, key: str, status: int, message: str) -> None:
        super().__init__(message, code=key, status=status)

    @property
    def key(self) -> str:
        """The seed's error key (the same as ``code``)."""
        return self.code


@dataclass(slots=True)
class JobSettings:
    """Where jobs write and the limits they run under."""

    root: Path
    hidden: tuple[Path, ...] = ()
    """Directories inside ``root`` never written to (the state dir)."""
    max_concurrent: int = 8
    max_fetch_size: int | None = None
    default_timeout: float = 300.0
    progress_interval: float = 0.25
    """Least seconds between two progress events of one job (4 a second)."""
    store_retry: float = 5.0
    """Seconds between attempts to write job records the store refused (disk full)."""


def check_start(directory: str, timeout: float | None, sha256: str | None) -> str:
    """The target folder of a start request (``""`` for the root), once its fields pass.

    Raises ``PathNotAllowed`` for a directory outside the rules of
    :func:`~slipstream.pathsafety.safe_relative_path`, :class:`JobRefused` for a
    ``sha256`` that is not 64 hexadecimal digits or a ``timeout`` outside
    ``(0, MAX_TIMEOUT]``.
    """
    folder = "/".join(safe_relative_path(directory)) if directory not in ("", "/") else ""
    if sha256 is not None and not _SHA256.fullmatch(sha256):
        raise JobRefused("INVALID_SHA256", 400, "sha256 must be 64 hexadecimal digits")
    if timeout is not None and not 0 < timeout <= MAX_TIMEOUT:
        raise JobRefused("INVALID_TIMEOUT", 400, "timeout must be 1 to 604800 seconds")
    return folder
