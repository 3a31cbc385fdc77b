"""Credentials out of logged request targets (sans-IO).

The access log writes each request's target; a query parameter that carries a
credential has its value replaced by ``***``, and everything else of the target is kept
byte for byte.  Names are compared after percent-decoding (``+`` as a space, as the
server's own query parsing does, repeated so that a double-encoded name is caught too)
and case-insensitively, so ``?%73ig=`` and ``?TOKEN=`` are masked as well: a name the
routes would not accept may still carry the real value.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import unquote_plus

__all__ = ["CREDENTIAL_PARAMS", "MASK", "redact_target"]

CREDENTIAL_PARAMS: Final = frozenset(
    {
        "token",  # the bearer token as ?token= (every Bearer-authenticated route)
        "sig",  # the HMAC signature of a presigned /s/... URL
    }
)
"""Query parameter names (lower case) whose values are credentials on this server's routes."""
MASK: Final = "***"
_DECODE_ROUNDS = 3


def redact_target(target: str) -> str:
    """``target`` with the value of every :data:`CREDENTIAL_PARAMS` parameter masked."""
    path, mark, query = target.partition("?")
    if not mark or "=" not in query:
        return target
    fields = query.split("&")
    for index, field in enumerate(fields):
        name, equals, _value = field.partition("=")
        if equals and _is_credential(name):
            fields[index] = f"{name}={MASK}"
    return f"{path}?{'&'.join(fields)}"


def _is_credential(name: str) -> bool:
    for _ in range(_DECODE_ROUNDS):
        if name.casefold() in CREDENTIAL_PARAMS:
            return True
        decoded = unquote_plus(name)
        if decoded == name:
            return False
        name = decoded
    return name.casefold() in CREDENTIAL_PARAMS
