"""RFC 9110 ``Range`` requests, decided the way nginx decides them (sans-IO).

Three steps, each usable on its own:

* :func:`parse_range_header` turns ``bytes=0-99,-500`` into raw ``(first, last)`` specs;
* :func:`resolve_ranges` turns specs into satisfiable :class:`ByteRange` values for a size;
* :func:`decide_ranges` applies the policy: 200 (``FULL``), 206 (``PARTIAL``, one range or
  ``multipart/byteranges``) or 416 (``UNSATISFIABLE``).

Policy (nginx's): a missing header or a unit other than ``bytes`` serves the whole body; a
garbled ``bytes=`` header is a 416; too many specs, or satisfiable ranges whose lengths add
up to more than the body (overlapping multi-range abuse), serve the whole body instead.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass

from slipstream.numeric import parse_uint

from .contentrange import content_range

__all__ = [
    "ByteRange",
    "MalformedRange",
    "RangeDecision",
    "RangeKind",
    "RangeSpec",
    "UnsupportedRangeUnit",
    "decide_ranges",
    "parse_range_header",
    "resolve_ranges",
]

RangeSpec = tuple[int | None, int | None]
"""A raw range spec: ``(first, last)`` inclusive, ``(None, n)`` suffix, ``(a, None)`` open."""

MAX_DIGITS = 19
"""Longest accepted number (an int64 has 19 digits); longer ones make the header malformed."""

_MAX_NUMBER = 10**MAX_DIGITS - 1
"""Any number of at most 19 digits: larger last positions are clamped to the size."""
_OWS = " \t"
# One spec: "first-last", "first-" or "-suffix", with optional blanks around "-" (nginx
# tolerates them).  ASCII digits only: str.isdigit() would accept other scripts' digits.
_SPEC = re.compile(
    rf"([0-9]{{1,{MAX_DIGITS}}})?[ \t]*-[ \t]*([0-9]{{1,{MAX_DIGITS}}})?",
    re.ASCII,
)


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes ``[start, stop)`` of a body; never empty."""

    start: int
    """First byte offset."""
    stop: int
    """One past the last byte."""

    def __post_init__(self) -> None:
        if self.start < 0 or self.stop <= self.start:
            raise ValueError(f"invalid byte range {self.start}..{self.stop}")

    @property
    def length(self) -> int:
        """Number of bytes in the range."""
        return self.stop - self.start

    def content_range(self, size: int) -> str:
        """The ``Content-Range`` value for this range of a ``size``-byte body."""
        return content_range(self.start, self.stop, size)


class RangeKind(enum.Enum):
    """What to answer: 200 with the whole body, 206 with parts, or 416."""

    FULL = "full"
    PARTIAL = "partial"
    UNSATISFIABLE = "unsatisfiable"


@dataclass(frozen=True, slots=True)
class RangeDecision:
    """The outcome of :func:`decide_ranges`.

    For ``PARTIAL``, ``ranges`` is sorted, coalesced and non-empty: one range means a plain
    206 with ``Content-Range``, two or more mean a ``multipart/byteranges`` body.
    """

    kind: RangeKind
    ranges: tuple[ByteRange, ...] = ()


class MalformedRange(ValueError):
    """A ``bytes=`` header whose range set does not parse."""


class UnsupportedRangeUnit(ValueError):
    """A ``Range`` header that does not start with ``bytes=``."""


def parse_range_header(value: str) -> list[RangeSpec]:
    """Parse a ``Range`` header value into raw specs, in request order.

    ``bytes=0-99, -500, 1000-`` gives ``[(0, 99), (None, 500), (1000, None)]``.  The unit is
    matched case-insensitively; blanks around list members and empty members (``0-1,,2-3``)
    are tolerated.  Raises :class:`UnsupportedRangeUnit` when the value does not start with
    ``bytes=`` and :class:`MalformedRange` for a bad range set: no specs at all, a spec that
    is not ``a-b``/``a-``/``-n``, a number longer than 19 digits, or ``first > last``.
    """
    stripped = value.strip(_OWS)
    if stripped[:6].lower() != "bytes=":
        raise UnsupportedRangeUnit(f"unsupported range unit in {value[:40]!r}")
    specs: list[RangeSpec] = []
    for member in stripped[6:].split(","):
        member = member.strip(_OWS)
        if not member:
            continue
        match = _SPEC.fullmatch(member)
        if match is None:
            raise MalformedRange(f"bad range spec {member[:40]!r}")
        first_text, last_text = match.groups()
        first = _number(first_text)
        last = _number(last_text)
        if first is None and last is None:
            raise MalformedRange("range spec '-' has no numbers")
        if first is not None and last is not None and first > last:
            raise MalformedRange(f"range spec {member!r} has first > last")
        specs.append((first, last))
    if not specs:
        raise MalformedRange("empty range set")
    return specs


def _number(text: str | None) -> int | None:
    """A matched spec number (at most :data:`MAX_DIGITS` ASCII digits), or None."""
    return None if text is None else parse_uint(text, maximum=_MAX_NUMBER)


def resolve_ranges(specs: Iterable[RangeSpec], size: int) -> list[ByteRange]:
    """The satisfiable specs as byte ranges of a ``size``-byte body, clamped, in request order.

    ``-n`` is the last ``n`` bytes (the whole body if ``n >= size``; ``-0`` is unsatisfiable),
    ``a-`` runs to the end, ``a-b`` is clamped to the end; a spec starting at or past ``size``
    is dropped.
    """
    out: list[ByteRange] = []
    for first, last in specs:
        if first is None:
            if last is None:
                raise ValueError("range spec needs a first or a last position")
            if last == 0 or size == 0:
                continue
            out.append(ByteRange(max(size - last, 0), size))
        elif first < size:
            stop = size if last is None else min(last + 1, size)
            if stop > first:
                out.append(ByteRange(first, stop))
    return out


def _coalesce(ranges: Iterable[ByteRange]) -> tuple[ByteRange, ...]:
    """Sort by start and merge ranges that overlap or touch."""
    merged: list[ByteRange] = []
    for current in sorted(ranges, key=lambda r: (r.start, r.stop)):
        if merged and current.start <= merged[-1].stop:
            if current.stop > merged[-1].stop:
                merged[-1] = ByteRange(merged[-1].start, current.stop)
        else:
            merged.append(current)
    return tuple(merged)


_FULL = RangeDecision(RangeKind.FULL)
_UNSATISFIABLE = RangeDecision(RangeKind.UNSATISFIABLE)


def decide_ranges(header: str | None, size: int, *, max_parts: int = 16) -> RangeDecision:
    """Decide how to answer a request with ``Range: header`` for a ``size``-byte body.

    * no header, or a unit other than ``bytes`` -> ``FULL``;
    * a malformed ``bytes=`` header, an empty body, or no satisfiable range -> ``UNSATISFIABLE``;
    * more than ``max_parts`` specs, or satisfiable ranges adding up to more than ``size``
      -> ``FULL``;
    * otherwise ``PARTIAL`` with the ranges sorted and coalesced.

    ``If-Range`` is the caller's business: when it does not match, do not call this at all.
    """
    if header is None:
        return _FULL
    try:
        specs = parse_range_header(header)
    except UnsupportedRangeUnit:
        return _FULL
    except MalformedRange:
        return _UNSATISFIABLE
    if size <= 0:
        return _UNSATISFIABLE
    if len(specs) > max_parts:
        return _FULL
    ranges = resolve_ranges(specs, size)
    if not ranges:
        return _UNSATISFIABLE
    if sum(r.length for r in ranges) > size:
        return _FULL
    return RangeDecision(RangeKind.PARTIAL, _coalesce(ranges))
