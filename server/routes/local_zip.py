"""``GET /api/zip?path=DIR`` (Bearer): a directory of the root as a resumable zip.

The same deterministic STORED zip as the zip service, built from local files and sent at
once, with CRCs from the digest cache or computed on the way (see
:mod:`slipstream.zip.local`); Range, If-Range, HEAD and conditional requests follow
RFC 9110 like every file reply (several ranges get the whole zip: the body is streamed).
"""

from __future__ import annotations

import os

import trio

from slipstream.digests import DigestCache, FileChanged
from slipstream.errors import ServiceUnavailable
from slipstream.storage import LocalStorage
from slipstream.zip.local import LocalZipBody, local_zip
from slipstream.zip.localplan import ListingCache

from ..auth import require_token
from ..config import Config
from ..errors import error_response
from ..file_reply import file_reply
from ..http import Request, Response
from ..router import Router


def register(
    router: Router,
    *,
    config: Config,
    root: LocalStorage,
    digests: DigestCache,
    background: trio.Nursery,
) -> None:
    """Add ``/api/zip`` (errors ``{"error": ...}``) for folders of ``root``; CRCs not
    cached are computed in ``background`` (stopped when the reply ends)."""

    plans = ListingCache()  # the layouts and ETags of the directories zipped last

    async def api_zip(request: Request) -> Response:
        require_token(request, config.tokens)
        path = request.arg("path") or ""
        directory = root.resolve_directory(path)
        name = "download" if directory == root.base else os.path.basename(directory)
        zipped = await local_zip(
            directory,
            f"{name}.zip",
            digests,
            background,
            hidden=[str(config.state_path)],
            plans=plans,
        )
        response = await file_reply(request, zipped, content_digest_max=config.content_digest_max)
        body = response.body
        if isinstance(body, LocalZipBody) and request.method != "HEAD":
            try:
                await body.open()  # the CRCs needed before the first member data
            except FileChanged as exc:
                await body.aclose()
                response.release()
                raise ServiceUnavailable(f"{exc}; try again") from None
            except BaseException:
                await body.aclose()
                response.release()
                raise
        return response

    router.group(error_response).add("/api/zip", api_zip)
