"""Seed 004: ``POST /download`` -> ``303 /stream/<uuid>``; ``GET``/``HEAD /stream/<uuid>``.

No bearer token here (as in the seed): the security is the ``--zip-allow-prefix`` allow
list.  Handlers raise :class:`~slipstream.zip.errors.ZipError` values carrying the
request's format (html, json or redirect); the routes are one route group whose renderer,
:func:`render_zip_error`, turns them into replies (MISSING_REQUEST_ID, MALFORMED_UUID and
DOWNLOAD_EXPIRED are always HTML), and gives any other error the usual ``{"error"}``.
A ``/stream`` reply goes through the one reply function
(:func:`slipstream.http.reply.decide_reply`) with the seed's Range rules as its policy
(:class:`slipstream.zip.ranges.ZipStreamRanges`), which win over RFC 9110 there.  The work
is done by :class:`slipstream.zip.service.ZipService`.

A ``GET /stream`` reply is opened before its head is sent (see
:meth:`slipstream.zip.stream.ZipBody.open`): members it cannot fetch then are ``502
FAILED_FETCHING_URIS`` listing them, an upstream object found changed is ``500
CHECKSUM_ERROR``, both in the manifest's format; only a failure after the first body
byte cuts the reply.  A range that starts deeper than ``skip_limit`` into a member whose
upstream ignores Range is answered with the whole zip (``200``), as the seed says
FileSlide does.  Anything unexpected on either route is the seed's ``UNKNOWN`` (500) in
the format of the POST (or of the manifest), logged with its traceback.
"""

from __future__ import annotations

import logging
import uuid

import trio

from slipstream.errors import SlipstreamError, StateUnavailable
from slipstream.fetch import FetchError
from slipstream.http.disposition import content_disposition
from slipstream.http.reply import decide_reply
from slipstream.http.representation import Representation
from slipstream.http.validators import Validators
from slipstream.send import BodyTruncated, BodyWriter, StreamedBody
from slipstream.zip.errors import ZipError
from slipstream.zip.form import parse_zip_request
from slipstream.zip.ranges import ZipStreamRanges
from slipstream.zip.remote import MemberChanged
from slipstream.zip.service import Manifest, ZipService
from slipstream.zip.stream import MembersUnavailable, ZipBody

from ..errors import error_response
from ..file_reply import reply_response
from ..http import Request, Response
from ..metrics import Metrics
from ..router import Route, Router

log = logging.getLogger("slipstream.zip")

STREAM_PREFIX = "/stream/"
UPSTREAM_KEYS = frozenset({"FAILED_FETCHING_URIS", "UPSTREAM_ERROR", "CHECKSUM_ERROR"})
"""Zip errors caused by an upstream (counted in ``slipstream_upstream_errors_total``)."""


def render_zip_error(error: SlipstreamError) -> Response:
    """The zip surface's renderer: a :class:`ZipError` in its format, else ``{"error"}``."""
    if not isinstance(error, ZipError):
        return error_response(error)
    status, headers, body = error.render()
    return Response(status, headers, body)


def stream_location(public_url: str | None, manifest_id: str) -> str:
    """Where ``POST /download`` sends the client: absolute under a configured public URL
    (the server may sit behind a proxy or CDN), else relative to the request's origin."""
    base = (public_url or "").rstrip("/")
    return f"{base}{STREAM_PREFIX}{manifest_id}"


def register(
    router: Router,
    *,
    service: ZipService,
    public_url: str | None,
    background: trio.Nursery,
    metrics: Metrics | None = None,
) -> None:
    """Add ``/download`` and ``/stream/...``.

    ``public_url`` is the configured ``--public-url`` (None: relative ``Location``);
    ``background`` runs the CRC computations of the zips being sent; ``metrics`` (None:
    metrics are off) sees the live streams and the upstream errors.
    """

    async def post_download(request: Request) -> Response:
        parsed = parse_zip_request(request.headers.get("content-type"), request.body)
        try:
            manifest = await service.create(parsed, list(request.headers.items()))
        except ZipError as error:
            if metrics is not None and error.key in UPSTREAM_KEYS:
                metrics.zip_upstream_errors.inc()
            raise
        location = stream_location(public_url, manifest.id)
        return Response(303, [("Location", location), ("Cache-Control", "no-store")])

    async def missing_id(request: Request) -> Response:
        raise ZipError("MISSING_REQUEST_ID")

    async def stream(request: Request) -> Response:
        return await stream_reply(service, background, request, metrics)

    routes = router.group(render_zip_error)
    routes.add("/download", unknown_in_post_format(post_download), methods=("POST",))
    routes.add("/stream", missing_id)
    routes.add(STREAM_PREFIX, missing_id)
    routes.add_prefix(STREAM_PREFIX, stream)


def unknown_in_post_format(handler: Route) -> Route:
    """``handler`` with anything unexpected raised as ``UNKNOWN`` in the POST's format."""

    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except ZipError:
            raise
        except StateUnavailable:  # logged by the store
            fmt, redirect = post_format(request)
            raise ZipError("STATE_UNAVAILABLE", fmt=fmt, redirect_uri=redirect) from None
        except Exception:
            log.exception("POST %s failed unexpectedly", request.path)
            fmt, redirect = post_format(request)
            raise ZipError("UNKNOWN", fmt=fmt, redirect_uri=redirect) from None

    return guarded


def post_format(request: Request) -> tuple[str, str | None]:
    """The response format (and error redirect URI) a ``POST /download`` asked for.

    When even parsing the request failed unexpectedly, the seed's default for its
    encoding: ``json`` for a JSON body, ``html`` for a form.
    """
    content_type = request.headers.get("content-type")
    try:
        parsed = parse_zip_request(content_type, request.body)
    except ZipError as error:
        return error.fmt, error.redirect_uri
    except Exception:
        return ("json" if "json" in (content_type or "").lower() else "html"), None
    return parsed.response_format, parsed.error_redirect_uri


async def stream_reply(
    service: ZipService,
    background: trio.Nursery,
    request: Request,
    metrics: Metrics | None = None,
) -> Response:
    """``GET``/``HEAD /stream/<uuid>``: 200 or 206 of the zip; raises the seed's error."""
    fmt, redirect = "html", None  # no format is known until the manifest is
    try:
        text = request.path[len(STREAM_PREFIX) :]
        try:
            ident = str(uuid.UUID(text))
        except ValueError:
            raise ZipError("MALFORMED_UUID") from None
        if ident != text.lower():  # braces, "urn:uuid:" and other spellings are not the URL
            raise ZipError("MALFORMED_UUID")
        manifest = await service.manifest(ident)
        if manifest is None:
            raise ZipError("DOWNLOAD_EXPIRED")
        fmt, redirect = manifest.response_format, manifest.error_redirect_uri
        return await _zip_reply(service, background, manifest, request, metrics)
    except ZipError:
        raise
    except StateUnavailable:  # logged by the store
        raise ZipError("STATE_UNAVAILABLE", fmt=fmt, redirect_uri=redirect) from None
    except Exception:
        log.exception("%s %s failed unexpectedly", request.method, request.path)
        raise ZipError("UNKNOWN", fmt=fmt, redirect_uri=redirect) from None


async def _zip_reply(
    service: ZipService,
    background: trio.Nursery,
    manifest: Manifest,
    request: Request,
    metrics: Metrics | None,
) -> Response:
    """The 200/206 of a live manifest, opened up to its first byte (or the seed's error)."""
    ident = manifest.id
    fmt, redirect = manifest.response_format, manifest.error_redirect_uri
    source = service.source(manifest)
    if source.failure is not None:
        key = "CHECKSUM_ERROR" if isinstance(source.failure, MemberChanged) else "UPSTREAM_ERROR"
        raise ZipError(key, fmt=fmt, redirect_uri=redirect)

    async def delivered(first: int, end: int) -> None:
        await service.delivered(ident, first, end, source.layout.total)

    async def release() -> None:
        await service.release(ident)

    representation = Representation(
        body=source.parts(background, delivered, release),
        validators=Validators(manifest.etag, manifest.last_modified),
        policy=ZipStreamRanges(source.range_possible),
        content_type="application/zip",
        headers=[
            ("Content-Disposition", content_disposition(manifest.file_name)),
            ("Cache-Control", "private, no-transform"),
        ],
    )
    outcome = decide_reply(request.method, request.headers, representation)
    if isinstance(outcome, ZipError):
        raise outcome.with_format(fmt, redirect)
    body = outcome.body
    if not isinstance(body, ZipBody):  # pragma: no cover - the policy never answers 304
        raise TypeError(f"a zip reply without a zip body: {outcome.status}")
    service.begin(ident)  # released by ``body.aclose()``, which the connection calls
    sent: StreamedBody = body if metrics is None else _Watched(body, metrics)
    if request.method != "HEAD":
        try:
            await body.open()
        except MembersUnavailable as exc:
            await sent.aclose()
            if metrics is not None:
                metrics.zip_upstream_errors.inc()
            raise ZipError(
                "FAILED_FETCHING_URIS", exc.uris, fmt=fmt, redirect_uri=redirect
            ) from None
        except MemberChanged:
            await sent.aclose()
            if metrics is not None:
                metrics.zip_upstream_errors.inc()
            raise ZipError("CHECKSUM_ERROR", fmt=fmt, redirect_uri=redirect) from None
        except BaseException:
            await sent.aclose()
            raise
    # The connection sends the body and then calls ``body.aclose()`` (which releases it).
    response = reply_response(outcome)
    response.body = sent
    return response


class _Watched(StreamedBody):
    """A zip reply's body as the metrics see it: live from now until :meth:`aclose`, and a
    reply cut by an upstream failure counted (once per reply, not per chunk)."""

    def __init__(self, body: ZipBody, metrics: Metrics) -> None:
        self._body = body
        self._metrics = metrics
        self._live = True
        metrics.zip_streams.inc()

    @property
    def total(self) -> int:
        """The zip body's length."""
        return self._body.total

    async def write(self, out: BodyWriter) -> None:
        """Send the zip body; count a cut caused by an upstream."""
        try:
            await self._body.write(out)
        except BodyTruncated as exc:
            if isinstance(exc.__cause__, FetchError | MemberChanged | MembersUnavailable):
                self._metrics.zip_upstream_errors.inc()
            raise

    async def aclose(self) -> None:
        """Release the zip body; the stream is no longer live."""
        if self._live:
            self._live = False
            self._metrics.zip_streams.dec()
        await self._body.aclose()
