"""Presigned URLs: issuing them (:class:`UrlIssuer`), and the route that serves them,
``GET``/``HEAD /s/{space}/{path}?expires=&etag=&sig=``.

Every issuer (websocket type 7, the drive API) calls :meth:`UrlIssuer.issue` with a file
it has already opened and checked; the URL is bound to that file's current strong ETag,
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote

from slipstream.errors import FileChangedSinceIssue, NotFound, PresignTampered
from slipstream.http.disposition import content_disposition
from slipstream.presign import CONTENT_DISPOSITION_PARAM, CONTENT_TYPE_PARAM, Signer
from slipstream.storage import LocalStorage, OpenFile

from ..errors import error_response
from ..file_reply import StoredFiles, stored_file_reply
from ..http import Request, Response
from ..router import Router

SIGNED_PREFIX = "/s/"
"""Path prefix of the signed file route."""


@dataclass(frozen=True, slots=True)
class UrlIssuer:
    """Signs URLs for the presigned route: the folders they point into, the key, the base.

    ``spaces`` maps ``root``, ``app-NAME`` and ``drive-ID`` to their folders;
    ``public_url`` is the base of issued URLs (no trailing slash); ``clock`` gives the
    current time in unix seconds, which URLs are issued and verified against.
    """

    spaces: Mapping[str, LocalStorage]
    signer: Signer
    public_url: str
    clock: Callable[[], float] = time.time
    """Unix seconds now (``time.time``; a test passes a fake one to expire URLs at once)."""

    def issue(
        self,
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

        ``space`` is a key of :attr:`spaces` and ``opened`` a file opened from that
        space.  ``content_type`` and ``filename`` become signed ``response-content-type``
        / ``response-content-disposition`` (``attachment`` with an RFC 6266 ``filename*``
        for non-ASCII names).  ``base`` replaces :attr:`public_url` (e.g. a drive's
        internal or CDN URL).  ``now`` (unix seconds, default :attr:`clock`) lets one
        caller issue several URLs with the same expiry.

        Returns ``(url, expires)`` with ``expires`` in unix seconds.  Raises ValueError
        for an unknown space or ``expires_in < 1`` and
        :class:`~slipstream.errors.InvalidResponseOverride` for an override that is not a
        valid header value.
        """
        if space not in self.spaces:
            raise ValueError(f"unknown URL space {space!r}")
        if expires_in < 1:
            raise ValueError("expires_in must be at least 1 second")
        expires = int(self.clock() if now is None else now) + expires_in
        params = self.signer.sign(
            space,
            opened.path,
            expires=expires,
            etag=opened.stat.etag,
            content_type=content_type,
            content_disposition=None if filename is None else content_disposition(filename),
        )
        quoted_path = "/".join(quote(segment, safe="") for segment in opened.path.split("/"))
        query = "&".join(f"{name}={quote(value, safe='')}" for name, value in params.items())
        root = (self.public_url if base is None else base).rstrip("/")
        return f"{root}{SIGNED_PREFIX}{quote(space, safe='')}/{quoted_path}?{query}", expires


_SIGNED_PARAMS = ("sig", "expires", "etag", CONTENT_TYPE_PARAM, CONTENT_DISPOSITION_PARAM)


def signed_params(request: Request, names: tuple[str, ...]) -> dict[str, str]:
    """The signed URL parameters ``names`` that ``request`` carries (each at most once:
    a repeated one is :class:`PresignTampered`)."""
    query: dict[str, str] = {}
    for name in names:
        values = request.query.get(name)
        if values is None:
            continue
        if len(values) != 1:
            raise PresignTampered(f"repeated parameter {name}")
        query[name] = values[0]
    return query


def register(router: Router, *, urls: UrlIssuer, files: StoredFiles) -> None:
    """Add the ``/s/`` prefix route (errors ``{"error": ...}``) for URLs ``urls`` signs."""

    async def signed_file(request: Request) -> Response:
        space, _, path = request.path[len(SIGNED_PREFIX) :].partition("/")
        query = signed_params(request, _SIGNED_PARAMS)
        grant = urls.signer.verify(request.method, space, path, query, urls.clock())
        storage = urls.spaces.get(grant.space)
        if storage is None:
            raise NotFound(f"no such file space {grant.space}")
        opened = storage.open(grant.path)
        if opened.stat.etag != grant.etag:
            opened.close()
            raise FileChangedSinceIssue()
        return await stored_file_reply(
            request,
            files,
            opened,
            content_type=grant.content_type,
            disposition=grant.content_disposition,
        )

    router.group(error_response).add_prefix(SIGNED_PREFIX, signed_file)
