"""``GET /`` (the web page) and ``GET /static/<name>`` (its scripts and style sheet).

The files ship inside the package (``slipstream/server/web/``), are served through the
one file reply (ETag, ``Last-Modified``, conditional requests and ranges, like every
file) and only by the names listed in :data:`ASSETS`: nothing else of the package, or
of the disk, is reachable here.  No token is needed to load the page; everything it
shows comes from the authenticated public APIs, called with the token the user types.

``Cache-Control: no-cache`` makes a browser revalidate (a ``304`` while the file is
unchanged), so a new version of the server is never mixed with an old cached script.
The Content-Security-Policy lets the page load only its own files and talk only to
its own origin (``fetch`` and the websocket).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Final

from slipstream.errors import NotFound
from slipstream.storage import LocalStorage

from ..errors import error_response
from ..file_reply import StoredFiles, stored_file_reply
from ..http import Request, Response
from ..router import Router

PAGE: Final = "index.html"
STATIC_PREFIX: Final = "/static/"
ASSETS: Final[Mapping[str, str]] = {
    "index.html": "text/html; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "browse.js": "text/javascript; charset=utf-8",
    "pull.js": "text/javascript; charset=utf-8",
    "format.js": "text/javascript; charset=utf-8",
}
"""The shipped files, by name, with their media types."""

SECURITY_HEADERS: Final = (
    ("Cache-Control", "no-cache"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
)


def web_directory() -> Path:
    """The real folder of the shipped files (an editable install links each file from
    its source folder: the page is resolved through one of them)."""
    page = resources.files("slipstream.server").joinpath("web", PAGE)
    return Path(str(page)).resolve().parent


def register(router: Router, files: StoredFiles) -> None:
    """Add ``GET /`` and ``GET /static/<name>`` (errors ``{"error": ...}``)."""
    storage = LocalStorage(web_directory())

    async def serve(request: Request, name: str) -> Response:
        content_type = ASSETS.get(name)
        if content_type is None:
            raise NotFound(f"no such file {name}")
        return await stored_file_reply(
            request,
            files,
            storage.open(name),
            content_type=content_type,
            disposition="inline",
            headers=SECURITY_HEADERS,
        )

    async def page(request: Request) -> Response:
        return await serve(request, PAGE)

    async def asset(request: Request) -> Response:
        return await serve(request, request.path[len(STATIC_PREFIX) :])

    group = router.group(error_response)
    group.add("/", page)
    group.add_prefix(STATIC_PREFIX, asset)
