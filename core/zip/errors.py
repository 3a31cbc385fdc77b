"""Errors of the zip service (seed 004) and their three renderings (pure, no I/O).

Every error has a key, an HTTP status and a fixed message (:data:`ZIP_ERRORS`, the
seed's table), plus optional *records* (the URIs or parameters at fault).  A reply is
rendered by :func:`render_error` in one of the seed's formats:

* ``html``: a small self-contained page showing the key, the message and the records;
* ``json``: ``{"fs_error_key": ..., "fs_error_message": ..., "fs_error_records": [...]}``;
* ``redirect``: ``303`` to the client's ``fs_error_redirect_uri`` with ``fs_error_key``
  and ``fs_error_records`` (records joined with ``;``) added to its query.

``MISSING_REQUEST_ID``, ``MALFORMED_UUID`` and ``DOWNLOAD_EXPIRED`` are always HTML on the
stream URL (it has no format of its own); a POST that reuses a request id gets
``DOWNLOAD_EXPIRED`` in its own format (``html_only=False``).  One key extends the seed:
``MALFORMED_HEADER`` (400) refuses an ``fs_add_header-*`` parameter whose name is not an
HTTP token or whose value is not a valid header value.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from typing import Final
from urllib.parse import quote, urlsplit, urlunsplit

from slipstream.errors import SlipstreamError
from slipstream.http.contentrange import unsatisfied_range

__all__ = [
    "ALWAYS_HTML",
    "FORMATS",
    "ZIP_ERRORS",
    "ZipError",
    "render_error",
]

#: Response formats a client may ask for with ``fs_response_format``.
FORMATS: Final = ("html", "json", "redirect")

#: Error key -> (HTTP status, message shown to the client).
ZIP_ERRORS: Final[dict[str, tuple[int, str]]] = {
    "MALFORMED_JSON_BODY": (
        400,
        "The request body must be valid JSON when using the application/json content type header",
    ),
    "MALFORMED_URI_LIST": (
        400,
        "The fs_uri_list parameter value must either be a form-url encoded or json encoded array",
    ),
    "EMPTY_URI_LIST": (400, "The fs_uri_list parameter value must contain at least one URI"),
    "DUPLICATE_URIS": (400, "The fs_uri_list parameter value contains duplicate URIs"),
    "INVALID_URIS": (400, "The fs_uri_list parameter value contains one or more invalid URIs"),
    "MISSING_REQUEST_ID": (400, "This URL is missing a Request ID"),
    "EMPTY_ERROR_REDIRECT_URI": (
        400,
        "The fs_error_redirect_uri parameter value is empty and is required for redirect "
        "response format",
    ),
    "INVALID_ERROR_REDIRECT_URI": (
        400,
        "The fs_error_redirect_uri parameter value is invalid and is required for redirect "
        "response format",
    ),
    "MALFORMED_HEADER": (
        400,
        "An fs_add_header- parameter has an invalid header name or value",
    ),
    "MALFORMED_UUID": (400, "The Request ID in this URL is not a valid UUID"),
    "DOWNLOAD_EXPIRED": (404, "This download is unavailable or has expired"),
    "INVALID_RANGE_HEADER": (400, "Range header must start with bytes="),
    "MULTIPART_UNSUPPORTED": (416, "Multipart ranges are not supported"),
    "MALFORMED_RANGE": (416, "Range could not be parsed"),
    "RANGE_NOT_SATISFIABLE": (416, "Start of range outside zip size"),
    "UNAUTHORIZED_URIS": (
        403,
        "One or more of the files requested for zipping have not been permitted",
    ),
    "UPSTREAM_ERROR": (500, "Could not connect to authorization server"),
    "CHECKSUM_ERROR": (500, "Error occurred during checksum computation"),
    "FAILED_FETCHING_URIS": (
        502,
        "One or more of the files requested for zipping could not be fetched",
    ),
    "UNKNOWN": (500, "Unknown server error"),
    # Not in seed 004: the state store failed (disk full, I/O error); retrying later works.
    "STATE_UNAVAILABLE": (503, "The server cannot record this download now; try again later"),
}

#: Keys rendered as HTML whatever format was asked for.  (The seed's third one,
#: MALFORMED_UUID, is HTML on the stream URL because no format is known there; a bad
#: ``fs_request_id`` in a POST is answered in the format that POST asked for.)
ALWAYS_HTML: Final = frozenset({"MISSING_REQUEST_ID", "DOWNLOAD_EXPIRED"})

_NO_STORE: Final = ("Cache-Control", "no-store")
_URI_SAFE: Final = "!#$%&'()*+,-./:;=?@[]_~"


class ZipError(SlipstreamError):
    """An error of the zip service, ready to be rendered with :func:`render_error`.

    ``key`` (also its ``code``) must be in :data:`ZIP_ERRORS` (``ValueError``
    otherwise), which gives ``status`` and ``message``.  ``records`` are the offending
    values.  ``fmt`` and ``redirect_uri`` are the response format the client asked for,
    when known when the error is raised (``parse_zip_request`` fills them in; ``fmt``
    defaults to ``html``).
    ``size`` is the zip's size for the 416 errors (``Content-Range: bytes */size``).
    """

    def __init__(
        self,
        key: str,
        records: Iterable[str] = (),
        *,
        fmt: str = "html",
        redirect_uri: str | None = None,
        size: int | None = None,
        html_only: bool | None = None,
    ) -> None:
        if key not in ZIP_ERRORS:
            raise ValueError(f"unknown zip error key {key!r}")
        status, message = ZIP_ERRORS[key]
        super().__init__(message, code=key, status=status)
        self.key = key
        self.records: tuple[str, ...] = tuple(records)
        self.fmt = fmt
        self.redirect_uri = redirect_uri
        self.size = size
        #: Rendered as HTML whatever ``fmt`` says (default: the key is in ALWAYS_HTML,
        #: the stream URL's rule; a POST's DOWNLOAD_EXPIRED passes False).
        self.html_only = key in ALWAYS_HTML if html_only is None else html_only

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"

    def with_format(self, fmt: str, redirect_uri: str | None) -> ZipError:
        """A copy of this error to be rendered in ``fmt`` (with ``redirect_uri``)."""
        return ZipError(
            self.key,
            self.records,
            fmt=fmt,
            redirect_uri=redirect_uri,
            size=self.size,
            html_only=self.html_only,
        )

    def render(self) -> tuple[int, list[tuple[str, str]], bytes]:
        """``render_error(self, self.fmt, self.redirect_uri)``."""
        return render_error(self, self.fmt, self.redirect_uri)


def _html_page(error: ZipError) -> bytes:
    esc = html.escape
    records = "".join(f"<li><code>{esc(r)}</code></li>" for r in error.records)
    record_list = f"<ul>{records}</ul>" if records else ""
    page = (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Download error: {esc(error.key)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:42rem;margin:3rem auto;"
        "padding:0 1rem;color:#222}code{word-break:break-all}"
        ".key{color:#a11;font-family:monospace}</style></head><body>"
        "<h1>Your download could not be prepared</h1>"
        "<p>Please try again later. If the problem persists, contact your system "
        "administrator and give them the details below.</p>"
        f'<p class="key">{esc(error.key)}</p>'
        f"<p>{esc(error.message)}</p>"
        f"{record_list}"
        "</body></html>\n"
    )
    return page.encode("utf-8", errors="replace")


def _redirect_location(uri: str, error: ZipError) -> str:
    params = f"fs_error_key={quote(error.key, safe='')}"
    if error.records:
        records = quote(";".join(error.records), safe="", errors="replace")
        params += f"&fs_error_records={records}"
    parts = urlsplit(uri)
    query = f"{parts.query}&{params}" if parts.query else params
    # Percent-encode what a header may not hold (non-ASCII, spaces...), keep the rest.
    return quote(urlunsplit(parts._replace(query=query)), safe=_URI_SAFE, errors="replace")


def render_error(
    error: ZipError, fmt: str, redirect_uri: str | None
) -> tuple[int, list[tuple[str, str]], bytes]:
    """``(status, headers, body)`` of the reply for ``error`` in format ``fmt``.

    ``html`` and ``json`` use ``error.status``; ``redirect`` is a ``303`` to
    ``redirect_uri`` with ``fs_error_key`` (and ``fs_error_records`` when there are
    records) appended to its query, percent-encoded.  An unknown ``fmt``, ``redirect``
    without a ``redirect_uri``, and an ``error.html_only`` error (by default the keys in
    :data:`ALWAYS_HTML`) give ``html``.
    Headers: ``Content-Type`` and ``Cache-Control: no-store`` (``Location`` for a
    redirect; ``Content-Range: bytes */size`` for a 416 when ``error.size`` is known);
    ``Content-Length`` is left to the caller.
    """
    if error.html_only or fmt not in FORMATS:
        fmt = "html"
    if fmt == "redirect":
        if redirect_uri:
            location = _redirect_location(redirect_uri, error)
            headers = [("Location", location), ("Content-Type", "text/plain; charset=utf-8")]
            return 303, [*headers, _NO_STORE], b""
        fmt = "html"
    headers = []
    if error.status == 416 and error.size is not None:
        headers.append(("Content-Range", unsatisfied_range(error.size)))
    if fmt == "json":
        payload = {
            "fs_error_key": error.key,
            "fs_error_message": error.message,
            "fs_error_records": list(error.records),
        }
        body = json.dumps(payload, separators=(",", ":")).encode("ascii")
        return error.status, [("Content-Type", "application/json"), _NO_STORE, *headers], body
    content_type = ("Content-Type", "text/html; charset=utf-8")
    return error.status, [content_type, _NO_STORE, *headers], _html_page(error)
