"""Seed 001: remote downloads into the server's storage, with progress and history.

``GET /{directory}?download=URL[&filename=][&timeout=][&sha256=]`` starts a job (202);
``GET /{directory}?downloads=`` and ``GET /api/v1/downloads`` list active jobs;
``GET /?download_history=`` (or ``/{directory}?download_history=`` for one directory)
lists finished ones; ``DELETE /api/v1/downloads/{id}`` cancels.  Bearer auth on all.
The work is done by :class:`slipstream.jobs.Jobs`; this module maps HTTP to it.

A GET whose query names ``download``, ``downloads`` or ``download_history`` is one of
these requests whatever its path (a query route), so any directory can be named,
including ``download``, ``healthz`` or ``api/v1/downloads``.  The directory is the
request path as the connection decoded it (percent-decoded once: ``/a%2520b`` is the
directory ``a%20b``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from slipstream.errors import ServiceUnavailable, SlipstreamError
from slipstream.filenames import safe_filename, url_filename
from slipstream.jobs.runner import JobRefused, Jobs
from slipstream.numeric import InvalidNumber, parse_uint
from slipstream.pathsafety import safe_relative_path

from ..auth import require_token
from ..http import Request, Response, json_response
from ..router import Router

if TYPE_CHECKING:
    from ..app import App

DOWNLOADS_PATH = "/api/v1/downloads"
QUERY_KEYS: Final = ("download", "downloads", "download_history")
"""A GET naming any of these is a seed-001 request, whatever its path."""


def register(router: Router, app: App) -> None:
    """Add the seed-001 routes (a query route for ``/{directory}?...``, and /api/v1/downloads)."""

    async def directory_query(request: Request) -> Response:
        require_token(request, app.config.tokens)
        query = request.query
        if "download" in query:
            return await start_download(app, request)
        if "downloads" in query:
            return json_response(200, {"downloads": app_jobs(app).active(_folder(request))})
        folder = _folder(request)
        return json_response(200, {"history": await app_jobs(app).history(folder or None)})

    async def list_all(request: Request) -> Response:
        require_token(request, app.config.tokens)
        return json_response(200, {"downloads": app_jobs(app).active()})

    async def cancel(request: Request) -> Response:
        require_token(request, app.config.tokens)
        job_id = request.path.removeprefix(DOWNLOADS_PATH + "/")
        if "/" in job_id or not app_jobs(app).cancel(job_id):
            return json_response(404, {"success": False, "error": "DOWNLOAD_NOT_FOUND"})
        return json_response(200, {"success": True, "id": job_id, "status": "cancelled"})

    router.add_query_route(QUERY_KEYS, directory_query, methods=("GET",))
    router.add(DOWNLOADS_PATH, list_all)
    router.add_prefix(DOWNLOADS_PATH + "/", cancel, methods=("DELETE",))


def app_jobs(app: App) -> Jobs:
    """The app's job manager (present while the server runs)."""
    if app.jobs is None:
        raise ServiceUnavailable("remote downloads are not running")
    return app.jobs


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


def _failure(status: int, key: str, message: str, filename: str, folder: str) -> Response:
    path = f"{folder}/{filename}" if folder else filename
    body = {
        "download_id": None,
        "filename": filename,
        "path": path,
        "success": False,
        "message": message,
        "error": key,
    }
    return json_response(status, body)


async def start_download(app: App, request: Request) -> Response:
    """``GET /{directory}?download=URL``: 202 with the job id, or the seed's error."""
    url = request.arg("download") or ""
    given = request.arg("filename") or None
    filename = safe_filename(given or url_filename(url) or "download")
    raw_folder = request.path.strip("/")
    if not app.config.allow_download:
        return json_response(403, {"success": False, "error": "DOWNLOAD_FORBIDDEN"})
    try:
        timeout = parse_timeout(request.arg("timeout"))
    except InvalidNumber:
        message = "timeout must be whole seconds, 1 to 604800"
        return _failure(400, "INVALID_TIMEOUT", message, filename, raw_folder)
    try:
        record = await app_jobs(app).start(
            url,
            raw_folder,
            filename=given,
            timeout=timeout,
            sha256=request.arg("sha256") or None,
        )
    except JobRefused as exc:
        return _failure(exc.status, exc.key, exc.message, filename, raw_folder)
    except SlipstreamError as exc:
        return _failure(exc.status, "PATH_NOT_ALLOWED", exc.message, filename, raw_folder)
    body = {
        "download_id": record.id,
        "filename": record.filename,
        "path": record.file_path,
        "success": True,
        "message": "Download started",
        "error": None,
    }
    return json_response(202, body)
