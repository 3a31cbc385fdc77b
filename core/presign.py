"""Presigned URLs: HMAC-SHA256 over what a URL grants (sans-IO, no trio).

A URL grants ``GET`` (and so ``HEAD``) of one file, named by a *space* (a folder the
server publishes) and a path inside it, until ``expires`` (unix seconds), and only
while the file still has the strong ``etag`` it had when the URL was issued.  Two
response overrides may be signed in as well, as S3 does: ``response-content-type``
and ``response-content-disposition``.

The signature covers one canonical string, the fields below joined with ``"\\n"``
(an absent override is an empty string)::

    GET / space / path (decoded) / expires / etag / content type / content disposition

No field may contain a control character, so the joined string is unambiguous.  The
key is the secret's UTF-8 bytes; ``sig`` is the unpadded base64url of the 32-byte MAC.

Verification decodes ``sig`` first (anything that is not exactly 43 base64url
characters is *tampered*), then compares bytes with :func:`hmac.compare_digest`
against the MAC under every key (the current one and the previous ones, for key
rotation).  Override parameters that the signature does not cover are ignored: the
grant lists only overrides that were signed.  Expiry is checked after the signature,
so a forged URL is reported as tampered whatever its ``expires`` says.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from slipstream.errors import InvalidResponseOverride, PresignExpired, PresignTampered
from slipstream.numeric import InvalidNumber, parse_uint

__all__ = [
    "CONTENT_DISPOSITION_PARAM",
    "CONTENT_TYPE_PARAM",
    "SIGNED_METHOD",
    "SignedGrant",
    "Signer",
]

SIGNED_METHOD = "GET"
"""The method a URL is signed for; ``HEAD`` verifies with the same signature."""
CONTENT_TYPE_PARAM = "response-content-type"
CONTENT_DISPOSITION_PARAM = "response-content-disposition"

_MAC_BYTES = hashlib.sha256().digest_size
_SIG = re.compile(r"[A-Za-z0-9_-]{43}")  # ceil(32 * 8 / 6) characters, no padding
MAX_EXPIRES = 10**12 - 1
"""The largest ``expires`` a URL may carry (unix seconds, about the year 33658)."""
_CONTROL = re.compile("[\x00-\x1f\x7f]")
_HEADER_VALUE = re.compile("[\x20-\x7e]{1,1024}")
"""What a signed content-type override may be: visible ASCII and spaces."""
_DISPOSITION_VALUE = re.compile("[^\x00-\x1f\x7f-\x9f\ud800-\udfff]{1,1024}")
"""What a signed disposition override may be: a header value that may also carry
non-ASCII text (sent as UTF-8, for the real file name in ``filename="..."``)."""


@dataclass(frozen=True, slots=True)
class SignedGrant:
    """What a verified URL grants.  Overrides are None unless they were signed."""

    space: str
    path: str
    expires: int
    etag: str
    content_type: str | None = None
    content_disposition: str | None = None


class Signer:
    """Signs and verifies URL grants with ``secret``; ``previous`` secrets still verify."""

    def __init__(self, secret: str, previous: Sequence[str] = ()) -> None:
        if not secret:
            raise ValueError("the presign secret must not be empty")
        self._key = secret.encode("utf-8")
        self._keys = (self._key, *(p.encode("utf-8") for p in previous if p))

    def sign(
        self,
        space: str,
        path: str,
        *,
        expires: int,
        etag: str,
        content_type: str | None = None,
        content_disposition: str | None = None,
    ) -> dict[str, str]:
        """The query parameters of a URL granting ``GET space/path`` until ``expires``.

        Raises :class:`~slipstream.errors.InvalidResponseOverride` for an override that
        is not a header value (control characters, empty, over 1 KiB; non-ASCII text is
        allowed in the disposition only), and ValueError for a space, path or etag with
        control characters or an ``expires`` outside ``0..MAX_EXPIRES``.
        """
        for name, override, pattern in (
            ("content type", content_type, _HEADER_VALUE),
            ("disposition", content_disposition, _DISPOSITION_VALUE),
        ):
            if override is not None and not pattern.fullmatch(override):
                raise InvalidResponseOverride(f"invalid response {name} override")
        if not 0 <= expires <= MAX_EXPIRES:
            raise ValueError(f"expires must be 0 to {MAX_EXPIRES}")
        for value in (space, path, etag):
            if not value or _CONTROL.search(value):
                raise ValueError("space, path and etag must be non-empty, without control chars")
        fields = _canonical(SIGNED_METHOD, space, path, str(expires), etag, content_type or "")
        mac = _mac(self._key, fields + "\n" + (content_disposition or ""))
        params = {"expires": str(expires), "etag": etag}
        if content_type is not None:
            params[CONTENT_TYPE_PARAM] = content_type
        if content_disposition is not None:
            params[CONTENT_DISPOSITION_PARAM] = content_disposition
        params["sig"] = base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")
        return params

    def verify(
        self, method: str, space: str, path: str, query: Mapping[str, str], now: float
    ) -> SignedGrant:
        """The grant of a URL's ``space``, ``path`` and query parameters, at time ``now``.

        ``method`` is the request's (``HEAD`` counts as ``GET``).  Raises
        :class:`~slipstream.errors.PresignTampered` or
        :class:`~slipstream.errors.PresignExpired`.  Pure computation: call it before
        touching the file system.
        """
        sig = query.get("sig")
        if sig is None:
            raise PresignTampered("missing signature (sig)")
        expires_text = query.get("expires")
        etag = query.get("etag")
        if expires_text is None or etag is None:
            raise PresignTampered("missing signature parameters (expires, etag)")
        presented = _decode_sig(sig)
        try:
            expires = parse_uint(expires_text, maximum=MAX_EXPIRES)
        except InvalidNumber:
            raise PresignTampered() from None
        if method == "HEAD":
            method = SIGNED_METHOD
        if any(_CONTROL.search(v) for v in (method, space, path, etag)):
            raise PresignTampered()
        choices = _override_choices(
            query.get(CONTENT_TYPE_PARAM), query.get(CONTENT_DISPOSITION_PARAM)
        )
        for content_type, disposition in choices:
            fields = _canonical(method, space, path, expires_text, etag, content_type or "")
            message = fields + "\n" + (disposition or "")
            if self._matches(message, presented):
                break
        else:
            raise PresignTampered()
        if now >= expires:
            raise PresignExpired()
        return SignedGrant(space, path, expires, etag, content_type, disposition)

    def _matches(self, message: str, presented: bytes) -> bool:
        """True if any key signed ``message`` as ``presented`` (every key is tried)."""
        found = False
        for key in self._keys:
            found |= hmac.compare_digest(_mac(key, message), presented)
        return found


def _canonical(method: str, space: str, path: str, expires: str, etag: str, ctype: str) -> str:
    return "\n".join((method, space, path, expires, etag, ctype))


def _mac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()


def _decode_sig(sig: str) -> bytes:
    """The 32 MAC bytes of a canonical unpadded base64url ``sig``, or PresignTampered."""
    if not _SIG.fullmatch(sig):
        raise PresignTampered()
    raw = base64.urlsafe_b64decode(sig + "=")
    # 43 characters carry 258 bits: refuse the non-canonical spellings of the same bytes.
    if len(raw) != _MAC_BYTES or base64.urlsafe_b64encode(raw)[:-1].decode("ascii") != sig:
        raise PresignTampered()
    return raw


def _override_choices(
    content_type: str | None, disposition: str | None
) -> list[tuple[str | None, str | None]]:
    """Every way of keeping or dropping the present overrides, most kept first.

    An override the signature does not cover is then ignored rather than honoured.
    Invalid header values are never candidates: they cannot have been signed.
    """
    types = (
        [content_type, None] if content_type and _HEADER_VALUE.fullmatch(content_type) else [None]
    )
    dispositions = (
        [disposition, None] if disposition and _DISPOSITION_VALUE.fullmatch(disposition) else [None]
    )
    choices = [(t, d) for t in types for d in dispositions]
    choices.sort(key=lambda choice: (choice[0] is None) + (choice[1] is None))
    return choices
