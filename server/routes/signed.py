"""``GET``/``HEAD /s/{space}/{path}?expires=&etag=&sig=``: the presigned file route.

The signature is the credential (no bearer token).  It is verified before anything
touches the file system; then the file is opened in its space and its current strong
ETag must equal the signed one, else 412 (a resumed download never splices two
versions).  The reply is a full file reply: Range, multipart, If-Range, conditional
requests, HEAD, ETag and integrity headers, with the signed ``response-content-type``
and ``response-content-disposition`` overrides applied.  No size limit.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from slipstream.download import Download, content_disposition, guess_content_type
from slipstream.errors import FileChangedSinceIssue, NotFound, PresignTampered
from slipstream.presign import CONTENT_DISPOSITION_PARAM, CONTENT_TYPE_PARAM
from slipstream.segments import SegmentMap

from ..file_reply import file_reply
from ..http import Request, Response
from ..integrity import file_digests, integrity_headers
from ..presigned import SIGNED_PREFIX
from ..router import Router

if TYPE_CHECKING:
    from ..app import App

_SIGNED_PARAMS = ("sig", "expires", "etag", CONTENT_TYPE_PARAM, CONTENT_DISPOSITION_PARAM)


def register(router: Router, app: App) -> None:
    """Add the ``/s/`` prefix route."""

    async def signed_file(request: Request) -> Response:
        space, _, path = request.path[len(SIGNED_PREFIX) :].partition("/")
        query: dict[str, str] = {}
        for name in _SIGNED_PARAMS:
            values = request.query.get(name)
            if values is None:
                continue
            if len(values) != 1:
                raise PresignTampered(f"repeated parameter {name}")
            query[name] = values[0]
        grant = app.signer.verify(request.method, space, path, query, time.time())
        storage = app.spaces.get(grant.space)
        if storage is None:
            raise NotFound(f"no such file space {grant.space}")
        opened = storage.open(grant.path)
        try:
            if opened.stat.etag != grant.etag:
                raise FileChangedSinceIssue()
            digests = await file_digests(app.digests, opened, app.background)
        except BaseException:
            opened.close()
            raise
        disposition = grant.content_disposition or content_disposition(opened.name)
        download = Download(
            body=SegmentMap([opened.segment()]),
            etag=opened.stat.etag,
            last_modified=opened.stat.last_modified,
            content_type=grant.content_type or guess_content_type(opened.name),
            headers=[
                ("Content-Disposition", disposition),
                *(integrity_headers(digests) if digests is not None else ()),
            ],
            close=opened.close,
        )
        return await file_reply(request, download, content_digest_max=app.config.content_digest_max)

    router.add_prefix(SIGNED_PREFIX, signed_file)
