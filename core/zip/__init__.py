"""Zips: deterministic STORED/zip64 archives served with Range, of remote objects or of a
local directory.

Sans-IO (no Trio): ``plan`` (the byte layout of a zip, its pieces and ETag), ``form``
(parsing ``POST /download``), ``errors`` (the error keys and their three reply formats),
``ranges`` (the stream route's Range rules), ``allow`` (the allow list of URI prefixes)
and ``state`` (SQLite: manifests, delivered-byte coverage, the CRC-32 cache); blocking
but without Trio, ``listing`` (a local directory's members), ``localplan`` (their layout
and ETag, and a cache of them) and ``localfiles`` (their bytes and CRCs, read as listed).

With I/O: ``remote`` (probes and ranged member reads), ``crc`` (CRC-32s: cached,
background, or computed on the way), ``ahead`` (member reads opened ahead), ``stream``
(a zip of remote objects streamed while its CRCs arrive), ``service`` (manifests,
request ids, expiry), ``local`` (a local directory's zip, streamed at once) and
``localcrc`` (its CRC-32s).

The names below are imported on first use, so importing a sans-IO module of this
package never imports Trio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slipstream.lazyexports import lazy_exports

if TYPE_CHECKING:
    from .allow import AllowList
    from .errors import ZipError
    from .form import ZipRequest, parse_zip_request
    from .local import local_zip
    from .plan import ZipLayout, ZipMember, plan_zip
    from .service import Manifest, ZipService
    from .state import ZipState
    from .stream import ZipSource

__all__ = [
    "AllowList",
    "Manifest",
    "ZipError",
    "ZipLayout",
    "ZipMember",
    "ZipRequest",
    "ZipService",
    "ZipSource",
    "ZipState",
    "local_zip",
    "parse_zip_request",
    "plan_zip",
]

_SOURCES = {
    "AllowList": "allow",
    "Manifest": "service",
    "ZipError": "errors",
    "ZipLayout": "plan",
    "ZipMember": "plan",
    "ZipRequest": "form",
    "ZipService": "service",
    "ZipSource": "stream",
    "ZipState": "state",
    "local_zip": "local",
    "parse_zip_request": "form",
    "plan_zip": "plan",
}


__getattr__ = lazy_exports(__name__, _SOURCES)
