"""``GET /api/zip?path=DIR`` (Bearer): a directory of the root as a resumable zip.

The same deterministic STORED zip as the zip service, built from local files with CRCs
from the digest cache (see :mod:`slipstream.zip.local`); Range, If-Range, HEAD and
conditional requests follow RFC 9110 like every file reply.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from slipstream.errors import ServiceUnavailable
from slipstream.send import BodyTruncated
from slipstream.zip.local import local_zip

from ..auth import require_token
from ..file_reply import file_reply
from ..http import Request, Response
from ..router import Router

if TYPE_CHECKING:
    from ..app import App


def register(router: Router, app: App) -> None:
    """Add ``/api/zip``."""

    async def api_zip(request: Request) -> Response:
        require_token(request, app.config.tokens)
        path = request.arg("path") or ""
        directory = app.spaces["root"].resolve_directory(path)
        root = directory == app.spaces["root"].base
        name = "download" if root else os.path.basename(directory)
        try:
            zipped = await local_zip(
                directory, f"{name}.zip", app.digests, hidden=[str(app.config.state_path)]
            )
        except BodyTruncated as exc:
            raise ServiceUnavailable(f"{exc}; try again") from None
        return await file_reply(request, zipped, content_digest_max=app.config.content_digest_max)

    router.add("/api/zip", api_zip)
