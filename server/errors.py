"""Where error values become HTTP replies.

Handlers raise :class:`~slipstream.errors.SlipstreamError` values; each API surface owns
the shape of its error bodies and has one :data:`ErrorRenderer`, registered with the
router by its route group (:meth:`~.router.Router.group`).  The router picks the
renderer for every error of a request, including those raised before any route runs
(404, 405) and the connection's own (413, 408, 431); the connection calls it, and an
exception nobody documented becomes the renderer's 500 (:func:`unexpected_error_response`).

The renderers: the usual ``{"error": "..."}`` (:func:`error_response`: ``/api/download``,
presigned URLs, ``/healthz``, ``/api/zip``, and every path no surface owns); seed 004's
html/json/redirect (``routes.zip_streams.render_zip_error``); the drive API's
``{"code", "message"}`` under ``/v2/`` (``routes.drive_errors.render_drive_error``); seed
001's ``{"success": false, "error"}`` (``routes.remote_downloads.render_download_error``).
The websocket surface answers with packet statuses (``ws.ws_status``).  Whatever the
shape, the headers an error implies come from :func:`error_headers`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from slipstream.errors import (
    InternalError,
    MethodNotAllowed,
    RangeNotSatisfiable,
    SlipstreamError,
)
from slipstream.http.contentrange import unsatisfied_range

from .http import Response, json_response

log = logging.getLogger("slipstream.server")

ErrorRenderer = Callable[[SlipstreamError], Response]
"""Turns an error value into the reply of one API surface."""


class StatusError(SlipstreamError):
    """An error known by its HTTP status alone (protocol failures: 400, 408, 413, 431...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = f"http_{status}"


def error_headers(error: SlipstreamError) -> list[tuple[str, str]]:
    """The header fields ``error``'s status calls for, in every error shape.

    ``Content-Range: bytes */SIZE`` with a 416, ``WWW-Authenticate`` with a 401 and
    ``Allow`` (RFC 9110 15.5.6) with a 405.
    """
    headers: list[tuple[str, str]] = []
    if isinstance(error, RangeNotSatisfiable):
        headers.append(("Content-Range", unsatisfied_range(error.size)))
    if error.status == 401:
        headers.append(("WWW-Authenticate", 'Bearer realm="slipstream"'))
    if isinstance(error, MethodNotAllowed):
        headers.append(("Allow", ", ".join(sorted(error.allowed))))
    return headers


def error_response(error: SlipstreamError) -> Response:
    """The server's usual error reply: ``{"error": message}`` plus :func:`error_headers`."""
    return json_response(error.status, {"error": error.message}, error_headers(error))


def unexpected_error_response(
    exc: BaseException, context: str, render: ErrorRenderer = error_response
) -> Response:
    """A 500 for an exception nobody documented: logged in full, never leaked."""
    log.error("unexpected error in %s", context, exc_info=exc)
    return render(InternalError())


def status_response(status: int, message: str) -> Response:
    """A JSON error reply for protocol-level failures (400, 408, 431, 503...)."""
    return error_response(StatusError(status, message))
