"""Seed 004: ``POST /download`` -> ``303 /stream/<uuid>``; ``GET``/``HEAD /stream/<uuid>``.

No bearer token here (as in the seed): the security is the ``--zip-allow-prefix`` allow
list.  Errors are rendered in the request's format (html, json or redirect) by
:mod:`slipstream.zip.errors`; MISSING_REQUEST_ID, MALFORMED_UUID and DOWNLOAD_EXPIRED are
always HTML.  On ``/stream`` the seed's Range rules win over RFC 9110 (see
:mod:`slipstream.zip.ranges`).  The work is done by :class:`slipstream.zip.service.ZipService`.

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
from typing import TYPE_CHECKING

from slipstream.errors import ServiceUnavailable, SlipstreamError
from slipstream.http.conditional import Validators, http_date, if_range_matches
from slipstream.http.disposition import content_disposition
from slipstream.zip.errors import ZipError
from slipstream.zip.form import parse_zip_request
from slipstream.zip.ranges import content_range, parse_zip_range
from slipstream.zip.remote import MemberChanged
from slipstream.zip.service import Manifest, ZipService
from slipstream.zip.stream import MembersUnavailable

from ..http import Request, Response
from ..router import Route, Router

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("slipstream.zip")

STREAM_PREFIX = "/stream/"


def render(error: ZipError) -> Response:
    """The reply for a zip-service error, in the error's format."""
    status, headers, body = error.render()
    return Response(status, headers, body)


def zip_service(app: App) -> ZipService:
    """The app's zip service (present while the server runs)."""
    if app.zip_service is None:
        raise ServiceUnavailable("the zip service is not running")
    return app.zip_service


def stream_location(app: App, manifest_id: str) -> str:
    """Where ``POST /download`` sends the client: absolute under a configured public URL
    (the server may sit behind a proxy or CDN), else relative to the request's origin."""
    base = (app.config.public_url or "").rstrip("/")
    return f"{base}{STREAM_PREFIX}{manifest_id}"


def register(router: Router, app: App) -> None:
    """Add ``/download`` and ``/stream/...``."""

    async def post_download(request: Request) -> Response:
        service = zip_service(app)
        try:
            parsed = parse_zip_request(request.headers.get("content-type"), request.body)
            manifest = await service.create(parsed, list(request.headers.items()))
        except ZipError as error:
            return render(error)
        headers = [("Location", stream_location(app, manifest.id)), ("Cache-Control", "no-store")]
        return Response(303, headers)

    async def missing_id(request: Request) -> Response:
        return render(ZipError("MISSING_REQUEST_ID"))

    async def stream(request: Request) -> Response:
        return await stream_reply(app, request)

    router.add("/download", unknown_in_post_format(post_download), methods=("POST",))
    router.add("/stream", missing_id)
    router.add(STREAM_PREFIX, missing_id)
    router.add_prefix(STREAM_PREFIX, stream)


def unknown_in_post_format(handler: Route) -> Route:
    """``handler`` with anything unexpected answered as ``UNKNOWN`` in the POST's format."""

    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except SlipstreamError:
            raise
        except Exception:
            log.exception("POST %s failed unexpectedly", request.path)
            fmt, redirect = post_format(request)
            return render(ZipError("UNKNOWN", fmt=fmt, redirect_uri=redirect))

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


async def stream_reply(app: App, request: Request) -> Response:
    """``GET``/``HEAD /stream/<uuid>``: 200 or 206 of the zip, or the seed's error."""
    service = zip_service(app)
    fmt, redirect = "html", None  # no format is known until the manifest is
    try:
        text = request.path[len(STREAM_PREFIX) :]
        try:
            ident = str(uuid.UUID(text))
        except ValueError:
            return render(ZipError("MALFORMED_UUID"))
        if ident != text.lower():  # braces, "urn:uuid:" and other spellings are not the URL
            return render(ZipError("MALFORMED_UUID"))
        manifest = await service.manifest(ident)
        if manifest is None:
            return render(ZipError("DOWNLOAD_EXPIRED"))
        fmt, redirect = manifest.response_format, manifest.error_redirect_uri
        return await _zip_reply(app, service, manifest, request)
    except SlipstreamError:
        raise
    except Exception:
        log.exception("%s %s failed unexpectedly", request.method, request.path)
        return render(ZipError("UNKNOWN", fmt=fmt, redirect_uri=redirect))


async def _zip_reply(
    app: App, service: ZipService, manifest: Manifest, request: Request
) -> Response:
    """The 200/206 of a live manifest, opened up to its first byte (or the seed's error)."""
    ident = manifest.id
    fmt, redirect = manifest.response_format, manifest.error_redirect_uri
    source = service.source(manifest)
    if source.failure is not None:
        key = "CHECKSUM_ERROR" if isinstance(source.failure, MemberChanged) else "UPSTREAM_ERROR"
        return render(ZipError(key, fmt=fmt, redirect_uri=redirect))
    total = source.layout.total
    validators = Validators(manifest.etag, manifest.last_modified)
    header = request.headers.get("range")
    if header is not None and not if_range_matches(request.headers, validators):
        header = None
    try:
        chosen = parse_zip_range(header, total)
    except ZipError as error:
        return render(error.with_format(fmt, redirect))
    if chosen is not None and not source.range_possible(*chosen):
        chosen = None  # too deep into a member whose upstream ignores Range: the whole zip
    start, stop = chosen if chosen is not None else (0, total)
    headers = [
        ("Content-Type", "application/zip"),
        ("Content-Disposition", content_disposition(manifest.file_name)),
        ("Accept-Ranges", "bytes"),
        ("ETag", manifest.etag),
        ("Last-Modified", http_date(manifest.last_modified)),
        ("Cache-Control", "private, no-transform"),
    ]
    if chosen is not None:
        headers.append(("Content-Range", content_range(start, stop, total)))
    background = app.background
    if background is None:
        raise ServiceUnavailable("the server is not running")
    service.begin(ident)

    async def delivered(first: int, end: int) -> None:
        await service.delivered(ident, first, end, total)

    async def release() -> None:
        await service.release(ident)

    body = source.body(start, stop, background, delivered, release)
    if request.method != "HEAD":
        try:
            await body.open()
        except MembersUnavailable as exc:
            await body.aclose()
            return render(
                ZipError("FAILED_FETCHING_URIS", exc.uris, fmt=fmt, redirect_uri=redirect)
            )
        except MemberChanged:
            await body.aclose()
            return render(ZipError("CHECKSUM_ERROR", fmt=fmt, redirect_uri=redirect))
        except BaseException:
            await body.aclose()
            raise
    # The connection sends the body and then calls ``body.aclose()`` (which releases it).
    return Response(206 if chosen is not None else 200, headers, body)
