"""``GET /api/zip?path=DIR`` (Bearer): a directory of the root as a resumable zip.

The same deterministic STORED zip as the zip service, built from local files with CRCs
from the digest cache (see :mod:`slipstream.zip.local`); Range, If-Range, HEAD and
conditional requests follow RFC 9110 like every file reply.
"""

from __future__ import annotations

import os

from slipstream.digests import DigestCache
from slipstream.errors import ServiceUnavailable
from slipstream.send import BodyTruncated
from slipstream.storage import LocalStorage
from slipstream.zip.local import local_zip

from ..auth import require_token
from ..config import Config
from ..errors import error_response
from ..file_reply import file_reply
from ..http import Request, Response
from ..router import Router


def register(router: Router, *, config: Config, root: LocalStorage, digests: DigestCache) -> None:
    """Add ``/api/zip`` (errors ``{"error": ...}``) for folders of ``root``."""

    async def api_zip(request: Request) -> Response:
        require_token(request, config.tokens)
        path = request.arg("path") or ""
        directory = root.resolve_directory(path)
        name = "download" if directory == root.base else os.path.basename(directory)
        try:
            zipped = await local_zip(
                directory, f"{name}.zip", digests, hidden=[str(config.state_path)]
            )
        except BodyTruncated as exc:
            raise ServiceUnavailable(f"{exc}; try again") from None
        return await file_reply(request, zipped, content_digest_max=config.content_digest_max)

    router.group(error_response).add("/api/zip", api_zip)
