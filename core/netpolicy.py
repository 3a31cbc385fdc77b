"""Network policy for outbound fetches (SSRF guard), sans-IO.

The fetcher calls :func:`parse_target` on a client-supplied URL, then
:func:`resolve_and_check` with a resolver of its own (normally ``socket.getaddrinfo``
run in a thread).  The host is resolved **once**; every address it resolves to must pass
the policy, and the fetcher connects only to the addresses returned (so a second lookup
cannot rebind the name to somewhere else).  Each redirect hop goes through the same steps.

Decisions are made on the resolved addresses, never on the URL text: ``getaddrinfo``
turns ``2130706433``, ``0x7f000001``, ``0177.0.0.1`` and ``127.1`` into ``127.0.0.1``,
and only the address it produces is judged.  :func:`address_is_public` keeps an
explicit deny list (see :data:`DENIED_V4` and :data:`DENIED_V6`) and does not rely on
``ipaddress``'s ``is_global`` alone, whose tables vary between Python releases (3.11.7
calls the 6to4 address ``2002:7f00:1::`` global) and which counts multicast and
``100.100.100.200`` (a cloud metadata address) as non-private.  IPv6 forms that embed an
IPv4 address (IPv4-mapped, IPv4-compatible, NAT64 ``64:ff9b::/96``, 6to4 and Teredo)
are judged by the IPv4 address they carry.

Refusals raise :class:`UrlRejected` whose ``key`` is one of the seed's error keys:
``INVALID_URL`` (not http/https, malformed, no host, bad port) or ``DOMAIN_BLOCKED``
(domain lists, or an address the policy refuses).  Resolver failures (``OSError``) are
not caught here: they are the caller's ``NETWORK_ERROR``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import urlsplit

import idna

from .urlcanon import canonical_path, canonical_query

__all__ = [
    "DENIED_V4",
    "DENIED_V6",
    "NetworkPolicy",
    "Target",
    "UrlRejected",
    "address_is_public",
    "parse_target",
    "resolve_and_check",
]

RejectKey = Literal["INVALID_URL", "DOMAIN_BLOCKED"]

DEFAULT_PORTS: Final = {"http": 80, "https": 443}

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

#: IPv4 networks never fetched from (unless ``allow_private_networks``).
DENIED_V4: Final[tuple[ipaddress.IPv4Network, ...]] = (
    _V4("0.0.0.0/8"),  # "this network", unspecified
    _V4("10.0.0.0/8"),  # RFC 1918
    _V4("100.64.0.0/10"),  # CGNAT (RFC 6598), incl. 100.100.100.200
    _V4("127.0.0.0/8"),  # loopback
    _V4("169.254.0.0/16"),  # link-local, incl. 169.254.169.254
    _V4("172.16.0.0/12"),  # RFC 1918
    _V4("192.0.0.0/24"),  # IETF protocol assignments
    _V4("192.0.2.0/24"),  # TEST-NET-1 (documentation)
    _V4("192.88.99.0/24"),  # deprecated 6to4 relay anycast
    _V4("192.168.0.0/16"),  # RFC 1918
    _V4("198.18.0.0/15"),  # benchmarking
    _V4("198.51.100.0/24"),  # TEST-NET-2 (documentation)
    _V4("203.0.113.0/24"),  # TEST-NET-3 (documentation)
    _V4("224.0.0.0/4"),  # multicast
    _V4("240.0.0.0/4"),  # reserved, incl. broadcast 255.255.255.255
)

#: IPv6 networks never fetched from.  Only global unicast (2000::/3) is allowed at all;
#: these are the exceptions inside it plus the ranges outside it, listed for clarity.
DENIED_V6: Final[tuple[ipaddress.IPv6Network, ...]] = (
    _V6("::/128"),  # unspecified
    _V6("::1/128"),  # loopback
    _V6("64:ff9b:1::/48"),  # local-use NAT64 (RFC 8215)
    _V6("100::/64"),  # discard-only
    _V6("2001:2::/48"),  # benchmarking
    _V6("2001:10::/28"),  # ORCHID
    _V6("2001:20::/28"),  # ORCHIDv2
    _V6("2001:db8::/32"),  # documentation
    _V6("3fff::/20"),  # documentation (RFC 9637)
    _V6("5f00::/16"),  # SRv6 SIDs
    _V6("fc00::/7"),  # unique-local, incl. fd00:ec2::254
    _V6("fe80::/10"),  # link-local
    _V6("fec0::/10"),  # deprecated site-local
    _V6("ff00::/8"),  # multicast
)

_GLOBAL_UNICAST: Final = _V6("2000::/3")
_IPV4_MAPPED: Final = _V6("::ffff:0:0/96")
_IPV4_COMPAT: Final = _V6("::/96")
_NAT64: Final = _V6("64:ff9b::/96")
_SIXTOFOUR: Final = _V6("2002::/16")
_TEREDO: Final = _V6("2001::/32")

_PORT_RE: Final = re.compile(r"[0-9]{1,5}")
_LABEL_RE: Final = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
# Characters refused anywhere in a URL: controls, whitespace, and the backslash
# (parsers disagree on whether it ends the authority, so it could smuggle a host).
_BAD_URL_CHARS: Final = re.compile(r"[\x00-\x20\x7f\\]")


class UrlRejected(Exception):
    """A URL the fetcher must not fetch; ``key`` is the seed's error key."""

    def __init__(self, key: RejectKey, message: str) -> None:
        super().__init__(message)
        self.key: RejectKey = key
        self.message = message


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed, normalised fetch target.

    ``host`` is lower-case ASCII (IDNA-encoded, no trailing dot) or an IPv6 address
    without brackets; ``port`` is explicit or the scheme's default; ``url`` is the URL
    rebuilt from these parts plus the canonical path and query
    (:mod:`slipstream.urlcanon`), without userinfo or fragment: the exact URL to send.
    """

    scheme: str
    host: str
    port: int
    url: str

    @property
    def path(self) -> str:
        """The canonical path of :attr:`url` (no query)."""
        return urlsplit(self.url).path or "/"


def _invalid(message: str) -> UrlRejected:
    return UrlRejected("INVALID_URL", message)


def _blocked(message: str) -> UrlRejected:
    return UrlRejected("DOMAIN_BLOCKED", message)


def normalise_domain(name: str) -> str:
    """Lower-case, IDNA-encode and strip one trailing dot; ``ValueError`` if not a name."""
    name = name.strip()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise ValueError("empty host name")
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise ValueError(f"invalid international domain name: {exc}") from None
    name = name.lower()
    if len(name) > 253:
        raise ValueError("host name too long")
    for label in name.split("."):
        if not _LABEL_RE.fullmatch(label):
            raise ValueError(f"invalid host name label {label!r}")
    return name


def parse_target(url: str) -> Target:
    """Parse and normalise an ``http``/``https`` URL.

    The result's ``url`` is canonical: scheme and host in lower case, the host
    IDNA-encoded without a trailing dot, no default port, no userinfo or fragment, and
    the path and query in the form of :func:`~slipstream.urlcanon.canonical_path` (dot
    segments removed) and :func:`~slipstream.urlcanon.canonical_query`.  Parsing the
    result again gives the same target.

    Raises ``UrlRejected("INVALID_URL")`` for another scheme, a malformed URL, a missing
    host or a bad port, and ``UrlRejected("DOMAIN_BLOCKED")`` for an IPv6 literal with a
    zone (``[fe80::1%25eth0]``), which names a local interface and is always refused.
    Userinfo (``user:pass@``) is accepted but dropped: it is never forwarded upstream.
    """
    if not url or _BAD_URL_CHARS.search(url):
        raise _invalid("URL is empty or contains whitespace, control characters or '\\'")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise _invalid(f"malformed URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise _invalid("only http and https URLs can be downloaded")
    hostport = parts.netloc.rpartition("@")[2]  # userinfo is dropped, never forwarded
    if not hostport:
        raise _invalid("URL has no host")
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise _invalid("unterminated IPv6 literal")
        literal, rest = hostport[1:end], hostport[end + 1 :]
        if "%" in literal:
            raise _blocked("scoped IPv6 addresses are not allowed")
        try:
            host = ipaddress.IPv6Address(literal).compressed
        except ValueError:
            raise _invalid("invalid IPv6 literal") from None
        url_host = f"[{host}]"
    else:
        raw_host, colon, port_text = hostport.partition(":")
        rest = colon + port_text
        if "[" in hostport or "]" in hostport or "%" in raw_host:
            raise _invalid("invalid characters in host")
        try:
            host = normalise_domain(raw_host)
        except ValueError as exc:
            raise _invalid(f"invalid host: {exc}") from None
        url_host = host
    port = DEFAULT_PORTS[scheme]
    if rest:
        if not rest.startswith(":"):
            raise _invalid("malformed authority")
        port_text = rest[1:]
        if port_text:
            if not _PORT_RE.fullmatch(port_text) or not 0 < int(port_text) <= 65535:
                raise _invalid("invalid port")
            port = int(port_text)
    netloc = url_host if port == DEFAULT_PORTS[scheme] else f"{url_host}:{port}"
    path = canonical_path(parts.path)
    query = f"?{canonical_query(parts.query)}" if parts.query else ""
    return Target(scheme=scheme, host=host, port=port, url=f"{scheme}://{netloc}{path}{query}")


def _domain_matches(host: str, domains: Iterable[str]) -> bool:
    return any(host == d or host.endswith("." + d) for d in domains)


def _v4_is_public(addr: ipaddress.IPv4Address) -> bool:
    if any(addr in net for net in DENIED_V4):
        return False
    # Belt and braces: also refuse whatever this Python considers non-global.
    return addr.is_global


def _embedded_v4(addr: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address] | None:
    """The IPv4 address(es) an IPv6 address carries, or ``None`` for a plain IPv6 one."""
    if addr in _IPV4_MAPPED or addr in _NAT64 or (addr in _IPV4_COMPAT and int(addr) > 1):
        return [ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)]
    if addr in _SIXTOFOUR:
        return [ipaddress.IPv4Address((int(addr) >> 80) & 0xFFFFFFFF)]
    if addr in _TEREDO:
        server = ipaddress.IPv4Address((int(addr) >> 64) & 0xFFFFFFFF)
        client = ipaddress.IPv4Address(~int(addr) & 0xFFFFFFFF)
        return [server, client]
    return None


def _parse_address(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if "%" in address:  # scoped: tied to a local interface
        return None
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        return None


def address_is_public(address: str) -> bool:
    """Whether a numeric address may be fetched from under the default policy.

    ``False`` for anything that is not a plain numeric address (names, scoped IPv6),
    for the ranges in :data:`DENIED_V4` / :data:`DENIED_V6`, for IPv6 outside global
    unicast, and for IPv6 forms whose embedded IPv4 address is refused.
    """
    addr = _parse_address(address)
    if addr is None:
        return False
    if isinstance(addr, ipaddress.IPv4Address):
        return _v4_is_public(addr)
    embedded = _embedded_v4(addr)
    if embedded is not None:
        return all(_v4_is_public(v4) for v4 in embedded)
    if addr not in _GLOBAL_UNICAST or any(addr in net for net in DENIED_V6):
        return False
    return addr.is_global


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    """Which hosts and addresses outbound fetches may reach.

    Domain entries match the name itself and every subdomain; they are normalised like
    hosts (case, trailing dot, IDNA), and a leading ``*.`` or ``.`` is ignored.  The lists
    apply to the host as written in the URL (after normalisation); numeric hosts are
    judged by their addresses.  ``allow_private_networks`` lifts the address rule only.
    """

    allow_domains: tuple[str, ...] = ()
    block_domains: tuple[str, ...] = ()
    allow_private_networks: bool = False

    def __post_init__(self) -> None:
        for field in ("allow_domains", "block_domains"):
            entries = getattr(self, field)
            if isinstance(entries, str):
                raise TypeError(f"{field} must be a sequence of names, not a string")
            normalised = tuple(
                normalise_domain(e.strip().removeprefix("*.").removeprefix(".")) for e in entries
            )
            object.__setattr__(self, field, normalised)

    def check_host(self, target: Target) -> None:
        """Apply the domain lists; raise ``UrlRejected("DOMAIN_BLOCKED")`` if refused."""
        if _domain_matches(target.host, self.block_domains):
            raise _blocked(f"downloads from {target.host} are blocked")
        if self.allow_domains and not _domain_matches(target.host, self.allow_domains):
            raise _blocked(f"{target.host} is not in the list of allowed domains")

    def check_addresses(self, target: Target, addresses: Sequence[str]) -> list[str]:
        """Check every resolved address; return the canonical, de-duplicated ones.

        Raises ``UrlRejected("DOMAIN_BLOCKED")`` when there is no address, when any
        address is not numeric or is scoped, or (unless ``allow_private_networks``)
        when any address is refused by :func:`address_is_public`.  One bad address
        refuses the whole target: the connection may not choose among them.
        """
        if not addresses:
            raise _blocked(f"{target.host} resolved to no address")
        checked: list[str] = []
        for address in addresses:
            addr = _parse_address(address)
            if addr is None:
                raise _blocked(f"{target.host} resolved to an unusable address")
            if not self.allow_private_networks and not address_is_public(str(addr)):
                raise _blocked(f"{target.host} resolves to a non-public address ({addr})")
            if str(addr) not in checked:
                checked.append(str(addr))
        return checked


def resolve_and_check(
    policy: NetworkPolicy, target: Target, resolver: Callable[[str, int], Sequence[str]]
) -> list[str]:
    """Apply the domain lists, resolve ``target.host`` once, check every address.

    ``resolver(host, port)`` returns numeric addresses; it is called only if the domain
    lists allow the host.  The result is the list of addresses to connect to.
    """
    policy.check_host(target)
    return policy.check_addresses(target, resolver(target.host, target.port))
