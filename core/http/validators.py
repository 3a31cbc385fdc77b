"""Validators (RFC 9110 §8.8): entity tags, their comparison, and which validator a
recipient may rely on.  Sans-IO; the one place that knows what makes a validator strong.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Validators",
    "is_strong_etag",
    "parse_etag_list",
    "strong_match",
    "strong_validator",
    "weak_match",
]


@dataclass(frozen=True, slots=True)
class Validators:
    """The validators of the selected representation."""

    etag: str
    """Strong entity tag, quoted: ``'"abc-123"'``."""
    last_modified: int
    """Unix seconds (HTTP dates have one-second resolution)."""


_OWS = " \t"


def _valid_opaque(text: str) -> bool:
    """``*etagc``: ``!``, ``#``-``~`` and obs-text (``0x80``-``0xff``); no blanks or quotes."""
    return all(c == "!" or "#" <= c <= "~" or "\x80" <= c <= "\xff" for c in text)


def parse_etag_list(value: str) -> list[str] | None:
    """The entity tags in an ``If-Match``/``If-None-Match`` value, in order.

    Returns ``None`` for ``*`` (any member that is ``*`` makes the whole value ``*``).
    Tags keep their quotes and ``W/`` prefix.  Invalid members (unquoted words, unterminated
    quotes, forbidden characters, trailing junk) are skipped.  Commas inside a quoted tag
    are part of the tag.
    """
    tags: list[str] = []
    any_tag = False
    i, n = 0, len(value)
    while i < n:
        while i < n and (value[i] in _OWS or value[i] == ","):
            i += 1
        if i >= n:
            break
        start = i
        quote = i + 2 if value.startswith('W/"', i) else i if value[i] == '"' else -1
        end = value.find('"', quote + 1) if quote >= 0 else -1
        if end >= 0:
            j = end + 1
            while j < n and value[j] in _OWS:
                j += 1
            if j >= n or value[j] == ",":
                if _valid_opaque(value[quote + 1 : end]):
                    tags.append(value[start : end + 1])
                i = j
                continue
        # Junk member: skip to the next comma.
        comma = value.find(",", start)
        member = value[start : n if comma < 0 else comma].strip(_OWS)
        any_tag = any_tag or member == "*"
        i = n if comma < 0 else comma + 1
    return None if any_tag else tags


def _opaque(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag


def strong_match(a: str, b: str) -> bool:
    """Strong comparison: both tags strong and identical."""
    return a == b and not a.startswith("W/")


def weak_match(a: str, b: str) -> bool:
    """Weak comparison: opaque tags identical, ``W/`` ignored."""
    return _opaque(a) == _opaque(b)


def is_strong_etag(etag: str | None) -> bool:
    """Whether ``etag`` is present and strong (no ``W/`` prefix)."""
    return etag is not None and etag != "" and not etag.startswith("W/")


def strong_validator(etag: str | None, last_modified: str | None) -> str | None:
    """What an ``If-Range`` (or a later comparison) may rely on: the ETag when it is
    strong, else the ``Last-Modified`` value as sent, else None.

    A weak ETag never qualifies (RFC 9110 §13.1.5: ``If-Range`` compares strongly).
    """
    if is_strong_etag(etag):
        return etag
    return last_modified
