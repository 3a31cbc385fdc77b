"""``slipstream.zip.allow``: prefixes, the segment boundary, and the spelling corpus of
``tests/server/test_zip_allowlist.py`` decided without a server (sans-IO)."""

from __future__ import annotations

import pytest

from slipstream.netpolicy import UrlRejected, parse_target
from slipstream.zip.allow import AllowList, parse_prefix
from tests.helpers.zip_allow_corpus import CORPUS, EXACT_PUB, INVALID, REFUSED

ORIGIN = "http://127.0.0.1:8123"


def spell(template: str) -> str:
    return template.replace("{o}", ORIGIN).replace("{p}", "8123")


@pytest.mark.parametrize(("template", "outcome"), CORPUS)
@pytest.mark.parametrize("prefix", [f"{ORIGIN}/pub/", f"{ORIGIN}/pub"])
def test_the_corpus_decided_without_a_server(template: str, outcome: str, prefix: str) -> None:
    allow = AllowList([prefix])
    uri = spell(template)
    if outcome == EXACT_PUB:
        outcome = "/pub" if not prefix.endswith("/") else REFUSED
    if outcome == INVALID:
        with pytest.raises(UrlRejected):
            parse_target(uri)
        assert allow.canonical(uri) is None
    elif outcome == REFUSED:
        assert allow.canonical(uri) is None
    else:
        assert allow.canonical(uri) == ORIGIN + outcome


@pytest.mark.parametrize(
    ("prefix", "canonical"),
    [
        ("http://U.example/pub/", "http://u.example/pub/"),
        ("HTTP://u.EXAMPLE.:80/pub/", "http://u.example/pub/"),
        ("https://u.example:443/a/./b/../p%75b", "https://u.example/a/pub"),
        ("http://u.example", "http://u.example/"),
        ("http://b\u00fccher.example/", "http://xn--bcher-kva.example/"),
        ("http://[0:0::1]:81/x/", "http://[::1]:81/x/"),
        ("http://u.example/caf\u00e9/", "http://u.example/caf%C3%A9/"),
    ],
)
def test_prefixes_are_normalised_like_uris(prefix: str, canonical: str) -> None:
    assert parse_prefix(prefix).text == canonical


@pytest.mark.parametrize(
    ("prefix", "reason"),
    [
        ("u.example/pub/", "http and https"),
        ("ftp://u.example/pub/", "http and https"),
        ("http:///pub/", "no host"),
        ("http://u.example:99999/", "port"),
        ("http://user@u.example/pub/", "userinfo"),
        ("http://u.example/pub/?key=", "query"),
        ("http://u.example/pub/#x", "fragment"),
        ("http://u.example/pub/..;/", "dot segment"),
        ("http://u.example/p ub/", "whitespace"),
        ("", "empty"),
    ],
)
def test_invalid_prefixes_are_refused_with_a_reason(prefix: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_prefix(prefix)
    with pytest.raises(ValueError) as caught:
        AllowList(["http://fine.example/", prefix])
    assert repr(prefix) in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("prefix", "uri", "admitted"),
    [
        ("http://u.example/pub", "http://u.example/pub", True),
        ("http://u.example/pub", "http://u.example/pub/", True),
        ("http://u.example/pub", "http://u.example/pub/a", True),
        ("http://u.example/pub", "http://u.example/public", False),
        ("http://u.example/pub", "http://u.example/pub.txt", False),
        ("http://u.example/pub", "http://u.example/pub;x", False),
        ("http://u.example/pub/", "http://u.example/pub", False),
        ("http://u.example/pub/", "http://u.example/pub/a", True),
        ("http://u.example/pub/", "http://u.example/pub%2Fa", False),
        ("http://u.example/pub/", "https://u.example/pub/a", False),
        ("http://u.example/pub/", "http://u.example:8080/pub/a", False),
        ("http://u.example/pub/", "http://u.example:80/pub/a", True),
        ("http://u.example/pub/", "http://sub.u.example/pub/a", False),
        ("http://u.example/pub/", "http://xu.example/pub/a", False),
        ("http://b\u00fccher.example/", "http://xn--bcher-kva.example/a", True),
        ("http://xn--bcher-kva.example/", "http://B\u00dcCHER.example./a", True),
        ("http://[::1]/", "http://[0:0:0:0:0:0:0:1]/a", True),
        ("http://u.example/", "http://u.example/a/../../../etc/passwd", True),  # stays on U
        ("http://u.example/", "http://u.example/%2e%2e%2f", False),
    ],
)
def test_segment_boundary_and_origin(prefix: str, uri: str, admitted: bool) -> None:
    assert (AllowList([prefix]).canonical(uri) is not None) is admitted


def test_no_prefix_admits_nothing() -> None:
    assert AllowList([]).canonical("http://u.example/") is None


def test_every_hop_is_checked_on_its_canonical_target() -> None:
    allow = AllowList(["http://u.example/pub/"])
    allow.check(parse_target("http://u.example/pub/a/../b"))
    for hop in ["http://u.example/pub/../priv", "http://u.example/pub/..;/priv"]:
        with pytest.raises(UrlRejected) as caught:
            allow.check(parse_target(hop))
        assert caught.value.key == "DOMAIN_BLOCKED"
