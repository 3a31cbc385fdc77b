"""Bearer-token authentication shared by the authenticated routes."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from slipstream.errors import Unauthorized

from .http import Request


def presented_token(request: Request) -> str | None:
    """The token from ``Authorization: Bearer ...``, else from ``?token=``."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    return request.arg("token")


def token_is_valid(token: str | None, tokens: Sequence[str]) -> bool:
    """Constant-time comparison against every configured token."""
    if not token:
        return False
    presented = token.encode("utf-8", "surrogatepass")  # a JSON token may hold "\ud800"
    valid = False
    for candidate in tokens:
        valid |= hmac.compare_digest(presented, candidate.encode("utf-8"))
    return valid


def require_token(request: Request, tokens: Sequence[str]) -> None:
    """Raise :class:`Unauthorized` unless the request carries a valid token."""
    if not token_is_valid(presented_token(request), tokens):
        raise Unauthorized()
