"""A stored file's reply: its :class:`~slipstream.http.representation.Representation`
(integrity headers from the digest cache) through the one reply function.

The decision (200/206/304/412/416, header fields, body slice) is
:func:`slipstream.http.reply.decide_reply`'s under the RFC 9110 policy; this module
adds ``Content-Digest`` to a 206, raises a refusal for the route's error renderer,
and maps the result onto a :class:`Response` (:func:`reply_response`, which the zip
service's route uses too).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import trio

from slipstream.digests import DigestCache
from slipstream.http.disposition import content_disposition
from slipstream.http.reply import RFC9110, Refusal, Reply, decide_reply
from slipstream.http.representation import Representation, guess_content_type
from slipstream.http.validators import Validators
from slipstream.segments import SegmentMap
from slipstream.send import StreamedBody
from slipstream.storage import OpenFile

from .config import DEFAULT_CONTENT_DIGEST_MAX
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
    representation: Representation[Refusal] = Representation(
        body=SegmentMap([opened.segment()]),
        validators=Validators(opened.stat.etag, opened.stat.last_modified),
        policy=RFC9110,
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
    representation: Representation[Refusal],
    *,
    content_digest_max: int = DEFAULT_CONTENT_DIGEST_MAX,
) -> Response:
    """The reply to a GET or HEAD of ``representation``; takes ownership of its ``on_done``.

    A 206 to a GET whose body is at most ``content_digest_max`` bytes (0: any size)
    carries a ``Content-Digest`` of exactly the bytes it sends.  A HEAD reply never does:
    it has no content to digest, and hashing the bytes a GET would send is work a HEAD
    must not cause.  A refusal (412, 416) is raised, for the route's error renderer.
    """
    try:
        outcome = decide_reply(request.method, request.headers, representation)
        if not isinstance(outcome, Reply):
            raise outcome  # a value until the surface's renderer (412, 416)
        response = reply_response(outcome, representation.on_done)
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
        # a bodiless reply (304) releases the file right away
        representation.on_done()
    return response


def reply_response(reply: Reply, on_done: Callable[[], None] | None = None) -> Response:
    """The :class:`Response` sending ``reply``; ``on_done`` goes with a body (a 304 has
    none: its caller releases what the representation holds)."""
    body = reply.body
    if body is None:
        return Response(reply.status, reply.headers)
    if not isinstance(body, SegmentMap | StreamedBody):
        raise TypeError(f"a reply body must be a SegmentMap or a StreamedBody, not {body!r}")
    return Response(reply.status, reply.headers, body, on_done=on_done)
