"""Issuing presigned URLs for the signed ``GET /s/{space}/{path}`` route.

Every issuer (websocket type 7, the drive API) calls :func:`issue_url` with a file it
has already opened and checked; the URL is bound to that file's current strong ETag,
so a file replaced after issue is refused with 412 instead of served.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING
from urllib.parse import quote

from slipstream.http.disposition import content_disposition
from slipstream.storage import OpenFile

if TYPE_CHECKING:
    from .app import App

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
