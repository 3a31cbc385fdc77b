"""The one place where error values become HTTP replies: ``{"error": "..."}`` JSON."""

from __future__ import annotations

import logging

from slipstream.errors import InternalError, RangeNotSatisfiable, SlipstreamError

from .http import Response, json_response

log = logging.getLogger("slipstream.server")


def error_response(error: SlipstreamError) -> Response:
    """The JSON reply for a documented error, with any headers it implies."""
    headers: list[tuple[str, str]] = []
    if isinstance(error, RangeNotSatisfiable):
        headers.append(("Content-Range", f"bytes */{error.size}"))
    if error.status == 401:
        headers.append(("WWW-Authenticate", 'Bearer realm="slipstream"'))
    return json_response(error.status, {"error": error.message}, headers)


def unexpected_error_response(exc: BaseException, context: str) -> Response:
    """A 500 for an exception nobody documented: logged in full, never leaked."""
    log.error("unexpected error in %s", context, exc_info=exc)
    return error_response(InternalError())


def status_response(status: int, message: str) -> Response:
    """A JSON error reply for protocol-level failures (400, 408, 431, 503...)."""
    return json_response(status, {"error": message})
