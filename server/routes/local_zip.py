"""``GET /api/zip?path=...`` (Bearer or signed): files and folders of the root as one
resumable zip, and ``POST /api/zip/url`` (Bearer): a signed URL for such a zip.

The same deterministic STORED zip as the zip service, built from local files and sent at
once, with CRCs from the digest cache or computed on the way (see
:mod:`slipstream.zip.local`); Range, If-Range, HEAD and conditional requests follow
RFC 9110 like every file reply (several ranges get the whole zip: the body is streamed).

One ``path`` is a folder zipped with names relative to it (as always).  Several
``path`` values (files or folders, repeated parameters) are zipped with names relative
to the deepest folder holding them all (:mod:`slipstream.zip.selection`); their order
does not change the zip.

A browser cannot put a bearer header on a plain navigation, and a zip can be far too
large to assemble in page memory, so ``POST /api/zip/url`` signs the list of paths
(HMAC, the presigned URLs' key and rules) into ``/api/zip?path=..&expires=..&etag=..
&sig=..``: the signature is the credential of that one selection until it expires, and
the browser's own download (and resume) manager fetches it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import trio

from slipstream.digests import DigestCache, FileChanged
from slipstream.errors import (
    BadRequest,
    FileNotFound,
    PresignTampered,
    ServiceUnavailable,
)
from slipstream.http.reply import Refusal
from slipstream.http.representation import Representation
from slipstream.storage import LocalStorage
from slipstream.zip.local import LocalZipBody, local_zip, selection_zip
from slipstream.zip.localplan import ListingCache
from slipstream.zip.selection import Selected, normalize_selection

from ..auth import require_token
from ..config import Config
from ..errors import error_response
from ..file_reply import file_reply
from ..http import Request, Response, json_response
from ..router import Router
from .presigned import UrlIssuer, signed_params

ZIP_SPACE = "zip-root"
"""The signed space of zip URLs (never a file space: a file URL cannot open a zip)."""
ZIP_ETAG = "selection"
"""The signed ``etag`` field of zip URLs (a zip's ETag is known only once listed)."""
MAX_PATHS = 1000
"""Most items one zip may name."""
DEFAULT_EXPIRE_SEC = 900
MAX_EXPIRE_SEC = 604_800


def register(
    router: Router,
    *,
    config: Config,
    root: LocalStorage,
    digests: DigestCache,
    background: trio.Nursery,
    urls: UrlIssuer,
) -> None:
    """Add ``/api/zip`` and ``/api/zip/url`` (errors ``{"error": ...}``) for ``root``;
    CRCs not cached are computed in ``background`` (stopped when the reply ends)."""

    plans = ListingCache()  # the layouts and ETags of the directories zipped last
    hidden = [str(config.state_path)]

    async def zipped(paths: list[str]) -> Representation[Refusal]:
        if len(paths) == 1:
            directory = root.resolve_directory(paths[0])
            name = "download" if directory == root.base else os.path.basename(directory)
            return await local_zip(
                directory, f"{name}.zip", digests, background, hidden=hidden, plans=plans
            )
        items, common = _selection(root, paths)
        name = common[-1] if common else "download"
        return await selection_zip(items, f"{name}.zip", digests, background, hidden=hidden)

    async def api_zip(request: Request) -> Response:
        paths = request.query.get("path") or [""]
        if "sig" in request.query:
            _verify(urls, request, paths)
        else:
            require_token(request, config.tokens)
        if len(paths) > MAX_PATHS:
            raise BadRequest(f"at most {MAX_PATHS} paths")
        representation = await zipped(paths)
        response = await file_reply(
            request, representation, content_digest_max=config.content_digest_max
        )
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

    async def zip_url(request: Request) -> Response:
        require_token(request, config.tokens)
        params = _json_object(request.body)
        paths = params.get("paths")
        if (
            not isinstance(paths, list)
            or not paths
            or len(paths) > MAX_PATHS
            or not all(isinstance(p, str) for p in paths)
        ):
            raise BadRequest(f"paths must be a list of 1 to {MAX_PATHS} strings")
        expire_sec = params.get("expire_sec", DEFAULT_EXPIRE_SEC)
        if (
            not isinstance(expire_sec, int)
            or isinstance(expire_sec, bool)
            or not 1 <= expire_sec <= MAX_EXPIRE_SEC
        ):
            raise BadRequest(f"expire_sec must be an integer from 1 to {MAX_EXPIRE_SEC}")
        if len(paths) == 1:
            root.resolve_directory(paths[0])  # the errors a GET would answer, now
        else:
            _selection(root, paths)
        expires = int(urls.clock()) + expire_sec
        signed = urls.signer.sign(ZIP_SPACE, _signed_paths(paths), expires=expires, etag=ZIP_ETAG)
        query = "&".join(
            [f"path={quote(p, safe='')}" for p in paths]
            + [f"{k}={quote(v, safe='')}" for k, v in signed.items()]
        )
        return json_response(
            200,
            {
                "url": f"{urls.public_url}/api/zip?{query}",
                "expires": expires,
                "expiration": datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        )

    group = router.group(error_response)
    group.add("/api/zip", api_zip)
    group.add("/api/zip/url", zip_url, methods=("POST",))


def _selection(root: LocalStorage, paths: list[str]) -> tuple[list[Selected], tuple[str, ...]]:
    """The checked items of ``paths`` (each must exist in the root) and their common folder."""
    items: list[Selected] = []
    for path in paths:
        segments, real = root.resolve(path)
        if not os.path.exists(real):
            raise FileNotFound(path)
        items.append(Selected(segments, real, os.path.isdir(real)))
    return normalize_selection(items)


def _signed_paths(paths: list[str]) -> str:
    """The signed form of a list of paths: JSON (escapes every control character)."""
    return json.dumps(paths, ensure_ascii=True)


def _verify(urls: UrlIssuer, request: Request, paths: list[str]) -> None:
    """Accept a request signed by :func:`register`'s ``zip_url`` for exactly ``paths``."""
    query = signed_params(request, ("sig", "expires", "etag"))
    grant = urls.signer.verify(request.method, ZIP_SPACE, _signed_paths(paths), query, urls.clock())
    if grant.etag != ZIP_ETAG:
        raise PresignTampered()


def _json_object(body: bytes) -> Mapping[str, Any]:
    """The request body as a JSON object (400 otherwise)."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest("the body must be a JSON object") from None
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object")
    return value
