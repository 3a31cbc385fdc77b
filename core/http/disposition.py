"""``Content-Disposition`` values (RFC 6266) that every client reads the same way."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import quote


@lru_cache(maxsize=4096)  # pure, and asked for the same few names over and over
def content_disposition(filename: str, disposition: str = "attachment") -> str:
    """``attachment; filename="<name>"``, plus ``filename*=UTF-8''...`` when needed.

    The quoted ``filename`` is the real name, sent as UTF-8 (the header writer encodes
    every value as UTF-8): that is the form ``curl -O -J``, wget and older clients read,
    and they ignore ``filename*``.  Only what a quoted string cannot carry safely is
    replaced with ``_``: ``"`` and ``\\`` (curl does not undo backslash escapes) and
    control characters (C0, DEL, C1); a lone surrogate (an undecodable byte of an OS
    file name) becomes U+FFFD in both forms.  ``filename*`` (RFC 8187, percent-encoded
    UTF-8) carries the exact name and is added whenever the name is not plain ASCII or
    something was replaced, for clients that prefer it (browsers).
    """
    name = "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in filename)
    quoted = "".join("_" if ch in '"\\' or _is_control(ch) else ch for ch in name)
    value = f'{disposition}; filename="{quoted}"'
    if quoted != name or not name.isascii():
        value += f"; filename*=UTF-8''{quote(name, safe='')}"
    return value


def _is_control(ch: str) -> bool:
    """C0 controls, DEL and C1 controls (never valid inside a header value)."""
    code = ord(ch)
    return code < 0x20 or 0x7F <= code < 0xA0
