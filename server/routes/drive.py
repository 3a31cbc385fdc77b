"""The drive-style API (seed 003): ``POST /v2/file/get_download_url``, ``/get``, ``/list``.

Drives are named folders (``--drive ID=DIR``; drive ``"1"`` is the ``--root`` unless
given).  A ``file_id`` is the file's path inside its drive, ``"a/b.txt"``, checked by
the same traversal rules as every other path; ``"root"`` is the drive itself (a
top-level entry really named ``root`` is listed with the id ``"./root"``).
``share_id`` is accepted for compatibility and must be a string; there are no shares,
so it changes nothing (the bearer token is the credential).

Every endpoint takes a JSON object body (at most 1 MiB, enforced by the HTTP layer)
and a bearer token.  Checks run in this order: token, body, parameters, drive, file.

``get_download_url`` replies ``url`` (a presigned ``GET /s/drive-ID/PATH`` under the
public URL), ``internal_url`` / ``cdn_url`` (the same signed URL under ``--internal-url``
/ ``--cdn-url``, or equal to ``url``), ``expiration`` (RFC 3339 UTC), ``size``,
``crc64_hash`` (CRC-64/XZ, unsigned decimal), ``content_hash`` (SHA-1, upper-case
hex) and ``content_hash_name`` ``"sha1"``.  ``file_name`` becomes the download's
signed ``Content-Disposition`` filename and ``response_content_type`` its signed
``Content-Type``.  ``get`` and ``list`` items have ``drive_id``, ``file_id``,
``parent_file_id``, ``name``, ``type`` (``"file"`` / ``"folder"``), ``size`` (0 for
folders) and ``updated_at`` (RFC 3339 UTC, milliseconds).  ``list`` pages are in
name order; ``next_marker`` is opaque and ``""`` on the last page.

Errors are ``{"code": ..., "message": ...}``:

====== ================================ ===============================================
status code                             when
====== ================================ ===============================================
400    ``InvalidParameter.Body``        body not JSON, or not a JSON object
400    ``InvalidParameter.<Field>``     field missing (``FileId``), of the wrong type,
                                        empty, or out of range: ``ExpireSec`` outside
                                        1..604800 (default 900), ``Limit`` outside
                                        1..200 (default 100), ``Marker`` not issued
                                        here, ``FileName`` with control characters or
                                        slashes, ``ResponseContentType`` not a media type
401    ``AccessTokenInvalid``           token missing or wrong
403    ``Forbidden.PathNotAllowed``     ``file_id`` / ``parent_file_id`` escapes the drive
403    ``Forbidden.IsFolder``           ``get_download_url`` of a folder
403    ``Forbidden.NotRegularFile``     a FIFO, socket or device
403    ``Forbidden.FileNotReadable``    no read permission
404    ``NotFound.Drive``               unknown ``drive_id``
404    ``NotFound.File``                no such file (``get_download_url``, ``get``)
404    ``NotFound.ParentFile``          ``list`` of a missing folder, or of a file
503    ``ServiceUnavailable.FileBusy``  the file kept changing while it was hashed
500    ``InternalError``                anything else (logged, never detailed)
====== ================================ ===============================================

Handlers raise these as values; the drive routes are one route group whose renderer,
:func:`~.drive_errors.render_drive_error`, builds every error reply.  Every other error
of a request under ``/v2/`` takes this shape too: 404 ``NotFound`` for a path with no
endpoint (a trailing slash included), 405 ``MethodNotAllowed`` with ``Allow: POST``, and
the connection's 408 ``RequestTimeout``, 413 ``ContentTooLarge`` and 431
``RequestHeaderFieldsTooLarge``.

A listing reads the folder's names for each page and examines (``stat``) only the
entries of that page (:meth:`~slipstream.storage.LocalStorage.list_dir_page`); the
marker is the last name returned, so entries added or removed between pages never
repeat or shift a page.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slipstream.digests import DigestCache, Digests, FileChanged, OnChange, opened_file_digests
from slipstream.errors import IsADirectory, SlipstreamError, Unauthorized
from slipstream.pathsafety import safe_relative_path
from slipstream.storage import DirEntry, LocalStorage, OpenFile

from ..auth import presented_token, token_is_valid
from ..config import Config
from ..http import Request, Response, json_response
from ..router import Router
from .drive_errors import (
    DriveError,
    decode_marker,
    drive_error,
    encode_marker,
    param_content_type,
    param_file_name,
    param_int,
    param_str,
    parse_body,
    render_drive_error,
)
from .presigned import UrlIssuer

DEFAULT_EXPIRE_SEC = 900
MAX_EXPIRE_SEC = 604_800
DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 200
ROOT_ID = "root"
API_PREFIX = "/v2/"
"""Every error of a request under this prefix is drive-shaped (404, 405, 413 included)."""


@dataclass(frozen=True, slots=True)
class Drives:
    """What the drive API uses: the config (tokens, ``--internal-url``, ``--cdn-url``),
    the folders (``drive-ID`` spaces), the digest cache and the URL issuer."""

    config: Config
    spaces: Mapping[str, LocalStorage]
    digests: DigestCache
    urls: UrlIssuer


Handler = Callable[[Drives, Mapping[str, Any]], Awaitable[Response]]


def register(router: Router, drives: Drives) -> None:
    """Add ``POST /v2/file/get_download_url``, ``/v2/file/get`` and ``/v2/file/list``;
    every error under ``/v2/`` is drive-shaped."""
    routes = router.group(render_drive_error)
    for path, handler in (
        ("/v2/file/get_download_url", get_download_url),
        ("/v2/file/get", get_file),
        ("/v2/file/list", list_files),
    ):
        routes.add(path, _endpoint(drives, handler), methods=("POST",))
    routes.own_prefix(API_PREFIX)


def _endpoint(drives: Drives, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap ``handler`` with auth and body parsing (errors go to the group's renderer)."""

    async def endpoint(request: Request) -> Response:
        if not token_is_valid(presented_token(request), drives.config.tokens):
            raise drive_error(Unauthorized())
        return await handler(drives, parse_body(request.body))

    return endpoint


# --- endpoints ------------------------------------------------------------------------


async def get_download_url(drives: Drives, params: Mapping[str, Any]) -> Response:
    """``POST /v2/file/get_download_url``: a presigned URL plus size and checksums."""
    drive_id, storage = _drive(drives, params)
    file_id = param_str(params, "file_id", required=True)
    assert file_id is not None
    param_str(params, "share_id")
    file_name = param_file_name(params, "file_name")
    content_type = param_content_type(params, "response_content_type")
    expire_sec = param_int(
        params, "expire_sec", default=DEFAULT_EXPIRE_SEC, low=1, high=MAX_EXPIRE_SEC
    )
    if file_id == ROOT_ID:
        raise DriveError(403, "Forbidden.IsFolder", "root is a folder and not a file")
    opened, digests = await _open_hashed(drives.digests, storage, file_id)
    with opened:

        def issue(base: str | None) -> tuple[str, int]:
            return drives.urls.issue(
                f"drive-{drive_id}",
                opened,
                expires_in=expire_sec,
                content_type=content_type,
                filename=file_name,
                base=base,
            )

        url, expires = issue(None)
        urls = [url]
        for base in (drives.config.internal_url, drives.config.cdn_url):
            if base:  # the same grant under another host (its expiry may tick by 1 s)
                other, other_expires = issue(base)
                urls.append(other)
                expires = min(expires, other_expires)
            else:
                urls.append(url)
    return json_response(200, _download_reply(urls, expires, digests))


async def get_file(drives: Drives, params: Mapping[str, Any]) -> Response:
    """``POST /v2/file/get``: one file's or folder's metadata."""
    drive_id, storage = _drive(drives, params)
    file_id = param_str(params, "file_id", required=True)
    assert file_id is not None
    param_str(params, "share_id")
    if file_id == ROOT_ID:
        return json_response(200, _item(drive_id, (), _root_entry(storage)))
    try:
        with storage.open(file_id) as opened:
            segments = tuple(opened.path.split("/"))
            entry = DirEntry(opened.name, False, opened.stat.size, opened.stat.mtime_ns)
    except IsADirectory:
        segments = safe_relative_path(file_id)
        entry = _folder_entry(storage, segments) if segments else _root_entry(storage)
    return json_response(200, _item(drive_id, segments, entry))


async def list_files(drives: Drives, params: Mapping[str, Any]) -> Response:
    """``POST /v2/file/list``: one page of a folder, in name order."""
    drive_id, storage = _drive(drives, params)
    parent = param_str(params, "parent_file_id", default=ROOT_ID)
    assert parent is not None
    param_str(params, "share_id")
    limit = param_int(params, "limit", default=DEFAULT_LIST_LIMIT, low=1, high=MAX_LIST_LIMIT)
    marker = param_str(params, "marker")
    after = decode_marker(marker) if marker is not None else None
    segments = () if parent == ROOT_ID else safe_relative_path(parent)
    try:
        page, more = storage.list_dir_page("/".join(segments), after, limit)
    except SlipstreamError as error:
        raise drive_error(error, not_found="NotFound.ParentFile") from None
    return json_response(
        200,
        {
            "items": [_item(drive_id, (*segments, entry.name), entry) for entry in page],
            "next_marker": encode_marker(page[-1].name) if more and page else "",
        },
    )


# --- helpers --------------------------------------------------------------------------


def _drive(drives: Drives, params: Mapping[str, Any]) -> tuple[str, LocalStorage]:
    """The drive id and its storage (``404 NotFound.Drive`` when unknown)."""
    drive_id = param_str(params, "drive_id", default="1")
    assert drive_id is not None
    storage = drives.spaces.get(f"drive-{drive_id}")
    if storage is None:
        raise DriveError(404, "NotFound.Drive", f"drive {drive_id} does not exist")
    return drive_id, storage


async def _open_hashed(
    cache: DigestCache, storage: LocalStorage, file_id: str
) -> tuple[OpenFile, Digests]:
    """Open ``file_id`` and get its digests (cached, else hashed now).

    A file rewritten while it is hashed is reopened (``OnChange.RETRY``, three versions
    in all); one that keeps changing is ``503 ServiceUnavailable.FileBusy``.
    """
    try:
        return await opened_file_digests(
            cache,
            storage.open(file_id),
            on_change=OnChange.RETRY,
            reopen=lambda: storage.open(file_id),
            need=("sha1",),  # content_hash; a downloaded file's row lacks it until asked
        )
    except FileChanged:
        raise DriveError(
            503, "ServiceUnavailable.FileBusy", "file kept changing while being hashed"
        ) from None


def _root_entry(storage: LocalStorage) -> DirEntry:
    """The drive's root folder as an entry (id ``root``, its directory's mtime)."""
    return DirEntry(ROOT_ID, True, 0, os.stat(storage.base).st_mtime_ns)


def _folder_entry(storage: LocalStorage, segments: tuple[str, ...]) -> DirEntry:
    """The entry of a folder as its parent lists it (same visibility rules)."""
    parent = "/".join(segments[:-1])
    try:
        siblings = storage.list_dir(parent)
    except SlipstreamError as error:
        raise drive_error(error) from None
    names = [e.name for e in siblings]
    index = bisect.bisect_left(names, segments[-1])
    if index == len(names) or names[index] != segments[-1] or not siblings[index].is_dir:
        raise DriveError(404, "NotFound.File", f"file not found at {'/'.join(segments)}")
    return siblings[index]


def _file_id(segments: tuple[str, ...]) -> str:
    """The id of a path; a top-level entry named ``root`` is ``./root`` (``root`` is the drive)."""
    if not segments:
        return ROOT_ID
    path = "/".join(segments)
    return f"./{path}" if path == ROOT_ID else path


def _item(drive_id: str, segments: tuple[str, ...], entry: DirEntry) -> dict[str, Any]:
    return {
        "drive_id": drive_id,
        "file_id": _file_id(segments),
        "parent_file_id": _file_id(segments[:-1]) if segments else "",
        "name": entry.name,
        "type": "folder" if entry.is_dir else "file",
        "size": 0 if entry.is_dir else entry.size,
        "updated_at": rfc3339(entry.mtime_ns),
    }


def _download_reply(urls: list[str], expires: int, digests: Digests) -> dict[str, Any]:
    url, internal_url, cdn_url = urls
    return {
        "url": url,
        "internal_url": internal_url,
        "cdn_url": cdn_url,
        "expiration": rfc3339(expires * 1_000_000_000),
        "size": digests.size,
        "crc64_hash": str(digests.crc64xz),
        "content_hash": digests.hex("sha1").upper(),
        "content_hash_name": "sha1",
    }


def rfc3339(ns: int) -> str:
    """``2024-01-02T15:04:05.123Z`` for nanoseconds since the epoch."""
    seconds, rest = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{rest // 1_000_000:03d}Z"
