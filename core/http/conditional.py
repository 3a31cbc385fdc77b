"""RFC 9110 conditional requests (§13): If-Match, If-None-Match, If-(Un)Modified-Since and
If-Range, evaluated against a representation's :class:`~slipstream.http.validators.Validators`.
Sans-IO: plain functions over header mappings whose keys are lower-case names (repeated
fields already joined with ``", "``).  Entity tags are :mod:`slipstream.http.validators`'
business, dates :mod:`slipstream.http.dates`'.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from .dates import parse_http_date
from .validators import Validators, parse_etag_list, strong_match, weak_match

__all__ = ["Precondition", "evaluate_preconditions", "if_range_matches"]

_OWS = " \t"


class Precondition(enum.Enum):
    """Outcome of :func:`evaluate_preconditions`: go on, 304, or 412."""

    PROCEED = "proceed"
    NOT_MODIFIED = "not_modified"
    FAILED = "failed"


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
