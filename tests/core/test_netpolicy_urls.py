"""Outbound URLs: what :func:`~slipstream.netpolicy.parse_target` refuses and how it
normalises what it accepts."""

from __future__ import annotations

import pytest

from slipstream.netpolicy import Target, UrlRejected, parse_target
from tests.helpers.netpolicy import rejection


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/file",
        "file:///etc/passwd",
        "gopher://127.0.0.1:70/",
        "javascript:alert(1)",
        "http://",
        "https://",
        "http:///path",
        "http:example.com",
        "//example.com/",
        "not a url",
        "",
        "http://exa mple.com",
        "http://example.com /",
        "http://example.com\t/",
        "http://exa\nmple.com/",
        "http://example.com:99999/",
        "http://example.com:65536/",
        "http://example.com:0/",
        "http://example.com:-1/",
        "http://example.com:+80/",
        "http://example.com:8o/",
        "http://example.com:80:80/",
        "http://[::1/",
        "http://[zz::1]/",
        "http://[::1]x/",
        "http://ex%61mple.com/",
        "http://a..b/",
        "http://-leading.example/",
        "http://exa$mple.com/",
        "http://evil.com\\@good.com/",
        "http://user@/",
    ],
)
def test_invalid_urls(url: str) -> None:
    with pytest.raises(UrlRejected) as exc_info:
        parse_target(url)
    assert rejection(exc_info) == "INVALID_URL"
    assert exc_info.value.message


def test_scoped_ipv6_literal_is_refused() -> None:
    with pytest.raises(UrlRejected) as exc_info:
        parse_target("http://[fe80::1%25eth0]/")
    assert rejection(exc_info) == "DOMAIN_BLOCKED"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://example.com", Target("http", "example.com", 80, "http://example.com/")),
        (
            "HTTPS://Example.COM./a/b?x=1#frag",
            Target("https", "example.com", 443, "https://example.com/a/b?x=1"),
        ),
        ("http://example.com:80/", Target("http", "example.com", 80, "http://example.com/")),
        ("https://example.com:443/", Target("https", "example.com", 443, "https://example.com/")),
        (
            "http://example.com:8080/",
            Target("http", "example.com", 8080, "http://example.com:8080/"),
        ),
        ("https://example.com:80/", Target("https", "example.com", 80, "https://example.com:80/")),
        ("http://example.com:/", Target("http", "example.com", 80, "http://example.com/")),
        (
            "http://user:secret@example.com/f",
            Target("http", "example.com", 80, "http://example.com/f"),
        ),
        ("http://[0:0::1]:81/", Target("http", "::1", 81, "http://[::1]:81/")),
        (
            "http://[2606:4700:0::1111]/",
            Target("http", "2606:4700::1111", 80, "http://[2606:4700::1111]/"),
        ),
        (
            "http://例え.jp/ファイル",
            Target(
                "http",
                "xn--r8jz45g.jp",
                80,
                "http://xn--r8jz45g.jp/%E3%83%95%E3%82%A1%E3%82%A4%E3%83%AB",
            ),
        ),
        (
            "http://example.com/a/./b/../%2e%2E/.%2e/c/%7e%41%2f?q=é&r=%zz#/../x",
            Target("http", "example.com", 80, "http://example.com/c/~A%2F?q=%C3%A9&r=%25zz"),
        ),
        ("http://example.com/..", Target("http", "example.com", 80, "http://example.com/")),
        ("http://2130706433/", Target("http", "2130706433", 80, "http://2130706433/")),
        (
            "http://under_score.example/",
            Target("http", "under_score.example", 80, "http://under_score.example/"),
        ),
    ],
)
def test_parse_target_normalises(url: str, expected: Target) -> None:
    assert parse_target(url) == expected


def test_userinfo_is_never_forwarded() -> None:
    target = parse_target("https://admin:hunter2@files.example.com/x")
    assert "admin" not in target.url
    assert "hunter2" not in target.url
