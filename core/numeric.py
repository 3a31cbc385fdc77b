"""The one parser for numbers that arrive as text (query and body parameters, upstream
header fields), sans-IO.

``str.isdigit()`` and ``int()`` are both too generous for input from the network:
``isdigit`` is true for ``"²"`` (which ``int`` then refuses), and ``int`` accepts
``"٣"``, ``" 7 "``, ``"+7"`` and ``"1_000"``.  :func:`parse_uint` accepts exactly one
or more ASCII digits ``0-9`` (leading zeros allowed) whose value is at most
``maximum`` (by default the largest signed 64-bit integer, the largest size or offset
any peer, file system or ``Content-Length`` can carry), and raises
:class:`InvalidNumber` (a ``ValueError``) for everything else, before converting a
digit string of unbounded length.
"""

from __future__ import annotations

from typing import Final

__all__ = ["INT64_MAX", "InvalidNumber", "parse_uint", "parse_uint_or_none"]

INT64_MAX: Final = 2**63 - 1
"""The largest value :func:`parse_uint` accepts unless told otherwise."""

_ASCII_DIGITS: Final = frozenset("0123456789")


class InvalidNumber(ValueError):
    """Text that is not a plain unsigned decimal integer within the allowed range."""


def parse_uint(text: str | bytes, *, maximum: int = INT64_MAX) -> int:
    """``text`` as a non-negative integer of ASCII digits, at most ``maximum``.

    Raises :class:`InvalidNumber` for an empty string, any character that is not an
    ASCII digit (signs, blanks, underscores, other scripts' digits), or a value above
    ``maximum``.
    """
    if isinstance(text, bytes | bytearray):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise InvalidNumber("not a decimal number") from None
    if not text or not _ASCII_DIGITS.issuperset(text):
        raise InvalidNumber("not a decimal number")
    significant = text.lstrip("0")
    if len(significant) > len(str(maximum)):  # never convert an absurdly long string
        raise InvalidNumber(f"number larger than {maximum}")
    value = int(significant or "0")
    if value > maximum:
        raise InvalidNumber(f"number larger than {maximum}")
    return value


def parse_uint_or_none(text: str | bytes | None, *, maximum: int = INT64_MAX) -> int | None:
    """:func:`parse_uint`, with ``None`` for absent or invalid text (optional header fields)."""
    if text is None:
        return None
    try:
        return parse_uint(text, maximum=maximum)
    except InvalidNumber:
        return None
