"""The SSRF address rules: a corpus of spellings of private addresses, every resolved
address checked, and properties over the deny lists.

No test touches the network: hosts are numeric literals resolved by the real
``getaddrinfo`` with ``AI_NUMERICHOST``, or names resolved by an injected resolver.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slipstream.netpolicy import (
    DENIED_V4,
    DENIED_V6,
    NetworkPolicy,
    UrlRejected,
    address_is_public,
    parse_target,
    resolve_and_check,
)
from tests.helpers.netpolicy import FakeResolver, numeric_resolver, rejection

SSRF_URLS = [
    "http://127.0.0.1/",
    "http://2130706433/",  # decimal
    "http://0x7f000001/",  # hex
    "http://0177.0.0.1/",  # octal
    "http://127.1/",  # short form
    "http://0x7f.1/",
    "http://017700000001/",  # octal, one part
    "http://0x7F.0x00.0x00.0x01/",  # hex per part
    "http://127.0.0.1:8080/admin",
    "http://127.255.255.254/",
    "https://user:pw@127.0.0.1/",  # userinfo
    "http://[::1]/",
    "http://[0:0:0:0:0:0:0:1]/",
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped
    "http://[::ffff:7f00:1]/",
    "http://[::127.0.0.1]/",  # IPv4-compatible
    "http://[2002:7f00:1::]/",  # 6to4 of loopback ("global" to Python 3.11.7)
    "http://[64:ff9b::7f00:1]/",  # NAT64 of loopback
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of the metadata address
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",  # Teredo, client 127.0.0.1
    "http://0/",
    "http://0.0.0.0/",
    "http://[::]/",
    "http://[::ffff:0.0.0.0]/",
    "http://169.254.169.254/latest/meta-data",  # cloud metadata
    "http://2852039166/",  # 169.254.169.254, decimal
    "http://0xa9fea9fe/",  # 169.254.169.254, hex
    "http://[::ffff:169.254.169.254]/",
    "http://[2002:a9fe:a9fe::]/",  # 6to4 of the metadata address
    "http://[fd00:ec2::254]/",  # EC2 IPv6 metadata
    "http://100.100.100.200/",  # Alibaba metadata, CGNAT
    "http://100.64.0.1/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://172.31.255.255/",
    "http://192.168.1.1/",
    "http://0xc0a80001/",  # 192.168.0.1, hex
    "http://[::ffff:10.0.0.1]/",
    "http://[fe80::1]/",  # link-local
    "http://[fc00::1]/",  # unique-local
    "http://[fec0::1]/",  # site-local (deprecated)
    "http://224.0.0.1/",  # multicast
    "http://239.255.255.250:1900/",
    "http://[ff02::1]/",
    "http://255.255.255.255/",  # broadcast
    "http://240.0.0.1/",  # reserved
    "http://198.18.0.1/",  # benchmarking
    "http://192.0.2.1/",  # documentation
    "http://198.51.100.7/",
    "http://203.0.113.5/",
    "http://[2001:db8::1]/",
    "http://192.0.0.170/",  # IETF protocol assignments
]


def test_corpus_is_large_enough() -> None:
    assert len(SSRF_URLS) >= 40
    assert len(set(SSRF_URLS)) == len(SSRF_URLS)


@pytest.mark.parametrize("url", SSRF_URLS)
def test_ssrf_spellings_are_blocked_after_real_resolution(url: str) -> None:
    target = parse_target(url)
    addresses = numeric_resolver(target.host, target.port)
    assert addresses  # the real resolver understood the spelling
    with pytest.raises(UrlRejected) as exc_info:
        resolve_and_check(NetworkPolicy(), target, numeric_resolver)
    assert rejection(exc_info) == "DOMAIN_BLOCKED"
    for address in addresses:
        assert not address_is_public(address)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://2130706433/", "127.0.0.1"),
        ("http://0x7f000001/", "127.0.0.1"),
        ("http://0177.0.0.1/", "127.0.0.1"),
        ("http://127.1/", "127.0.0.1"),
        ("http://0/", "0.0.0.0"),
        ("http://0xa9fea9fe/", "169.254.169.254"),
    ],
)
def test_the_policy_judges_what_the_resolver_produced(url: str, expected: str) -> None:
    target = parse_target(url)
    assert numeric_resolver(target.host, target.port) == [expected]
    allowed = resolve_and_check(
        NetworkPolicy(allow_private_networks=True), target, numeric_resolver
    )
    assert allowed == [expected]


def test_name_resolving_to_loopback_is_blocked() -> None:
    resolver = FakeResolver({"innocent.example.com": ["127.0.0.1"]})
    target = parse_target("http://innocent.example.com/file.bin")
    with pytest.raises(UrlRejected) as exc_info:
        resolve_and_check(NetworkPolicy(), target, resolver)
    assert rejection(exc_info) == "DOMAIN_BLOCKED"
    assert resolver.calls == [("innocent.example.com", 80)]


@pytest.mark.parametrize(
    "addresses",
    [
        ["93.184.216.34", "127.0.0.1"],
        ["127.0.0.1", "93.184.216.34"],
        ["2606:4700::1111", "fd00::1"],
        ["93.184.216.34", "::ffff:192.168.0.1"],
        ["93.184.216.34", "fe80::1%eth0"],
        ["93.184.216.34", "not-an-address"],
        [],
    ],
)
def test_every_resolved_address_must_pass(addresses: list[str]) -> None:
    resolver = FakeResolver({"mixed.example.com": addresses})
    target = parse_target("https://mixed.example.com/")
    with pytest.raises(UrlRejected) as exc_info:
        resolve_and_check(NetworkPolicy(), target, resolver)
    assert rejection(exc_info) == "DOMAIN_BLOCKED"
    assert len(resolver.calls) == 1


def test_resolved_once_and_checked_addresses_returned() -> None:
    resolver = FakeResolver(
        {"cdn.example.com": ["93.184.216.34", "2606:4700:0:0::1111", "93.184.216.34"]}
    )
    target = parse_target("https://cdn.example.com:8443/x")
    got = resolve_and_check(NetworkPolicy(), target, resolver)
    assert got == ["93.184.216.34", "2606:4700::1111"]  # canonical, de-duplicated, in order
    assert resolver.calls == [("cdn.example.com", 8443)]


def test_resolver_errors_propagate() -> None:
    resolver = FakeResolver({})
    with pytest.raises(socket.gaierror):
        resolve_and_check(NetworkPolicy(), parse_target("http://nowhere.invalid/"), resolver)


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "8.8.8.8",
        "1.1.1.1",
        "2606:4700::1111",
        "2a00:1450:4001:82b::200e",
        "::ffff:8.8.8.8",  # mapped public
        "64:ff9b::808:808",  # NAT64 of public
        "2002:808:808::1",  # 6to4 of public
    ],
)
def test_public_addresses_pass(address: str) -> None:
    assert address_is_public(address)
    target = parse_target("http://public.example.com/")
    resolver = FakeResolver({"public.example.com": [address]})
    assert resolve_and_check(NetworkPolicy(), target, resolver) == [
        str(ipaddress.ip_address(address))
    ]


@pytest.mark.parametrize("url", ["http://93.184.216.34/", "http://[2606:4700::1111]/"])
def test_public_literals_pass_through_the_real_resolver(url: str) -> None:
    target = parse_target(url)
    assert resolve_and_check(NetworkPolicy(), target, numeric_resolver) == [target.host]


@pytest.mark.parametrize(
    "address", ["localhost", "", "127.0.0.1%lo", "fe80::1%eth0", "1.2.3", "::ffff:1.2.3.4.5"]
)
def test_non_addresses_are_never_public(address: str) -> None:
    assert not address_is_public(address)


def test_explicit_list_overrides_python_is_global() -> None:
    # Whatever this Python's ipaddress tables say, these are refused.
    for address in ["2002:7f00:1::", "224.0.0.1", "100.100.100.200", "ff0e::1"]:
        assert not address_is_public(address)


def test_teredo_is_judged_by_its_embedded_addresses() -> None:
    # Server 65.54.227.120; client is stored inverted: ~0x7f000001 == 0x80fffffe.
    assert not address_is_public("2001:0:4136:e378:8000:63bf:80ff:fffe")


@st.composite
def v4_in_denied(draw: st.DrawFn) -> ipaddress.IPv4Address:
    net = draw(st.sampled_from(DENIED_V4))
    offset = draw(st.integers(0, net.num_addresses - 1))
    return net[offset]


@settings(max_examples=200)
@given(v4_in_denied())
def test_every_denied_v4_address_is_refused_in_every_form(addr: ipaddress.IPv4Address) -> None:
    n = int(addr)
    forms = [
        str(addr),
        f"::ffff:{addr}",
        str(ipaddress.IPv6Address((0xFFFF << 32) | n)),
        str(ipaddress.IPv6Address((0x64FF9B << 96) | n)),  # NAT64
        str(ipaddress.IPv6Address((0x2002 << 112) | (n << 80))),  # 6to4
    ]
    if n > 1:
        forms.append(str(ipaddress.IPv6Address(n)))  # IPv4-compatible
    for form in forms:
        assert not address_is_public(form), form


@settings(max_examples=200)
@given(st.integers(0, 2**32 - 1))
def test_embedded_forms_agree_with_ipv4(n: int) -> None:
    v4 = address_is_public(str(ipaddress.IPv4Address(n)))
    assert address_is_public(str(ipaddress.IPv6Address((0xFFFF << 32) | n))) == v4
    assert address_is_public(str(ipaddress.IPv6Address((0x64FF9B << 96) | n))) == v4
    assert address_is_public(str(ipaddress.IPv6Address((0x2002 << 112) | (n << 80)))) == v4


@st.composite
def v6_in_denied(draw: st.DrawFn) -> ipaddress.IPv6Address:
    net = draw(st.sampled_from(DENIED_V6))
    offset = draw(st.integers(0, net.num_addresses - 1))
    return net[offset]


@settings(max_examples=200)
@given(v6_in_denied())
def test_every_denied_v6_address_is_refused(addr: ipaddress.IPv6Address) -> None:
    assert not address_is_public(str(addr))


@settings(max_examples=100)
@given(st.integers(0, 2**128 - 1))
def test_ipv6_outside_global_unicast_is_refused(n: int) -> None:
    addr = ipaddress.IPv6Address(n)
    embeds_v4 = any(
        addr in ipaddress.IPv6Network(net)
        for net in ("::ffff:0:0/96", "::/96", "64:ff9b::/96", "2002::/16", "2001::/32")
    )
    if addr not in ipaddress.IPv6Network("2000::/3") and not embeds_v4:
        assert not address_is_public(str(addr))


@pytest.mark.parametrize(
    "address",
    [
        "0.0.0.0", "127.0.0.1", "10.0.0.1", "172.16.0.1", "192.168.0.1", "169.254.169.254",
        "100.64.0.1", "100.100.100.200", "224.0.0.1", "239.255.255.255", "255.255.255.255",
        "240.0.0.1", "198.18.0.1", "198.19.255.255", "192.0.2.1", "198.51.100.1", "203.0.113.1",
        "::", "::1", "fe80::1", "fc00::1", "fd00:ec2::254", "ff02::1", "2001:db8::1",
    ],
)  # fmt: skip
def test_explicit_deny_list_covers_the_required_ranges(address: str) -> None:
    # Checked against the lists themselves, independent of ipaddress's is_global tables.
    addr = ipaddress.ip_address(address)
    nets: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = (
        DENIED_V4 if addr.version == 4 else DENIED_V6
    )
    assert any(addr in net for net in nets)
