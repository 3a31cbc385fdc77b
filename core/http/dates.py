"""HTTP dates (RFC 9110 §5.6.7): the one place they are formatted and parsed (sans-IO).

:func:`http_date` writes an IMF-fixdate (``Last-Modified``, ``Date``);
:func:`parse_http_date` reads the three forms a recipient must accept (``If-*`` request
fields, an upstream's ``Last-Modified``) and nothing else.
"""

from __future__ import annotations

import calendar
import functools
import math
import re
import time

from slipstream.numeric import parse_uint

__all__ = ["http_date", "parse_http_date"]

_OWS = " \t"

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
