"""Turn a :class:`~slipstream.http.representation.Representation` into a 200/206/304/412/416
reply.

The decisions are the sans-IO ones of ``slipstream.http.conditional`` and
``slipstream.http.ranges`` (RFC 9110, as nginx applies them); this module only maps
them onto a Response whose body is a slice of the representation's SegmentMap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import trio

from slipstream.digests import DigestCache
from slipstream.errors import PreconditionFailed, RangeNotSatisfiable
from slipstream.http.conditional import Precondition, evaluate_preconditions, if_range_matches
from slipstream.http.dates import http_date
from slipstream.http.disposition import content_disposition
from slipstream.http.multipart import build_multipart, multipart_content_type, new_boundary
from slipstream.http.ranges import RangeKind, decide_ranges
from slipstream.http.representation import Representation, guess_content_type
from slipstream.http.validators import Validators
from slipstream.segments import SegmentMap
from slipstream.storage import OpenFile

from .config import DEFAULT_CONTENT_DIGEST_MAX
from .errors import error_response
from .http import Request, Response
from .integrity import content_digest, content_sha256, file_digests, integrity_headers


@dataclass(frozen=True, slots=True)
class StoredFiles:
    """What replies of stored files use: the digest cache, the server's background
    nursery (where large cold files are hashed) and the ``Content-Digest`` size cap."""

    digests: DigestCache
    background: trio.Nursery
    content_digest_max: int = DEFAULT_CONTENT_DIGEST_MAX


async def stored_file_reply(
    request: Request,
    files: StoredFiles,
    opened: OpenFile,
    *,
    content_type: str | None = None,
    disposition: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
) -> Response:
    """The reply for a file a route has opened and checked: integrity headers from the
    digest cache, Content-Type / Content-Disposition from the name unless given, Range and
    conditional requests.  Takes ownership of ``opened`` (closed on every path)."""
    try:
        digests = await file_digests(files.digests, opened, files.background)
    except BaseException:
        opened.close()
        raise
    representation = Representation(
        body=SegmentMap([opened.segment()]),
        etag=opened.stat.etag,
        last_modified=opened.stat.last_modified,
        content_type=content_type or guess_content_type(opened.name),
        headers=[
            ("Content-Disposition", disposition or content_disposition(opened.name)),
            *headers,
            *(integrity_headers(digests) if digests is not None else ()),
        ],
        on_done=opened.close,
    )
    return await file_reply(request, representation, content_digest_max=files.content_digest_max)


async def file_reply(
    request: Request,
    representation: Representation,
    *,
    content_digest_max: int = DEFAULT_CONTENT_DIGEST_MAX,
) -> Response:
    """The reply to a GET or HEAD of ``representation``; takes ownership of its ``on_done``.

    A 206 to a GET whose body is at most ``content_digest_max`` bytes (0: any size)
    carries a ``Content-Digest`` of exactly the bytes it sends.  A HEAD reply never does:
    it has no content to digest, and hashing the bytes a GET would send is work a HEAD
    must not cause.
    """
    try:
        response = await _reply(request, representation)
        body = response.body
        if (
            response.status == 206
            and request.method != "HEAD"
            and isinstance(body, SegmentMap)
            and (not content_digest_max or body.total <= content_digest_max)
        ):
            sha256 = await content_sha256(body.segments)
            if sha256 is not None:
                response.headers.append(("Content-Digest", content_digest(sha256)))
    except BaseException:
        if representation.on_done is not None:
            representation.on_done()
        raise
    if response.on_done is None and representation.on_done is not None:
        # bodiless replies (304/412/416) release the file right away
        representation.on_done()
    return response


async def _reply(request: Request, representation: Representation) -> Response:
    validators = Validators(etag=representation.etag, last_modified=representation.last_modified)
    common = [
        ("ETag", representation.etag),
        ("Last-Modified", http_date(representation.last_modified)),
        ("Accept-Ranges", "bytes"),
    ]
    outcome = evaluate_preconditions(request.method, request.headers, validators)
    if outcome is Precondition.NOT_MODIFIED:
        return Response(304, common)
    if outcome is Precondition.FAILED:
        return error_response(PreconditionFailed())

    size = representation.size
    range_header = request.headers.get("range")
    if range_header is not None and not if_range_matches(request.headers, validators):
        range_header = None
    decision = decide_ranges(range_header, size)
    headers = [*common, *representation.headers]

    if decision.kind is RangeKind.UNSATISFIABLE:
        return error_response(RangeNotSatisfiable(size))
    if decision.kind is RangeKind.FULL:
        return Response(
            200,
            [("Content-Type", representation.content_type), *headers],
            representation.body,
            on_done=representation.on_done,
        )
    if len(decision.ranges) == 1:
        only = decision.ranges[0]
        return Response(
            206,
            [
                ("Content-Type", representation.content_type),
                ("Content-Range", only.content_range(size)),
                *headers,
            ],
            SegmentMap(representation.body.slice(only.start, only.stop)),
            on_done=representation.on_done,
        )
    boundary = new_boundary()
    return Response(
        206,
        [("Content-Type", multipart_content_type(boundary)), *headers],
        build_multipart(
            representation.body, decision.ranges, representation.content_type, boundary
        ),
        on_done=representation.on_done,
    )
