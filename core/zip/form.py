"""Parsing ``POST /download`` of the zip service (seed 004), pure, no I/O.

Three encodings are accepted (:func:`parse_zip_request`):

1. ``application/x-www-form-urlencoded`` with repeated ``fs_uri_list[]`` fields;
2. the same with one ``fs_uri_list`` field holding a JSON array of strings;
3. ``application/json`` (or any ``+json`` type): an object whose ``fs_uri_list`` is an
   array of strings.

A request without a ``Content-Type``, or with any other one, is read as a form.
Parameters (``fs_*``) are those of the seed.  Leniencies, documented once here:

* in a form, when a scalar parameter is repeated, the last one wins;
* in JSON, a parameter of the wrong type (``"fs_file_name": 3``) counts as absent;
* ``fs_forward_all_headers`` is true for JSON ``true``, a non-zero number, and the
  strings ``true``/``1``/``yes``/``on``/``y``/``t`` (any case); anything else is false;
* an unknown ``fs_response_format`` means the default (``html`` for forms, ``json``
  for JSON); ``fs_error_redirect_uri`` is only read (and checked) for ``redirect``;
* an empty ``fs_request_id`` means a random one; any UUID spelling ``uuid.UUID``
  accepts is taken and made canonical (lower case, hyphenated);
* ``fs_file_name`` is passed through :func:`slipstream.filenames.safe_filename`;
* URIs have surrounding whitespace stripped; a missing ``fs_uri_list`` is
  ``EMPTY_URI_LIST``;
* ``fs_add_header-<Name>``: ``Name`` must be an HTTP token and the value (surrounding
  whitespace stripped) visible ASCII, spaces and tabs only, else ``MALFORMED_HEADER``
  (an extension of the seed's keys) listing the offending parameters.  In JSON a value
  may also be an array of strings (one header each).

Errors are raised as :class:`~slipstream.zip.errors.ZipError` with ``fmt`` and
``redirect_uri`` set to the format the client asked for when it could be read (an
error about the redirect URI itself, or a body that is not JSON, uses the encoding's
default format), so the caller renders with ``error.render()``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl

from slipstream.filenames import safe_filename
from slipstream.netpolicy import UrlRejected, parse_target

from .errors import FORMATS, ZipError

__all__ = [
    "ADD_HEADER_PREFIX",
    "DEFAULT_FILE_NAME",
    "NEVER_FORWARDED",
    "ZipRequest",
    "forwarded_headers",
    "parse_zip_request",
]

DEFAULT_FILE_NAME: Final = "download.zip"
ADD_HEADER_PREFIX: Final = "fs_add_header-"
#: Request headers never sent upstream (lower case); also any ``Proxy-*``, ``If-*`` and
#: ``Content-*`` header (they describe the client's own request or its body) and the
#: names listed in the client's ``Connection`` header.
NEVER_FORWARDED: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "range",
        "accept-encoding",
        "expect",
    }
)
_NEVER_FORWARDED_PREFIXES: Final = ("proxy-", "if-", "content-")

_TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE: Final = re.compile(r"[\t\x20-\x7e]*")
_TRUE: Final = frozenset({"true", "1", "yes", "on", "y", "t"})


@dataclass(frozen=True, slots=True)
class ZipRequest:
    """A valid ``POST /download``."""

    uris: tuple[str, ...]
    #: Canonical lower-case UUID (random when the client gave none).
    request_id: str
    #: Safe name for ``Content-Disposition`` (``download.zip`` by default).
    file_name: str
    forward_all_headers: bool
    #: ``(name, value)`` from ``fs_add_header-<name>``, in request order.
    add_headers: tuple[tuple[str, str], ...]
    #: ``html``, ``json`` or ``redirect``.
    response_format: str
    #: Set (and valid) iff ``response_format`` is ``redirect``.
    error_redirect_uri: str | None


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _text(value: object) -> str | None:
    """A string parameter's value; JSON of another type counts as absent."""
    return value if isinstance(value, str) else None


def _truthy(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        return value.strip().lower() in _TRUE
    return False


def _valid_http_uri(uri: str) -> bool:
    try:
        parse_target(uri)
    except UrlRejected:
        return False
    return True


def _read_form(body: bytes) -> tuple[dict[str, Any], list[str] | None, list[tuple[str, str]]]:
    """Scalars (last wins), the ``fs_uri_list[]`` values (None if absent), add-headers."""
    fields = parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    scalars: dict[str, Any] = {}
    listed: list[str] | None = None
    headers: list[tuple[str, str]] = []
    for key, value in fields:
        if key == "fs_uri_list[]":
            if listed is None:
                listed = []
            listed.append(value)
        elif key.lower().startswith(ADD_HEADER_PREFIX):
            headers.append((key, value))
        elif key == "fs_uri_list" and "fs_uri_list" in scalars:
            scalars["fs_uri_list"] = _Repeated()
        else:
            scalars[key] = value
    return scalars, listed, headers


class _Repeated:
    """Marks a form field that must appear once but was repeated."""


def _read_json(body: bytes) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError
        raise ZipError("MALFORMED_JSON_BODY", fmt="json") from None
    if not isinstance(document, dict):
        raise ZipError("MALFORMED_JSON_BODY", fmt="json")
    headers = [(k, v) for k, v in document.items() if k.lower().startswith(ADD_HEADER_PREFIX)]
    return document, headers


def _response_format(params: Mapping[str, Any], default: str) -> tuple[str, str | None]:
    asked = _text(params.get("fs_response_format"))
    fmt = asked.strip().lower() if asked is not None else default
    if fmt not in FORMATS:
        fmt = default
    if fmt != "redirect":
        return fmt, None
    uri = _text(params.get("fs_error_redirect_uri"))
    uri = uri.strip() if uri is not None else ""
    if not uri:
        raise ZipError("EMPTY_ERROR_REDIRECT_URI", fmt=default)
    if not _valid_http_uri(uri):
        raise ZipError("INVALID_ERROR_REDIRECT_URI", [uri], fmt=default)
    return fmt, uri


def _uri_list(raw: object) -> list[str]:
    """The URI list from a JSON value; MALFORMED_URI_LIST unless an array of strings."""
    if not isinstance(raw, list) or not all(isinstance(u, str) for u in raw):
        raise ZipError("MALFORMED_URI_LIST")
    return raw


def _form_uri_list(params: Mapping[str, Any], listed: list[str] | None) -> list[str] | None:
    single = params.get("fs_uri_list")
    if single is None:
        return listed
    if listed is not None or isinstance(single, _Repeated):
        raise ZipError("MALFORMED_URI_LIST")
    try:
        return _uri_list(json.loads(single))
    except (ValueError, RecursionError):
        raise ZipError("MALFORMED_URI_LIST") from None


def _check_uris(uris: list[str] | None) -> tuple[str, ...]:
    if uris is None or not uris:
        raise ZipError("EMPTY_URI_LIST")
    uris = [u.strip() for u in uris]
    seen: set[str] = set()
    duplicates: dict[str, None] = {}
    for uri in uris:
        if uri in seen:
            duplicates[uri] = None
        seen.add(uri)
    if duplicates:
        raise ZipError("DUPLICATE_URIS", duplicates)
    invalid = [u for u in uris if not _valid_http_uri(u)]
    if invalid:
        raise ZipError("INVALID_URIS", invalid)
    return tuple(uris)


def _request_id(params: Mapping[str, Any]) -> str:
    raw = params.get("fs_request_id")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return str(uuid.uuid4())
    if not isinstance(raw, str):
        raise ZipError("MALFORMED_UUID", [json.dumps(raw)])
    try:
        return str(uuid.UUID(raw.strip()))
    except ValueError:
        raise ZipError("MALFORMED_UUID", [raw]) from None


def _add_headers(raw: Sequence[tuple[str, Any]]) -> tuple[tuple[str, str], ...]:
    result: list[tuple[str, str]] = []
    bad: list[str] = []
    for key, value in raw:
        name = key[len(ADD_HEADER_PREFIX) :]
        values = value if isinstance(value, list) else [value]
        ok = bool(_TOKEN.fullmatch(name)) and all(isinstance(v, str) for v in values)
        cleaned = [v.strip(" \t") for v in values if isinstance(v, str)]
        if not ok or not all(_HEADER_VALUE.fullmatch(v) for v in cleaned):
            bad.append(key)
            continue
        result.extend((name, v) for v in cleaned)
    if bad:
        raise ZipError("MALFORMED_HEADER", bad)
    return tuple(result)


def parse_zip_request(content_type: str | None, body: bytes) -> ZipRequest:
    """Parse and validate a ``POST /download`` body (see the module docstring).

    Raises :class:`~slipstream.zip.errors.ZipError` with one of ``MALFORMED_JSON_BODY``,
    ``MALFORMED_URI_LIST``, ``EMPTY_URI_LIST``, ``DUPLICATE_URIS``, ``INVALID_URIS``
    (records: the URIs at fault), ``EMPTY_ERROR_REDIRECT_URI``,
    ``INVALID_ERROR_REDIRECT_URI``, ``MALFORMED_UUID`` or ``MALFORMED_HEADER``.
    The format is checked first, then the URI list, the request id and the headers.
    """
    is_json = _is_json(content_type)
    params: Mapping[str, Any]
    raw_headers: Sequence[tuple[str, Any]]
    if is_json:
        params, raw_headers = _read_json(body)
    else:
        params, listed, raw_headers = _read_form(body)
    default = "json" if is_json else "html"
    fmt, redirect_uri = _response_format(params, default)
    try:
        if is_json:
            raw_list = params.get("fs_uri_list")
            uris = _check_uris(None if raw_list is None else _uri_list(raw_list))
        else:
            uris = _check_uris(_form_uri_list(params, listed))
        request_id = _request_id(params)
        add_headers = _add_headers(raw_headers)
    except ZipError as error:
        raise error.with_format(fmt, redirect_uri) from None
    file_name = _text(params.get("fs_file_name")) or ""
    return ZipRequest(
        uris=uris,
        request_id=request_id,
        file_name=safe_filename(file_name, DEFAULT_FILE_NAME),
        forward_all_headers=_truthy(params.get("fs_forward_all_headers")),
        add_headers=add_headers,
        response_format=fmt,
        error_redirect_uri=redirect_uri,
    )


def _excluded(name: str, connection_listed: frozenset[str]) -> bool:
    lower = name.lower()
    return (
        lower in NEVER_FORWARDED
        or lower in connection_listed
        or lower.startswith(_NEVER_FORWARDED_PREFIXES)
        or not _TOKEN.fullmatch(name)
    )


def forwarded_headers(
    request: ZipRequest, client_headers: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The headers to send upstream for ``request`` whose client sent ``client_headers``.

    With ``forward_all_headers``, every client header except hop-by-hop ones
    (``Connection`` and the names it lists, ``Keep-Alive``, ``Proxy-*``, ``TE``,
    ``Trailer``, ``Transfer-Encoding``, ``Upgrade``), ``Host``, ``Range``, ``If-*``,
    ``Accept-Encoding``, ``Content-*`` and ``Expect``; then the ``fs_add_header-*``
    headers, minus the same names and minus any name already forwarded from the client
    (forwarding takes precedence, as the seed says).  Order is kept.
    """
    listed = frozenset(
        token.strip().lower()
        for name, value in client_headers
        if name.lower() == "connection"
        for token in value.split(",")
    )
    result: list[tuple[str, str]] = []
    if request.forward_all_headers:
        result = [(n, v) for n, v in client_headers if not _excluded(n, listed)]
    forwarded = {n.lower() for n, _ in result}
    result += [
        (n, v)
        for n, v in request.add_headers
        if n.lower() not in forwarded and not _excluded(n, frozenset())
    ]
    return result
