"""Seed 001: remote downloads into the server's storage, with progress and history.

``GET /{directory}?download=URL[&filename=][&timeout=][&sha256=]`` starts a job (202);
``GET /{directory}?downloads=`` and ``GET /api/v1/downloads`` list active jobs;
``GET /?download_history=`` (or ``/{directory}?download_history=`` for one directory)
lists finished ones; ``DELETE /api/v1/downloads/{id}`` cancels.  Bearer auth on all.
The work is done by :class:`slipstream.jobs.Jobs`; this module maps HTTP to it.

Errors are seed 001's: ``{"success": false, "error": KEY}`` (:class:`DownloadError`), for
a refused start with the job's fields too (:class:`StartRefused`), rendered by
:func:`render_download_error`; auth and path errors of the listings keep the server's
usual ``{"error": ...}``.

A GET whose query names ``download``, ``downloads`` or ``download_history`` is one of
these requests whatever its path (a query route), so any directory can be named,
including ``download``, ``healthz`` or ``api/v1/downloads``.  The directory is the
request path as the connection decoded it (percent-decoded once: ``/a%2520b`` is the
directory ``a%20b``).
"""

from __future__ import annotations

from typing import Final

from slipstream.errors import SlipstreamError, StateUnavailable
from slipstream.filenames import safe_filename, url_filename
from slipstream.jobs.runner import Jobs
from slipstream.jobs.settings import JobRefused
from slipstream.numeric import InvalidNumber, parse_uint
from slipstream.pathsafety import safe_relative_path

from ..auth import require_token
from ..config import Config
from ..errors import error_response
from ..http import Request, Response, json_response
from ..router import Router

DOWNLOADS_PATH = "/api/v1/downloads"
QUERY_KEYS: Final = ("download", "downloads", "download_history")
"""A GET naming any of these is a seed-001 request, whatever its path."""


class DownloadError(SlipstreamError):
    """A seed-001 error reply ``{"success": false, "error": code}``."""

    def __init__(self, code: str, status: int, message: str | None = None) -> None:
        super().__init__(message, code=code, status=status)


class StartRefused(DownloadError):
    """A refused ``?download=`` start: the reply also names the job's would-be
    ``filename`` and ``path``, with ``download_id`` null and the ``message``."""

    def __init__(self, code: str, status: int, message: str, *, filename: str, path: str) -> None:
        super().__init__(code, status, message)
        self.filename = filename
        self.path = path


def render_download_error(error: SlipstreamError) -> Response:
    """The seed-001 surface's replies for ``error`` (other errors: ``{"error": ...}``)."""
    if isinstance(error, StartRefused):
        body = {
            "download_id": None,
            "filename": error.filename,
            "path": error.path,
            "success": False,
            "message": error.message,
            "error": error.code,
        }
        return json_response(error.status, body)
    if isinstance(error, DownloadError | StateUnavailable):
        return json_response(error.status, {"success": False, "error": error.code})
    return error_response(error)


def register(router: Router, *, config: Config, jobs: Jobs) -> None:
    """Add the seed-001 routes (a query route for ``/{directory}?...``, and /api/v1/downloads).

    ``config`` gives the tokens (read per request) and ``--allow-download``.
    """

    async def directory_query(request: Request) -> Response:
        require_token(request, config.tokens)
        query = request.query
        if "download" in query:
            return await start_download(config, jobs, request)
        if "downloads" in query:
            return json_response(200, {"downloads": jobs.active(_folder(request))})
        folder = _folder(request)
        return json_response(200, {"history": await jobs.history(folder or None)})

    async def list_all(request: Request) -> Response:
        require_token(request, config.tokens)
        return json_response(200, {"downloads": jobs.active()})

    async def cancel(request: Request) -> Response:
        require_token(request, config.tokens)
        job_id = request.path.removeprefix(DOWNLOADS_PATH + "/")
        if "/" in job_id or not await jobs.cancel_anywhere(job_id):
            raise DownloadError("DOWNLOAD_NOT_FOUND", 404, "no such download")
        return json_response(200, {"success": True, "id": job_id, "status": "cancelled"})

    routes = router.group(render_download_error)
    routes.add_query_route(QUERY_KEYS, directory_query, methods=("GET",))
    routes.add(DOWNLOADS_PATH, list_all)
    routes.add_prefix(DOWNLOADS_PATH + "/", cancel, methods=("DELETE",))


def _folder(request: Request) -> str:
    """The directory named by the request path, normalised (``""`` is the root)."""
    path = request.path.strip("/")
    return "/".join(safe_relative_path(path)) if path else ""


def parse_timeout(text: str | None) -> int | None:
    """``timeout=`` as whole seconds: None when absent or empty (the server default).

    Raises :class:`~slipstream.numeric.InvalidNumber` for anything but ASCII digits
    (no sign, blank, decimal point or other scripts' digits); the range is the job's.
    """
    if not text:
        return None
    return parse_uint(text)


async def start_download(config: Config, jobs: Jobs, request: Request) -> Response:
    """``GET /{directory}?download=URL``: 202 with the job id; raises the seed's error."""
    url = request.arg("download") or ""
    given = request.arg("filename") or None
    filename = safe_filename(given or url_filename(url) or "download")
    raw_folder = request.path.strip("/")
    if not config.allow_download:
        raise DownloadError("DOWNLOAD_FORBIDDEN", 403, "remote downloads are disabled")
    path = f"{raw_folder}/{filename}" if raw_folder else filename
    try:
        timeout = parse_timeout(request.arg("timeout"))
    except InvalidNumber:
        message = "timeout must be whole seconds, 1 to 604800"
        raise StartRefused("INVALID_TIMEOUT", 400, message, filename=filename, path=path) from None
    try:
        record = await jobs.start(
            url,
            raw_folder,
            filename=given,
            timeout=timeout,
            sha256=request.arg("sha256") or None,
        )
    except SlipstreamError as exc:  # JobRefused, PathNotAllowed, or StateUnavailable (503)
        keep = isinstance(exc, JobRefused | StateUnavailable)
        code = exc.code if keep else "PATH_NOT_ALLOWED"
        raise StartRefused(code, exc.status, exc.message, filename=filename, path=path) from None
    body = {
        "download_id": record.id,
        "filename": record.filename,
        "path": record.file_path,
        "success": True,
        "message": "Download started",
        "error": None,
    }
    return json_response(202, body)
