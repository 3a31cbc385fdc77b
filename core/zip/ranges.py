"""The ``Range`` rules of ``GET /stream/<id>`` (seed 004), sans-IO.

On this route the seed's contract wins over RFC 9110 (elsewhere the server follows
:mod:`slipstream.http.ranges`):

* no header -> the whole zip (``200``);
* a unit other than ``bytes=`` -> ``INVALID_RANGE_HEADER`` (400), where the RFC would
  ignore the header;
* several ranges (any comma in the range set) -> ``MULTIPART_UNSUPPORTED`` (416), where
  the RFC would allow a ``multipart/byteranges`` reply;
* a range set that does not parse (``bytes=abc``, ``bytes=5-2``, ``bytes=-``, ``bytes=``,
  a blank header, numbers over 19 digits) -> ``MALFORMED_RANGE`` (416);
* a start at or past the end, or the suffix ``-0`` -> ``RANGE_NOT_SATISFIABLE`` (416);
  every 416 error carries ``size``, so it is sent with ``Content-Range: bytes */SIZE``;
* otherwise one range: ``a-`` to the end, ``a-b`` with ``b`` clamped to the last byte,
  ``-n`` the last ``n`` bytes (all of them when ``n`` exceeds the size).

The unit is matched case-insensitively and blanks around the value are ignored, as in
:func:`slipstream.http.ranges.parse_range_header`, which does the parsing of the single spec;
:func:`slipstream.http.ranges.resolve_ranges` resolves it against the size.

:class:`ZipStreamRanges` is these rules as the :class:`~slipstream.http.representation.RangePolicy`
of a ``/stream`` reply: the one reply function (:func:`slipstream.http.reply.decide_reply`)
applies them, and the route renders the errors in the manifest's format.  The seed defines
no preconditions, so ``If-Match``, ``If-None-Match`` and the date conditions are not
evaluated there (``If-Range`` is, as on every reply).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from slipstream.http.conditional import Precondition
from slipstream.http.ranges import (
    ByteRange,
    MalformedRange,
    RangeDecision,
    RangeKind,
    UnsupportedRangeUnit,
    parse_range_header,
    resolve_ranges,
)
from slipstream.http.validators import Validators

from .errors import ZipError

__all__ = ["ZipStreamRanges", "parse_zip_range"]

_OWS: Final = " \t"


def parse_zip_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The bytes ``[start, stop)`` a reply for ``Range: header`` must send from a zip.

    ``size`` is the zip's length.  Returns ``None`` when there is no header (send the whole
    zip with a ``200``), else a non-empty ``(start, stop)`` with ``0 <= start < stop <= size``
    (send a ``206``).  Raises :class:`~slipstream.zip.errors.ZipError` with the seed's key
    for a header it refuses (see the module docstring); the three 416 errors carry ``size``
    (so the reply has ``Content-Range: bytes */SIZE``, as RFC 9110 asks of every 416).
    ``If-Range`` is the caller's business: when it does not match, pass ``None``.
    """
    if size < 0:
        raise ValueError(f"negative zip size {size}")
    if header is None:
        return None
    value = header.strip(_OWS)
    if not value:
        raise ZipError("MALFORMED_RANGE", size=size)
    if value[:6].lower() != "bytes=":
        raise ZipError("INVALID_RANGE_HEADER")
    if "," in value:
        raise ZipError("MULTIPART_UNSUPPORTED", size=size)
    try:
        specs = parse_range_header(value)
    except (MalformedRange, UnsupportedRangeUnit):
        raise ZipError("MALFORMED_RANGE", size=size) from None
    resolved = resolve_ranges(specs, size)  # the one spec, clamped as RFC 9110 says
    if not resolved:
        raise ZipError("RANGE_NOT_SATISFIABLE", size=size)
    (only,) = resolved
    return only.start, only.stop


_WHOLE: Final = RangeDecision(RangeKind.FULL)


class ZipStreamRanges:
    """The seed's rules as a range policy (see the module docstring).

    ``possible(start, stop)`` says whether a range can be served as one; when it cannot
    (too deep into a member whose upstream ignores ``Range``), the whole zip is the
    answer, as the seed says FileSlide does.
    """

    __slots__ = ("possible",)

    def __init__(self, possible: Callable[[int, int], bool] | None = None) -> None:
        self.possible = possible

    def preconditions(
        self, method: str, headers: Mapping[str, str], validators: Validators
    ) -> Precondition:
        """Always ``PROCEED``: the seed defines no preconditions on ``/stream``."""
        return Precondition.PROCEED

    def ranges(self, header: str | None, size: int) -> RangeDecision | ZipError:
        """:func:`parse_zip_range` as a decision: the whole zip, one range, or the error."""
        try:
            chosen = parse_zip_range(header, size)
        except ZipError as error:
            return error
        if chosen is None or (self.possible is not None and not self.possible(*chosen)):
            return _WHOLE
        return RangeDecision(RangeKind.PARTIAL, (ByteRange(*chosen),))
