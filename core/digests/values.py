"""The value types of the digests: a file version (:class:`FileKey`), every checksum of
it (:class:`Digests`) and the error for a file that changed (:class:`FileChanged`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slipstream.ext import ALGORITHMS

__all__ = ["CRC_WIDTHS", "Digests", "FileChanged", "FileKey"]

CRC_WIDTHS: dict[str, int] = {"crc32": 32, "crc32c": 32, "crc64xz": 64, "crc64nvme": 64}
"""Bit width of every CRC value in :class:`Digests` (the others are byte strings)."""


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
    """Every checksum of one file version: CRCs as ints, hashes as bytes."""

    size: int
    crc32: int
    crc32c: int
    crc64xz: int
    crc64nvme: int
    sha1: bytes
    sha256: bytes
    xxh3_128: bytes

    @classmethod
    def from_values(cls, size: int, values: dict[str, int | bytes]) -> Digests:
        """Build from a ``MultiDigest.digest()`` result covering every algorithm."""
        crcs: dict[str, int] = {}
        hashes: dict[str, bytes] = {}
        for name in ALGORITHMS:
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
            sha256=hashes["sha256"],
            xxh3_128=hashes["xxh3_128"],
        )

    def raw(self, name: str) -> bytes:
        """The value as bytes: CRCs big-endian at their full width (as in HTTP headers)."""
        value = self._value(name)
        if isinstance(value, int):
            return value.to_bytes(CRC_WIDTHS[name] // 8, "big")
        return value

    def hex(self, name: str) -> str:
        """The value as lower-case hex; CRCs zero-padded to their width."""
        return self.raw(name).hex()

    def as_dict(self) -> dict[str, str | int]:
        """``{"size": int, <algorithm>: hex, ...}`` in :data:`ALGORITHMS` order (for JSON)."""
        out: dict[str, str | int] = {"size": self.size}
        for name in ALGORITHMS:
            out[name] = self.hex(name)
        return out

    def _value(self, name: str) -> int | bytes:
        if name not in ALGORITHMS:
            raise KeyError(f"unknown digest {name!r}; expected one of {ALGORITHMS}")
        value: int | bytes = getattr(self, name)
        return value
