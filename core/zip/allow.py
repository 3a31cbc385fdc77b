"""The zip service's URI prefix allow list (seed 004), sans-IO.

A prefix (``--zip-allow-prefix``) is an ``http``/``https`` URL without userinfo, query
or fragment, normalised like every fetched URL (:func:`~slipstream.netpolicy.parse_target`:
case of scheme and host, IDNA, trailing dot, default port, canonical path).  A URI is
admitted when its canonical form has the prefix's scheme, host and port and its path
lies under the prefix's path **on a segment boundary**: ``/pub/`` admits ``/pub/a``;
``/pub`` admits ``/pub`` and ``/pub/a`` but never ``/public``.

What is compared is the canonical URL, which is also exactly what is sent (the fetcher
sends ``Target.url``), so an upstream never sees a path other than the one checked.
A URI is refused whatever its path when it carries userinfo (``http://U@evil/`` reads
like ``U``, and credentials in a URI are never forwarded) or when a segment could still
be resolved into a dot segment by an upstream that decodes or folds again
(:func:`~slipstream.urlcanon.resolvable_segment`).  The query plays no part: it is sent
as given (escaped where it must be).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from slipstream.netpolicy import Target, UrlRejected, parse_target
from slipstream.urlcanon import resolvable_segment

__all__ = ["AllowList", "AllowPrefix", "parse_prefix"]


@dataclass(frozen=True, slots=True)
class AllowPrefix:
    """One normalised prefix; :attr:`text` is its canonical spelling."""

    scheme: str
    host: str
    port: int
    path: str
    text: str

    def admits(self, target: Target) -> bool:
        """Whether canonical ``target`` lies under this prefix (segment boundary)."""
        if (target.scheme, target.host, target.port) != (self.scheme, self.host, self.port):
            return False
        path = target.path
        if self.path.endswith("/"):
            return path.startswith(self.path)
        return path == self.path or path.startswith(self.path + "/")


def _has_userinfo(uri: str) -> bool:
    try:
        return "@" in urlsplit(uri).netloc
    except ValueError:
        return False


def parse_prefix(text: str) -> AllowPrefix:
    """A prefix from its configured text; ``ValueError`` with the reason when invalid."""
    try:
        target = parse_target(text)
    except UrlRejected as exc:
        raise ValueError(exc.message) from None
    parts = urlsplit(text)
    if "@" in parts.netloc:
        raise ValueError("a prefix may not contain userinfo (user@)")
    if "?" in text or "#" in text:
        raise ValueError("a prefix may not contain a query or a fragment")
    reason = resolvable_segment(target.path)
    if reason is not None:
        raise ValueError(reason)
    return AllowPrefix(target.scheme, target.host, target.port, target.path, target.url)


class AllowList:
    """Configured prefixes; an empty list admits nothing.

    ``ValueError`` names the first prefix that is not a valid one, with the reason.
    """

    def __init__(self, prefixes: Sequence[str]) -> None:
        parsed = []
        for text in prefixes:
            try:
                parsed.append(parse_prefix(text))
            except ValueError as exc:
                raise ValueError(f"invalid zip allow prefix {text!r}: {exc}") from None
        self.prefixes: tuple[AllowPrefix, ...] = tuple(parsed)

    def check(self, target: Target) -> None:
        """Raise ``UrlRejected("DOMAIN_BLOCKED")`` unless ``target`` is admitted.

        For every fetch hop (redirects too): the canonical target must lie under a
        prefix and hold no segment an upstream could still resolve.
        """
        reason = resolvable_segment(target.path)
        if reason is not None:
            raise UrlRejected("DOMAIN_BLOCKED", f"{target.url}: {reason}")
        if not any(prefix.admits(target) for prefix in self.prefixes):
            raise UrlRejected("DOMAIN_BLOCKED", f"{target.url} is not in the allow list")

    def canonical(self, uri: str) -> str | None:
        """The canonical URL to fetch for a client's ``uri``, or None when refused."""
        if _has_userinfo(uri):
            return None
        try:
            target = parse_target(uri)
            self.check(target)
        except UrlRejected:
            return None
        return target.url
