"""``Content-Range`` (RFC 9110 §14.4): the one place it is written and read (sans-IO).

Written by every 206 and 416 this server sends (:func:`content_range`,
:func:`unsatisfied_range`); read from an upstream's answer to a ``Range`` request
(:func:`parse_content_range`: the zip service's probes and member reads, a resumed
remote download) and compared by the ``slipstream get`` client as text (the value it
expects is :func:`content_range`'s).

The parser is strict, as the old per-caller ones were: the unit is ``bytes`` exactly,
one space, ASCII digits only (each number at most 2**63 - 1), no blanks anywhere else,
and a range-resp must be consistent (``first <= last < size``); anything else is None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from slipstream.numeric import InvalidNumber, parse_uint

__all__ = [
    "ContentRange",
    "UnsatisfiedRange",
    "content_range",
    "parse_content_range",
    "unsatisfied_range",
]

# bytes FIRST-LAST/SIZE, bytes FIRST-LAST/* or bytes */SIZE (re.ASCII: [0-9] only).
_CONTENT_RANGE: Final = re.compile(r"bytes (?:([0-9]+)-([0-9]+)/([0-9]+|\*)|\*/([0-9]+))", re.ASCII)


@dataclass(frozen=True, slots=True)
class ContentRange:
    """``bytes FIRST-LAST/SIZE``: bytes ``first``..``last`` (inclusive) of the whole."""

    first: int
    last: int
    size: int | None
    """Length of the whole representation; None for ``*`` (unknown)."""


@dataclass(frozen=True, slots=True)
class UnsatisfiedRange:
    """``bytes */SIZE``, as sent with a 416: the whole is ``size`` bytes."""

    size: int


def content_range(start: int, stop: int, size: int) -> str:
    """The ``Content-Range`` of a 206 (or a multipart part) carrying bytes
    ``[start, stop)`` of a ``size``-byte representation: ``bytes START-(STOP-1)/SIZE``.

    ``ValueError`` unless ``0 <= start < stop <= size``.
    """
    if not 0 <= start < stop <= size:
        raise ValueError(f"bad range [{start}, {stop}) of {size} bytes")
    return f"bytes {start}-{stop - 1}/{size}"


def unsatisfied_range(size: int) -> str:
    """The ``Content-Range`` of a 416: ``bytes */SIZE``."""
    return f"bytes */{size}"


def parse_content_range(value: str | None) -> ContentRange | UnsatisfiedRange | None:
    """Read a ``Content-Range`` value; None when absent, malformed or inconsistent.

    ``bytes 5-9/10`` -> ``ContentRange(5, 9, 10)``; ``bytes 5-9/*`` ->
    ``ContentRange(5, 9, None)``; ``bytes */10`` -> ``UnsatisfiedRange(10)``.  Leading
    zeros are accepted; a number over 2**63 - 1, ``first > last`` or ``last >= size``
    makes the value unusable.
    """
    if not value:
        return None
    match = _CONTENT_RANGE.fullmatch(value)
    if match is None:
        return None
    first_text, last_text, size_text, unsatisfied = match.groups()
    try:
        if unsatisfied is not None:
            return UnsatisfiedRange(parse_uint(unsatisfied))
        first, last = parse_uint(first_text), parse_uint(last_text)
        size = None if size_text == "*" else parse_uint(size_text)
    except InvalidNumber:
        return None
    if first > last or (size is not None and last >= size):
        return None
    return ContentRange(first, last, size)
