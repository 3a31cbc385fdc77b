"""The value types of the digests: a file version (:class:`FileKey`), every checksum of
it (:class:`Digests`) and the error for a file that changed (:class:`FileChanged`).

A :class:`Digests` may lack the algorithms in :data:`ON_DEMAND` (``None``): SHA-1 only
serves the drive API's ``content_hash``, so a remote-download job leaves it out of its
inline hashing, and the digest cache computes it when it is first asked for."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from slipstream.ext import ALGORITHMS

__all__ = ["CRC_WIDTHS", "ON_DEMAND", "Digests", "FileChanged", "FileKey"]

CRC_WIDTHS: dict[str, int] = {"crc32": 32, "crc32c": 32, "crc64xz": 64, "crc64nvme": 64}
"""Bit width of every CRC value in :class:`Digests` (the others are byte strings)."""

ON_DEMAND: tuple[str, ...] = ("sha1",)
"""Algorithms a :class:`Digests` may lack (computed when first needed)."""


class FileChanged(Exception):
    """The file changed (size, mtime, or identity) before or while it was being hashed."""


@dataclass(frozen=True, slots=True)
class FileKey:
    """One version of one file: the cache key.  Any change to the file changes its key."""

    dev: int
    ino: int
    size: int
    mtime_ns: int

    @classmethod
    def from_stat(cls, st: Any) -> FileKey:
        """Build from an ``os.stat_result`` (``st_*`` attributes) or a ``FileStat``.

        Anything with ``st_dev``/``st_ino``/``st_size``/``st_mtime_ns`` or with
        ``dev``/``ino``/``size``/``mtime_ns`` attributes is accepted.
        """
        if hasattr(st, "st_ino"):
            return cls(int(st.st_dev), int(st.st_ino), int(st.st_size), int(st.st_mtime_ns))
        return cls(int(st.dev), int(st.ino), int(st.size), int(st.mtime_ns))


@dataclass(frozen=True, slots=True)
class Digests:
    """Every checksum of one file version: CRCs as ints, hashes as bytes; ``sha1`` is
    None until computed (see :data:`ON_DEMAND`)."""

    size: int
    crc32: int
    crc32c: int
    crc64xz: int
    crc64nvme: int
    sha1: bytes | None
    sha256: bytes
    xxh3_128: bytes

    @classmethod
    def from_values(cls, size: int, values: dict[str, int | bytes]) -> Digests:
        """Build from a ``MultiDigest.digest()`` result covering every algorithm (those
        in :data:`ON_DEMAND` may be missing)."""
        crcs: dict[str, int] = {}
        hashes: dict[str, bytes | None] = {}
        for name in ALGORITHMS:
            if name in ON_DEMAND and name not in values:
                hashes[name] = None
                continue
            value = values[name]
            if name in CRC_WIDTHS:
                if not isinstance(value, int):
                    raise TypeError(f"{name} must be an int, got {type(value).__name__}")
                crcs[name] = value
            else:
                if not isinstance(value, bytes):
                    raise TypeError(f"{name} must be bytes, got {type(value).__name__}")
                hashes[name] = value
        return cls(
            size=size,
            crc32=crcs["crc32"],
            crc32c=crcs["crc32c"],
            crc64xz=crcs["crc64xz"],
            crc64nvme=crcs["crc64nvme"],
            sha1=hashes["sha1"],
            sha256=_present(hashes["sha256"]),
            xxh3_128=_present(hashes["xxh3_128"]),
        )

    @property
    def missing(self) -> tuple[str, ...]:
        """The algorithms not computed yet (a subset of :data:`ON_DEMAND`)."""
        return tuple(name for name in ON_DEMAND if getattr(self, name) is None)

    def values(self) -> dict[str, int | bytes]:
        """The computed values by algorithm (what :meth:`from_values` takes)."""
        out: dict[str, int | bytes] = {}
        for name in ALGORITHMS:
            value = self._value(name)
            if value is not None:
                out[name] = value
        return out

    def has(self, names: Iterable[str]) -> bool:
        """Whether every algorithm of ``names`` is computed."""
        return all(getattr(self, name) is not None for name in names)

    def raw(self, name: str) -> bytes:
        """The value as bytes: CRCs big-endian at their full width (as in HTTP headers).

        ``LookupError`` for an algorithm not computed yet."""
        value = self._value(name)
        if value is None:
            raise LookupError(f"{name} was not computed for this file version")
        if isinstance(value, int):
            return value.to_bytes(CRC_WIDTHS[name] // 8, "big")
        return value

    def hex(self, name: str) -> str:
        """The value as lower-case hex; CRCs zero-padded to their width."""
        return self.raw(name).hex()

    def as_dict(self) -> dict[str, str | int]:
        """``{"size": int, <algorithm>: hex, ...}`` in :data:`ALGORITHMS` order (for JSON);
        an algorithm not computed yet is left out."""
        out: dict[str, str | int] = {"size": self.size}
        for name in ALGORITHMS:
            if self._value(name) is not None:
                out[name] = self.hex(name)
        return out

    def _value(self, name: str) -> int | bytes | None:
        if name not in ALGORITHMS:
            raise KeyError(f"unknown digest {name!r}; expected one of {ALGORITHMS}")
        value: int | bytes | None = getattr(self, name)
        return value


def _present(value: bytes | None) -> bytes:
    if value is None:
        raise TypeError("only the algorithms in ON_DEMAND may be missing")
    return value
