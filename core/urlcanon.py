"""Canonical URL paths and queries, and path spellings an upstream could still resolve.

Sans-IO.  :func:`canonical_path` and :func:`canonical_query` turn the path and query of
a URL into the one spelling that is both checked and sent (see
:func:`slipstream.netpolicy.parse_target`):

* percent-escapes of unreserved characters (``%41``, ``%7E``, ``%2e``) are decoded and
  every other escape is written with upper-case hex digits (RFC 3986 §6.2.2.1-2);
* characters a path may not hold raw (``"<>[\\]^`{|}``, a ``%`` that starts no escape,
  anything outside ASCII) are percent-encoded as UTF-8; sub-delimiters, ``:`` and ``@``
  stay as they are;
* then the dot segments are removed (RFC 3986 §5.2.4), so ``/a/./b/../c``,
  ``/a/b/%2e%2E/c`` and ``/a/b/.%2e/c`` all become ``/a/c``; an empty path is ``/``;
* a query keeps its bytes except what must be escaped (``"<>``, a stray ``%``, non-ASCII).

The result is a fixed point of these rules and of httpx's own URL normalisation, so a
URL built from it goes on the wire byte for byte (``Fetcher`` checks that too).

:func:`resolvable_segment` then finds what normalisation cannot settle: a segment that
some upstream may still turn into a dot segment, because it decodes escapes again
(``%252e%252e``) or reads IIS's ``%u002e``, decodes an encoded slash or backslash
(``..%2F``, ``%5C..``), strips path parameters (Tomcat's ``..;``), reads overlong UTF-8
(``%C0%AE``), applies Unicode compatibility folding (full-width dots, ``%EF%BC%8E``) or
trims trailing dots and spaces (Windows: ``...``, ``..%20``).  Encoded control characters
are refused there too.  An encoded slash that cannot form a dot segment (``a%2Fb``, as
some APIs use inside one segment) is left alone: it cannot move a path out of a prefix
that ends on a segment boundary.
"""

from __future__ import annotations

import re
import string
import unicodedata
from typing import Final
from urllib.parse import unquote_to_bytes

__all__ = [
    "canonical_path",
    "canonical_query",
    "remove_dot_segments",
    "resolvable_segment",
]

_UNRESERVED: Final = frozenset(string.ascii_letters + string.digits + "-._~")
#: Kept raw in a path: unreserved, sub-delims, ":", "@" and the separator "/".
_PATH_RAW: Final = _UNRESERVED | frozenset("!$&'()*+,;=:@/")
#: Kept raw in a query: printable ASCII except space, '"', "#", "<", ">" (what httpx
#: keeps) and "%" (handled as escapes).
_QUERY_RAW: Final = frozenset(chr(c) for c in range(0x21, 0x7F)) - frozenset('"#<>%')
_HEX: Final = frozenset("0123456789abcdefABCDEF")
_SEPARATORS: Final = re.compile(r"[/\\]")
_WIDE_ESCAPE: Final = re.compile(rb"%[uU]([0-9a-fA-F]{4})")
_DECODE_ROUNDS: Final = 8
"""Decoding rounds tried per segment: an escape nested deeper than this is refused."""


def _encode(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8", errors="surrogatepass"))


def _normalise_escapes(text: str, raw: frozenset[str], *, decode_unreserved: bool) -> str:
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "%" and i + 2 < n and text[i + 1] in _HEX and text[i + 2] in _HEX:
            byte = int(text[i + 1 : i + 3], 16)
            if decode_unreserved and chr(byte) in _UNRESERVED:
                out.append(chr(byte))
            elif decode_unreserved:
                out.append(f"%{byte:02X}")
            else:
                out.append(text[i : i + 3])
            i += 3
            continue
        out.append(char if char in raw else _encode(char))
        i += 1
    return "".join(out)


def remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 for an absolute path: ``/a/./b/../c`` -> ``/a/c``.

    Only segments that are exactly ``.`` or ``..`` are dot segments; ``..`` never climbs
    above the root, and a path ending in a dot segment keeps its trailing ``/``.
    """
    if not path.startswith("/"):
        path = "/" + path
    segments = path.split("/")[1:]
    if "." not in segments and ".." not in segments:
        return path
    output: list[str] = []
    for segment in segments:
        if segment == "..":
            if output:
                output.pop()
        elif segment != ".":
            output.append(segment)
    if segments[-1] in (".", ".."):
        output.append("")
    return "/" + "/".join(output)


def canonical_path(path: str) -> str:
    """The canonical form of a URL path (see the module docstring); ASCII only."""
    encoded = _normalise_escapes(path, _PATH_RAW, decode_unreserved=True)
    return remove_dot_segments(encoded or "/")


def canonical_query(query: str) -> str:
    """The canonical form of a URL query: escaped where it must be, otherwise unchanged."""
    return _normalise_escapes(query, _QUERY_RAW, decode_unreserved=False)


def _overlong(data: bytes) -> bool:
    """Whether ``data`` holds an overlong UTF-8 lead (C0/C1, E0 80-9F, F0 80-8F)."""
    for i, byte in enumerate(data):
        if byte in (0xC0, 0xC1):
            return True
        follow = data[i + 1] if i + 1 < len(data) else 0
        if (byte == 0xE0 and 0x80 <= follow <= 0x9F) or (byte == 0xF0 and 0x80 <= follow <= 0x8F):
            return True
    return False


def _dot_piece(text: str) -> bool:
    """Whether ``text`` splits (on slashes, backslashes) into a dot-only piece."""
    for piece in _SEPARATORS.split(text):
        name = piece.split(";", 1)[0]
        if "." in name and not name.strip(". "):
            return True
    return False


def _decode_once(data: bytes) -> bytes:
    """One round of percent-decoding, IIS's ``%uXXXX`` included."""
    wide = _WIDE_ESCAPE.sub(lambda m: chr(int(m[1], 16)).encode("utf-8", "surrogatepass"), data)
    return unquote_to_bytes(wide)


def _readings(segment: str) -> list[bytes] | None:
    """The segment and each successive percent-decoding of it; None if too deep."""
    current = segment.encode("utf-8", errors="surrogatepass")
    readings = [current]
    for _ in range(_DECODE_ROUNDS):
        decoded = _decode_once(current)
        if decoded == current:
            return readings
        readings.append(decoded)
        current = decoded
    return None


def resolvable_segment(path: str) -> str | None:
    """Why a canonical ``path`` is unsafe behind a prefix check, or None when it is not.

    Each segment is decoded again and again (as an upstream that decodes twice would),
    and every reading is checked: one with a control character or overlong UTF-8 is
    refused, and so is one that, as UTF-8 and after NFKC folding, split on ``/`` and
    ``\\`` and cut at ``;``, has a piece made of dots and spaces only.
    """
    for segment in path.split("/"):
        if "%" not in segment and ";" not in segment and "." not in segment:
            continue
        readings = _readings(segment)
        if readings is None:
            return f"segment {segment!r} is percent-encoded too many times"
        for data in readings:
            if any(byte < 0x20 or byte == 0x7F for byte in data):
                return f"segment {segment!r} encodes a control character"
            if _overlong(data):
                return f"segment {segment!r} holds overlong UTF-8"
            text = data.decode("utf-8", errors="replace")
            if _dot_piece(text) or _dot_piece(unicodedata.normalize("NFKC", text)):
                return f"segment {segment!r} can still be resolved as a dot segment"
    return None
