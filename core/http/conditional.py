"""RFC 9110 conditional requests (§13): If-Match, If-None-Match, If-(Un)Modified-Since,
If-Range, plus HTTP-date formatting and parsing.  Sans-IO: plain functions over header
mappings whose keys are lower-case names (repeated fields already joined with ``", "``).
"""

from __future__ import annotations

import calendar
import enum
import functools
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from slipstream.numeric import parse_uint

__all__ = [
    "Precondition",
    "Validators",
    "evaluate_preconditions",
    "http_date",
    "if_range_matches",
    "parse_etag_list",
    "parse_http_date",
    "strong_match",
    "weak_match",
]


@dataclass(frozen=True, slots=True)
class Validators:
    """The validators of the selected representation."""

    etag: str
    """Strong entity tag, quoted: ``'"abc-123"'``."""
    last_modified: int
    """Unix seconds (HTTP dates have one-second resolution)."""


class Precondition(enum.Enum):
    """Outcome of :func:`evaluate_preconditions`: go on, 304, or 412."""

    PROCEED = "proceed"
    NOT_MODIFIED = "not_modified"
    FAILED = "failed"


# --- entity tags ---------------------------------------------------------------------

_OWS = " \t"


def _valid_opaque(text: str) -> bool:
    """``*etagc``: ``!``, ``#``-``~`` and obs-text (``0x80``-``0xff``); no blanks or quotes."""
    return all(c == "!" or "#" <= c <= "~" or "\x80" <= c <= "\xff" for c in text)


def parse_etag_list(value: str) -> list[str] | None:
    """The entity tags in an ``If-Match``/``If-None-Match`` value, in order.

    Returns ``None`` for ``*`` (any member that is ``*`` makes the whole value ``*``).
    Tags keep their quotes and ``W/`` prefix.  Invalid members (unquoted words, unterminated
    quotes, forbidden characters, trailing junk) are skipped.  Commas inside a quoted tag
    are part of the tag.
    """
    tags: list[str] = []
    any_tag = False
    i, n = 0, len(value)
    while i < n:
        while i < n and (value[i] in _OWS or value[i] == ","):
            i += 1
        if i >= n:
            break
        start = i
        quote = i + 2 if value.startswith('W/"', i) else i if value[i] == '"' else -1
        end = value.find('"', quote + 1) if quote >= 0 else -1
        if end >= 0:
            j = end + 1
            while j < n and value[j] in _OWS:
                j += 1
            if j >= n or value[j] == ",":
                if _valid_opaque(value[quote + 1 : end]):
                    tags.append(value[start : end + 1])
                i = j
                continue
        # Junk member: skip to the next comma.
        comma = value.find(",", start)
        member = value[start : n if comma < 0 else comma].strip(_OWS)
        any_tag = any_tag or member == "*"
        i = n if comma < 0 else comma + 1
    return None if any_tag else tags


def _opaque(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag


def strong_match(a: str, b: str) -> bool:
    """Strong comparison: both tags strong and identical."""
    return a == b and not a.startswith("W/")


def weak_match(a: str, b: str) -> bool:
    """Weak comparison: opaque tags identical, ``W/`` ignored."""
    return _opaque(a) == _opaque(b)


# --- HTTP dates ----------------------------------------------------------------------

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_LONG_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUMBER = {name: number for number, name in enumerate(_MONTHS, 1)}

_TIME = r"([0-9]{2}):([0-9]{2}):([0-9]{2})"
_MONTH = "(" + "|".join(_MONTHS) + ")"
# Sun, 06 Nov 1994 08:49:37 GMT
_IMF_FIXDATE = re.compile(
    "(?:" + "|".join(_DAYS) + rf"), ([0-9]{{2}}) {_MONTH} ([0-9]{{4}}) {_TIME} GMT", re.ASCII
)
# Sunday, 06-Nov-94 08:49:37 GMT
_RFC850 = re.compile(
    "(?:" + "|".join(_LONG_DAYS) + rf"), ([0-9]{{2}})-{_MONTH}-([0-9]{{2}}) {_TIME} GMT", re.ASCII
)
# Sun Nov  6 08:49:37 1994
_ASCTIME = re.compile(
    "(?:" + "|".join(_DAYS) + rf") {_MONTH} ([0-9 ][0-9]) {_TIME} ([0-9]{{4}})", re.ASCII
)


@functools.lru_cache(maxsize=4096)  # the same few mtimes are formatted for every reply
def http_date(timestamp: float) -> str:
    """Format unix seconds as an IMF-fixdate: ``Sun, 06 Nov 1994 08:49:37 GMT``.

    Fractions of a second are dropped (floor); names are English whatever the locale.
    """
    t = time.gmtime(math.floor(timestamp))
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def _two_digit_year(yy: int) -> int:
    """RFC 9110 §5.6.7: a year more than 50 years ahead is the most recent past one."""
    this_year = time.gmtime().tm_year
    year = this_year - this_year % 100 + yy
    if year > this_year + 50:
        year -= 100
    return year


def _timestamp(year: int, month: int, day: int, hour: int, minute: int, second: int) -> int | None:
    if year < 1 or not 1 <= day <= calendar.monthrange(year, month)[1]:
        return None
    if hour > 23 or minute > 59 or second > 60:  # 60: a leap second
        return None
    return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))


def parse_http_date(value: str) -> int | None:
    """Parse an HTTP-date (IMF-fixdate, RFC 850 or asctime) to unix seconds.

    Returns ``None`` for anything else, including impossible dates (``30 Feb``) and lists
    of dates.  The day name is checked for spelling, not against the date (as nginx).
    """
    text = value.strip(_OWS)
    if m := _IMF_FIXDATE.fullmatch(text):
        day, month, year, hour, minute, second = m.groups()
    elif m := _RFC850.fullmatch(text):
        day, month, yy, hour, minute, second = m.groups()
        year = str(_two_digit_year(parse_uint(yy)))
    elif m := _ASCTIME.fullmatch(text):
        month, day, hour, minute, second, year = m.groups()  # day: "06" or " 6"
    else:
        return None
    return _timestamp(
        parse_uint(year),
        _MONTH_NUMBER[month],
        parse_uint(day.lstrip(" ")),
        parse_uint(hour),
        parse_uint(minute),
        parse_uint(second),
    )


# --- evaluation ----------------------------------------------------------------------


def evaluate_preconditions(method: str, headers: Mapping[str, str], v: Validators) -> Precondition:
    """Evaluate the preconditions of a request on an existing resource (RFC 9110 §13.2.2).

    1. ``If-Match`` (strong comparison, ``*`` matches): no match -> ``FAILED``;
       otherwise, without ``If-Match``, ``If-Unmodified-Since``: modified after -> ``FAILED``.
    2. ``If-None-Match`` (weak comparison): a match -> ``NOT_MODIFIED`` for GET/HEAD,
       ``FAILED`` for other methods; otherwise, without ``If-None-Match`` and only for
       GET/HEAD, ``If-Modified-Since``: not modified since -> ``NOT_MODIFIED``.

    Invalid dates are ignored.  ``If-Range`` is separate: see :func:`if_range_matches`.
    """
    if_match = headers.get("if-match")
    if if_match is not None:
        tags = parse_etag_list(if_match)
        if tags is not None and not any(strong_match(tag, v.etag) for tag in tags):
            return Precondition.FAILED
    else:
        unmodified_since = headers.get("if-unmodified-since")
        if unmodified_since is not None:
            date = parse_http_date(unmodified_since)
            if date is not None and v.last_modified > date:
                return Precondition.FAILED

    safe = method in ("GET", "HEAD")
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        tags = parse_etag_list(if_none_match)
        if tags is None or any(weak_match(tag, v.etag) for tag in tags):
            return Precondition.NOT_MODIFIED if safe else Precondition.FAILED
    elif safe:
        modified_since = headers.get("if-modified-since")
        if modified_since is not None:
            date = parse_http_date(modified_since)
            if date is not None and v.last_modified <= date:
                return Precondition.NOT_MODIFIED
    return Precondition.PROCEED


def if_range_matches(headers: Mapping[str, str], v: Validators) -> bool:
    """Whether a ``Range`` may be honoured given ``If-Range`` (RFC 9110 §13.1.5).

    True without ``If-Range``.  An entity tag must match strongly (a weak tag never does);
    an HTTP-date must equal ``last_modified`` exactly; anything else is False (send 200).
    """
    value = headers.get("if-range")
    if value is None:
        return True
    value = value.strip(_OWS)
    if value.startswith(('"', "W/")):
        tags = parse_etag_list(value)
        return tags is not None and len(tags) == 1 and strong_match(tags[0], v.etag)
    date = parse_http_date(value)
    return date is not None and date == v.last_modified
