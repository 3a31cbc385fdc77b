"""``GET /api/download?filepath=&fstype=`` exactly as seed 002, but streamed.

Checks run in the seed's order: auth (401), ``filepath`` present (400), file system
layer (412), path safety and file checks (403/404), empty file (412), size limit
(413).  The body is never read into memory: it is a file segment sent with
``sendfile``, and Range / If-Range / conditional requests / HEAD all work.
"""

from __future__ import annotations

from slipstream.errors import FileEmpty, FileTooLarge, MissingFilePath
from slipstream.storage import StorageRegistry

from ..auth import require_token
from ..config import Config
from ..errors import error_response
from ..file_reply import StoredFiles, stored_file_reply
from ..http import Request, Response
from ..router import Router


def register(
    router: Router, *, config: Config, storages: StorageRegistry, files: StoredFiles
) -> None:
    """Add ``/api/download`` (errors ``{"error": ...}``).

    ``config`` gives the tokens (read per request) and ``--max-download-size``;
    ``storages`` the ``fstype`` layers.
    """

    async def api_download(request: Request) -> Response:
        require_token(request, config.tokens)
        filepath = request.arg("filepath")
        if not filepath:
            raise MissingFilePath()
        storage = storages.get(request.arg("fstype"))
        opened = storage.open(filepath)
        size = opened.stat.size
        limit = config.max_download_size
        if size == 0 or (limit and size > limit):
            opened.close()
            raise FileEmpty() if size == 0 else FileTooLarge(limit)
        return await stored_file_reply(
            request,
            files,
            opened,
            headers=[
                ("Content-Description", "File Transfer"),
                ("Content-Transfer-Encoding", "binary"),
            ],
        )

    router.group(error_response).add("/api/download", api_download)
