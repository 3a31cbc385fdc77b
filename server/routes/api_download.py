"""``GET /api/download?filepath=&fstype=`` exactly as seed 002, but streamed.

Checks run in the seed's order: auth (401), ``filepath`` present (400), file system
layer (412), path safety and file checks (403/404), empty file (412), size limit
(413).  The body is never read into memory: it is a file segment sent with
``sendfile``, and Range / If-Range / conditional requests / HEAD all work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slipstream.download import Download, content_disposition, guess_content_type
from slipstream.errors import FileEmpty, FileTooLarge, MissingFilePath
from slipstream.segments import SegmentMap

from ..auth import require_token
from ..file_reply import file_reply
from ..http import Request, Response
from ..integrity import file_digests, integrity_headers
from ..router import Router

if TYPE_CHECKING:
    from ..app import App


def register(router: Router, app: App) -> None:
    """Add ``/api/download``."""

    async def api_download(request: Request) -> Response:
        require_token(request, app.config.tokens)
        filepath = request.arg("filepath")
        if not filepath:
            raise MissingFilePath()
        storage = app.storages.get(request.arg("fstype"))
        opened = storage.open(filepath)
        try:
            size = opened.stat.size
            if size == 0:
                raise FileEmpty()
            limit = app.config.max_download_size
            if limit and size > limit:
                raise FileTooLarge(limit)
            digests = await file_digests(app.digests, opened, app.background)
        except BaseException:
            opened.close()
            raise
        download = Download(
            body=SegmentMap([opened.segment()]),
            etag=opened.stat.etag,
            last_modified=opened.stat.last_modified,
            content_type=guess_content_type(opened.name),
            headers=[
                ("Content-Disposition", content_disposition(opened.name)),
                ("Content-Description", "File Transfer"),
                ("Content-Transfer-Encoding", "binary"),
                *(integrity_headers(digests) if digests is not None else ()),
            ],
            close=opened.close,
        )
        return await file_reply(request, download, content_digest_max=app.config.content_digest_max)

    router.add("/api/download", api_download)
