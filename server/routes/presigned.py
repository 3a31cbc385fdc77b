"""Presigned URLs: issuing them (:func:`issue_url`), and the route that serves them,
``GET``/``HEAD /s/{space}/{path}?expires=&etag=&sig=``.

Every issuer (websocket type 7, the drive API) calls :func:`issue_url` with a file it
has already opened and checked; the URL is bound to that file's current strong ETag,
so a file replaced after issue is refused with 412 instead of served.

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
from urllib.parse import quote

from slipstream.errors import FileChangedSinceIssue, NotFound, PresignTampered
from slipstream.http.disposition import content_disposition
from slipstream.presign import CONTENT_DISPOSITION_PARAM, CONTENT_TYPE_PARAM
from slipstream.storage import OpenFile

from ..file_reply import stored_file_reply
from ..http import Request, Response
from ..router import Router

if TYPE_CHECKING:
    from ..app import App

SIGNED_PREFIX = "/s/"
"""Path prefix of the signed file route."""


def issue_url(
    app: App,
    space: str,
    opened: OpenFile,
    *,
    expires_in: int,
    content_type: str | None = None,
    filename: str | None = None,
    base: str | None = None,
    now: float | None = None,
) -> tuple[str, int]:
    """A URL granting ``GET``/``HEAD`` of ``opened`` for ``expires_in`` seconds.

    ``space`` is a key of ``app.spaces`` (``"root"``, ``"app-NAME"``, ``"drive-ID"``)
    and ``opened`` a file opened from that space.  ``content_type`` and ``filename``
    become signed ``response-content-type`` / ``response-content-disposition``
    (``attachment`` with an RFC 6266 ``filename*`` for non-ASCII names).  ``base``
    replaces ``app.public_url`` (e.g. a drive's internal or CDN URL).  ``now`` (unix
    seconds, default the current time) lets one caller issue several URLs with the
    same expiry.

    Returns ``(url, expires)`` with ``expires`` in unix seconds.  Raises ValueError
    for an unknown space or ``expires_in < 1`` and
    :class:`~slipstream.errors.InvalidResponseOverride` for an override that is not a
    valid header value.
    """
    if space not in app.spaces:
        raise ValueError(f"unknown URL space {space!r}")
    if expires_in < 1:
        raise ValueError("expires_in must be at least 1 second")
    expires = int(time.time() if now is None else now) + expires_in
    params = app.signer.sign(
        space,
        opened.path,
        expires=expires,
        etag=opened.stat.etag,
        content_type=content_type,
        content_disposition=None if filename is None else content_disposition(filename),
    )
    quoted_path = "/".join(quote(segment, safe="") for segment in opened.path.split("/"))
    query = "&".join(f"{name}={quote(value, safe='')}" for name, value in params.items())
    root = (app.public_url if base is None else base).rstrip("/")
    return f"{root}{SIGNED_PREFIX}{quote(space, safe='')}/{quoted_path}?{query}", expires


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
