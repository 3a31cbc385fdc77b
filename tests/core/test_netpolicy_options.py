"""The policy's options: ``allow_private_networks`` and the domain allow and block lists.

No test touches the network: hosts are numeric literals resolved by the real
``getaddrinfo`` with ``AI_NUMERICHOST``, or names resolved by an injected resolver.
"""

from __future__ import annotations

import pytest

from slipstream.netpolicy import NetworkPolicy, UrlRejected, parse_target, resolve_and_check
from tests.helpers.netpolicy import FakeResolver, numeric_resolver, rejection


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000/f", "http://[::1]/", "http://10.1.2.3/", "http://0x7f000001/"]
)
def test_allow_private_networks_lets_private_addresses_through(url: str) -> None:
    target = parse_target(url)
    policy = NetworkPolicy(allow_private_networks=True)
    assert resolve_and_check(policy, target, numeric_resolver) == numeric_resolver(
        target.host, target.port
    )


def test_allow_private_networks_still_applies_domain_lists() -> None:
    resolver = FakeResolver({"intranet.corp": ["10.0.0.5"], "other.corp": ["10.0.0.6"]})
    policy = NetworkPolicy(
        allow_domains=("intranet.corp", "other.corp"),
        block_domains=("other.corp",),
        allow_private_networks=True,
    )
    assert resolve_and_check(policy, parse_target("http://intranet.corp/"), resolver) == [
        "10.0.0.5"
    ]
    for url in ["http://other.corp/", "http://example.com/"]:
        with pytest.raises(UrlRejected) as exc_info:
            resolve_and_check(policy, parse_target(url), resolver)
        assert rejection(exc_info) == "DOMAIN_BLOCKED"
    assert resolver.calls == [("intranet.corp", 80)]  # refused hosts are never resolved


def test_allow_private_networks_still_refuses_scoped_and_garbage() -> None:
    policy = NetworkPolicy(allow_private_networks=True)
    target = parse_target("http://lan.example/")
    for addresses in (["fe80::1%eth0"], ["nonsense"], []):
        with pytest.raises(UrlRejected) as exc_info:
            policy.check_addresses(target, addresses)
        assert rejection(exc_info) == "DOMAIN_BLOCKED"


@pytest.mark.parametrize(
    ("url", "blocked"),
    [
        ("http://evil.com/", True),
        ("http://EVIL.com./", True),
        ("http://sub.evil.com/", True),
        ("http://a.b.Sub.Evil.COM/", True),
        ("http://notevil.com/", False),
        ("http://evil.com.example.org/", False),
        ("http://tracker.net/", True),
        ("http://x.tracker.net/", True),
        ("http://xn--r8jz45g.jp/", True),  # IDNA entry matched by its ASCII form
        ("http://例え.jp/", True),
        ("http://example.org/", False),
    ],
)
def test_block_domains(url: str, blocked: bool) -> None:
    policy = NetworkPolicy(block_domains=("Evil.COM.", "*.tracker.net", "例え.jp"))
    target = parse_target(url)
    if blocked:
        with pytest.raises(UrlRejected) as exc_info:
            policy.check_host(target)
        assert rejection(exc_info) == "DOMAIN_BLOCKED"
    else:
        policy.check_host(target)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://example.org/", True),
        ("http://EXAMPLE.org./", True),
        ("http://files.example.org/", True),
        ("http://cdn.files.example.org/", True),
        ("http://example.com/", False),
        ("http://badexample.org/", False),
        ("http://example.org.evil.com/", False),
        ("http://93.184.216.34/", False),
        ("http://mirror.net/", True),
    ],
)
def test_allow_domains(url: str, allowed: bool) -> None:
    policy = NetworkPolicy(allow_domains=("example.org", ".mirror.net"))
    target = parse_target(url)
    if allowed:
        policy.check_host(target)
    else:
        with pytest.raises(UrlRejected) as exc_info:
            policy.check_host(target)
        assert rejection(exc_info) == "DOMAIN_BLOCKED"


def test_block_wins_over_allow() -> None:
    policy = NetworkPolicy(allow_domains=("example.org",), block_domains=("bad.example.org",))
    policy.check_host(parse_target("http://good.example.org/"))
    with pytest.raises(UrlRejected):
        policy.check_host(parse_target("http://x.bad.example.org/"))


def test_domain_entries_are_normalised() -> None:
    policy = NetworkPolicy(allow_domains=("Example.ORG.", "*.Files.Net"), block_domains=["B.c"])  # type: ignore[arg-type]
    assert policy.allow_domains == ("example.org", "files.net")
    assert policy.block_domains == ("b.c",)
    with pytest.raises(ValueError):
        NetworkPolicy(block_domains=("bad domain",))
    with pytest.raises(TypeError):
        NetworkPolicy(block_domains="example.com")  # type: ignore[arg-type]
