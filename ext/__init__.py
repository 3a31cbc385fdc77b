"""Accelerators for slipstream's hot path, each with a pure-Python twin.

Every compiled module ``_<name>_c`` has a reference twin ``_<name>_py`` with the same
API.  This package picks one per module at import time:

* ``SLIPSTREAM_PURE=1`` forces the pure-Python twins;
* ``SLIPSTREAM_REQUIRE_EXT=1`` makes a missing compiled twin an ImportError instead
  of a silent fallback (``make test`` sets it in its first pass).

``IMPLEMENTATIONS`` records which twin was loaded for each module.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import TYPE_CHECKING

PURE = os.environ.get("SLIPSTREAM_PURE", "") == "1"
REQUIRE_EXT = os.environ.get("SLIPSTREAM_REQUIRE_EXT", "") == "1" and not PURE

IMPLEMENTATIONS: dict[str, str] = {}


def twin(name: str, kind: str) -> ModuleType:
    """Import one twin explicitly: ``twin("segmap", "c")`` or ``twin("segmap", "py")``."""
    return importlib.import_module(f"{__name__}._{name}_{kind}")


def _load(name: str) -> ModuleType:
    if not PURE:
        try:
            module = twin(name, "c")
        except ImportError:
            if REQUIRE_EXT:
                raise
        else:
            IMPLEMENTATIONS[name] = "c"
            return module
    IMPLEMENTATIONS[name] = "python"
    return twin(name, "py")


if TYPE_CHECKING:
    from slipstream.ext._segmap_py import SegmentMap
else:
    SegmentMap = _load("segmap").SegmentMap

if TYPE_CHECKING:
    from slipstream.ext._zipfmt_py import (
        central_directory_header,
        data_descriptor,
        dos_datetime,
        end_of_central_directory,
        extended_timestamp_extra,
        local_file_header,
        needs_zip64,
        needs_zip64_end,
        zip64_end_of_central_directory,
        zip64_end_of_central_directory_locator,
        zip64_extra,
    )
else:
    _zipfmt = _load("zipfmt")
    central_directory_header = _zipfmt.central_directory_header
    data_descriptor = _zipfmt.data_descriptor
    dos_datetime = _zipfmt.dos_datetime
    end_of_central_directory = _zipfmt.end_of_central_directory
    extended_timestamp_extra = _zipfmt.extended_timestamp_extra
    local_file_header = _zipfmt.local_file_header
    needs_zip64 = _zipfmt.needs_zip64
    needs_zip64_end = _zipfmt.needs_zip64_end
    zip64_end_of_central_directory = _zipfmt.zip64_end_of_central_directory
    zip64_end_of_central_directory_locator = _zipfmt.zip64_end_of_central_directory_locator
    zip64_extra = _zipfmt.zip64_extra

if TYPE_CHECKING:
    from slipstream.ext._digest_py import ALGORITHMS, MultiDigest, combine, crc, multi_digest
else:
    _digest = _load("digest")
    ALGORITHMS = _digest.ALGORITHMS
    MultiDigest = _digest.MultiDigest
    combine = _digest.combine
    crc = _digest.crc
    multi_digest = _digest.multi_digest

if TYPE_CHECKING:
    from slipstream.ext._httphead_py import (
        DECLINE,
        NEED_MORE,
        RequestHead,
        ResponseHead,
        header_lines,
        parse_request_head,
        parse_response_head,
    )
else:
    _httphead = _load("httphead")
    header_lines = _httphead.header_lines
    DECLINE = _httphead.DECLINE
    NEED_MORE = _httphead.NEED_MORE
    RequestHead = _httphead.RequestHead
    parse_request_head = _httphead.parse_request_head
    ResponseHead = _httphead.ResponseHead
    parse_response_head = _httphead.parse_response_head

if TYPE_CHECKING:
    from slipstream.ext._listing_py import PlainRule, Scan, scan_directory
else:
    _listing = _load("listing")
    PlainRule = _listing.PlainRule
    Scan = _listing.Scan
    scan_directory = _listing.scan_directory

if TYPE_CHECKING:
    from slipstream.ext._relay_py import (
        RELAY_DONE,
        RELAY_ENDED,
        RELAY_MISMATCH,
        RELAY_READ_ERROR,
        RELAY_READ_TIMEOUT,
        RELAY_SEND_ERROR,
        RELAY_SEND_TIMEOUT,
        RELAY_STOPPED,
        Relayed,
        relay,
    )
else:
    _relay = _load("relay")
    RELAY_DONE = _relay.RELAY_DONE
    RELAY_ENDED = _relay.RELAY_ENDED
    RELAY_MISMATCH = _relay.RELAY_MISMATCH
    RELAY_READ_ERROR = _relay.RELAY_READ_ERROR
    RELAY_READ_TIMEOUT = _relay.RELAY_READ_TIMEOUT
    RELAY_SEND_ERROR = _relay.RELAY_SEND_ERROR
    RELAY_SEND_TIMEOUT = _relay.RELAY_SEND_TIMEOUT
    RELAY_STOPPED = _relay.RELAY_STOPPED
    Relayed = _relay.Relayed
    relay = _relay.relay

from slipstream.ext._segtypes import FileSlice, Literal, Segment, UpstreamSlice  # noqa: E402

__all__ = [
    "ALGORITHMS",
    "DECLINE",
    "IMPLEMENTATIONS",
    "NEED_MORE",
    "PURE",
    "RELAY_DONE",
    "RELAY_ENDED",
    "RELAY_MISMATCH",
    "RELAY_READ_ERROR",
    "RELAY_READ_TIMEOUT",
    "RELAY_SEND_ERROR",
    "RELAY_SEND_TIMEOUT",
    "RELAY_STOPPED",
    "FileSlice",
    "Literal",
    "MultiDigest",
    "PlainRule",
    "Relayed",
    "RequestHead",
    "ResponseHead",
    "Scan",
    "Segment",
    "SegmentMap",
    "UpstreamSlice",
    "central_directory_header",
    "combine",
    "crc",
    "data_descriptor",
    "dos_datetime",
    "end_of_central_directory",
    "extended_timestamp_extra",
    "header_lines",
    "local_file_header",
    "multi_digest",
    "needs_zip64",
    "needs_zip64_end",
    "parse_request_head",
    "parse_response_head",
    "relay",
    "scan_directory",
    "twin",
    "zip64_end_of_central_directory",
    "zip64_end_of_central_directory_locator",
    "zip64_extra",
]
