"""The one reply function: a :class:`Representation` and a request's header fields in,
a 200/206/304/412/416 (or the surface's refusal) out.  Sans-IO.

Every download goes through :func:`decide_reply`: the file routes, the local zip and the
zip service.  It evaluates the preconditions and ``If-Range``, lets the
representation's :class:`RangePolicy` decide on ``Range``, and chooses the header fields
and the body slice.  Sending is someone else's job (``slipstream.send.send_body``).

The header fields come in one order: ``Content-Type``, ``Content-Range`` (a single-range
206), ``ETag``, ``Last-Modified``, ``Accept-Ranges``, then the representation's own.  A
304 carries the three validator fields only.

Two policies: :data:`RFC9110` (nginx's rules: multipart, more than 16 ranges or ranges
adding up to more than the body -> 200, a malformed or unsatisfiable set -> 416
``RangeNotSatisfiable``, a failed ``If-Match``/``If-Unmodified-Since`` -> 412
``PreconditionFailed``) and the zip service's (:class:`slipstream.zip.ranges.ZipStreamRanges`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, TypeVar

from slipstream.errors import PreconditionFailed, RangeNotSatisfiable
from slipstream.segments import SegmentMap

from .conditional import Precondition, evaluate_preconditions, if_range_matches
from .contentrange import content_range
from .dates import http_date
from .multipart import build_multipart, multipart_content_type, new_boundary
from .ranges import RangeDecision, RangeKind, decide_ranges
from .representation import Representation, SizedBody, StreamedSource
from .validators import Validators

__all__ = ["RFC9110", "Refusal", "Reply", "Rfc9110Ranges", "decide_reply"]

E = TypeVar("E", bound=Exception)

Refusal = PreconditionFailed | RangeNotSatisfiable
"""What :data:`RFC9110` refuses with (412, 416), rendered in the server's usual shape."""


@dataclass(slots=True)
class Reply:
    """What to send: status, header fields (no framing fields) and the body.

    ``body`` is None for a 304; a slice (or multipart view) of the representation's
    segment map, or a body made by its :class:`StreamedSource`, otherwise.
    """

    status: int
    headers: list[tuple[str, str]]
    body: SegmentMap | SizedBody | None = None


class Rfc9110Ranges:
    """RFC 9110 preconditions and ranges, decided the way nginx decides them.

    ``max_parts``: more range specs than this serve the whole body (200).
    """

    __slots__ = ("max_parts",)

    def __init__(self, max_parts: int = 16) -> None:
        self.max_parts = max_parts

    def preconditions(
        self, method: str, headers: Mapping[str, str], validators: Validators
    ) -> Precondition | Refusal:
        """:func:`evaluate_preconditions`, its ``FAILED`` as :class:`PreconditionFailed`."""
        outcome = evaluate_preconditions(method, headers, validators)
        if outcome is Precondition.FAILED:
            return PreconditionFailed()
        return outcome

    def ranges(self, header: str | None, size: int) -> RangeDecision | Refusal:
        """:func:`decide_ranges`, its ``UNSATISFIABLE`` as :class:`RangeNotSatisfiable`."""
        decision = decide_ranges(header, size, max_parts=self.max_parts)
        if decision.kind is RangeKind.UNSATISFIABLE:
            return RangeNotSatisfiable(size)
        return decision


RFC9110: Final = Rfc9110Ranges()
"""The policy of every file reply (``/api/download``, presigned URLs, ``/api/zip``)."""


def decide_reply(method: str, headers: Mapping[str, str], rep: Representation[E]) -> Reply | E:
    """The reply to a ``GET``/``HEAD`` (``method``) of ``rep``, or the policy's refusal.

    ``headers`` maps lower-case field names to values.  In order: the policy's
    preconditions (a 304, or its error), ``If-Range`` (no match: ``Range`` is ignored),
    the policy's range decision (its error, the whole body, or ranges).  A 206 of one
    range carries ``Content-Range``; of several, a ``multipart/byteranges`` body (a
    :class:`StreamedSource` has no multipart form: it serves the whole body instead).
    The body of a HEAD is chosen as for a GET (its length is the ``Content-Length``).
    """
    validators = rep.validators
    policy = rep.policy
    common = [
        ("ETag", validators.etag),
        ("Last-Modified", http_date(validators.last_modified)),
        ("Accept-Ranges", "bytes"),
    ]
    checked = policy.preconditions(method, headers, validators)
    if not isinstance(checked, Precondition):
        return checked
    if checked is Precondition.NOT_MODIFIED:
        return Reply(304, common)

    body = rep.body
    size = body.total
    range_header = headers.get("range")
    if range_header is not None and not if_range_matches(headers, validators):
        range_header = None
    decision = policy.ranges(range_header, size)
    if not isinstance(decision, RangeDecision):
        return decision
    ranges = decision.ranges
    multipart_ok = isinstance(body, SegmentMap)
    if decision.kind is not RangeKind.PARTIAL or (len(ranges) > 1 and not multipart_ok):
        fields = [("Content-Type", rep.content_type), *common, *rep.headers]
        return Reply(200, fields, _part(body, 0, size))
    if len(ranges) == 1:
        (only,) = ranges
        fields = [
            ("Content-Type", rep.content_type),
            ("Content-Range", content_range(only.start, only.stop, size)),
            *common,
            *rep.headers,
        ]
        return Reply(206, fields, _part(body, only.start, only.stop))
    assert isinstance(body, SegmentMap)
    boundary = new_boundary()
    fields = [("Content-Type", multipart_content_type(boundary)), *common, *rep.headers]
    return Reply(206, fields, build_multipart(body, ranges, rep.content_type, boundary))


def _part(body: SegmentMap | StreamedSource, start: int, stop: int) -> SegmentMap | SizedBody:
    """The body carrying bytes ``[start, stop)`` of ``body`` (all of it: ``body`` itself)."""
    if isinstance(body, SegmentMap):
        if start == 0 and stop == body.total:
            return body
        return SegmentMap(body.slice(start, stop))
    return body.part(start, stop)
