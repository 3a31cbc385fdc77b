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

from slipstream.errors import FileChangedSinceIssue, NotFound, PresignTampered
from slipstream.presign import CONTENT_DISPOSITION_PARAM, CONTENT_TYPE_PARAM

from ..file_reply import stored_file_reply
from ..http import Request, Response
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
        if opened.stat.etag != grant.etag:
            opened.close()
            raise FileChangedSinceIssue()
        return await stored_file_reply(
            request,
            app,
            opened,
            content_type=grant.content_type,
            disposition=grant.content_disposition,
        )

    router.add_prefix(SIGNED_PREFIX, signed_file)
