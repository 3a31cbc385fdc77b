"""``slipstream.urlcanon``: canonical paths and queries, and segments an upstream could
still resolve (sans-IO), plus the property the fetcher relies on: a canonical URL is
sent by httpx byte for byte."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from slipstream.netpolicy import UrlRejected, parse_target
from slipstream.urlcanon import (
    canonical_path,
    canonical_query,
    remove_dot_segments,
    resolvable_segment,
)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        # RFC 3986 §5.2.4 and §5.4 examples, as absolute paths
        ("/a/b/c/./../../g", "/a/g"),
        ("/b/c/d;p/../../g", "/b/g"),
        ("/a/b/c/.", "/a/b/c/"),
        ("/a/b/c/..", "/a/b/"),
        ("/..", "/"),
        ("/../../g", "/g"),
        ("/./g", "/g"),
        ("/g.", "/g."),
        ("/.g", "/.g"),
        ("/g..", "/g.."),
        ("/..g", "/..g"),
        ("/a//b/../c", "/a//c"),
        ("/a/b", "/a/b"),
        ("", "/"),
    ],
)
def test_remove_dot_segments(path: str, expected: str) -> None:
    assert remove_dot_segments(path) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("", "/"),
        ("/", "/"),
        ("/pub/file.txt", "/pub/file.txt"),
        ("/pub/%2e%2e/priv", "/priv"),
        ("/pub/%2E%2e/priv", "/priv"),
        ("/pub/.%2e/priv", "/priv"),
        ("/pub/%2e./priv", "/priv"),
        ("/pub/%2e/x", "/pub/x"),
        ("/p%75b/%7e%41%5a%30%2D%5F", "/pub/~AZ0-_"),
        ("/a%2fb%5cc%3b%3F%23", "/a%2Fb%5Cc%3B%3F%23"),
        ("/a;b=c,d@e:f!$&'()*+", "/a;b=c,d@e:f!$&'()*+"),
        ('/"<>[]^`{|}', "/%22%3C%3E%5B%5D%5E%60%7B%7C%7D"),
        ("/100%/%zz/%4", "/100%25/%25zz/%254"),
        ("/caf\u00e9/\uff0e\uff0e", "/caf%C3%A9/%EF%BC%8E%EF%BC%8E"),
        ("/%e9t%E9", "/%E9t%E9"),
        ("/a/b/%2e%2e/%2e%2e/%2e%2e/c", "/c"),
        ("/pub/%252e%252e/x", "/pub/%252e%252e/x"),
    ],
)
def test_canonical_path(path: str, expected: str) -> None:
    assert canonical_path(path) == expected
    assert canonical_path(expected) == expected  # a fixed point


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("a=1&b=2", "a=1&b=2"),
        ("x=../../etc/passwd", "x=../../etc/passwd"),
        ("sig=AbC%2fd%3D", "sig=AbC%2fd%3D"),  # escapes kept as sent (signatures)
        ('q="<x>"', "q=%22%3Cx%3E%22"),
        ("q=\u00e9&r=%zz", "q=%C3%A9&r=%25zz"),
        ("a[]=1|2^3`{}", "a[]=1|2^3`{}"),
    ],
)
def test_canonical_query(query: str, expected: str) -> None:
    assert canonical_query(query) == expected
    assert canonical_query(expected) == expected


@pytest.mark.parametrize(
    "path",
    [
        "/pub/..%2Fpriv",
        "/pub/%2F..%2Fpriv",
        "/pub/..%5Cpriv",
        "/pub/%5C..",
        "/pub/..;/priv",
        "/pub/..;x=1/priv",
        "/pub/.;/x",
        "/pub/%252e%252e/priv",
        "/pub/%25252e%25252e/priv",
        "/pub/%252e%252e%252Fpriv",
        "/pub/%25u002e%25u002e/priv",
        "/pub/%C0%AE%C0%AE/priv",
        "/pub/%C0%AF",
        "/pub/%E0%80%AE%E0%80%AE/priv",
        "/pub/%F0%80%80%AE",
        "/pub/%EF%BC%8E%EF%BC%8E/priv",
        "/pub/%E2%80%A5/priv",  # two dot leader
        "/pub/%EF%BC%8E%EF%BC%8E%EF%BC%8Fpriv",
        "/pub/.../priv",
        "/pub/..%20/priv",
        "/pub/%20../priv",
        "/pub/%00",
        "/pub/a%0Ab",
        "/pub/%7F",
        "/pub/%2500",  # an encoded control character, one level down
        "/pub/%" + "25" * 9 + "2e",  # nested deeper than any upstream decodes
    ],
)
def test_segments_an_upstream_could_resolve(path: str) -> None:
    assert canonical_path(path) == path  # already canonical: normalising cannot help
    assert resolvable_segment(path) is not None


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/pub/",
        "/pub/file.txt",
        "/pub/a.b.c",
        "/pub/.hidden",
        "/pub/..hidden",
        "/pub/x..",
        "/pub/a%2Fb",  # one segment holding an encoded slash: no dot segment in it
        "/pub/%5Cback%5Cslash",
        "/pub/x;v=1.2",
        "/pub/%E9t%E9",  # Latin-1, not UTF-8: fine
        "/pub/caf%C3%A9",
        "/pub/100%25",
        "/pub//double",
        "/pub/%C2%85",  # a C1 control (NEL) is not a separator anywhere
    ],
)
def test_ordinary_segments_pass(path: str) -> None:
    assert resolvable_segment(path) is None


# --- the fetcher's invariant: canonical URLs are sent unchanged ---------------------------

PIECES = [*"abz09-._~!$&'()*+,;=:@/?#%[]\"<>^`{|}\u00e9\uff0e", "%2e", "%2F", "%5c", "%25"]
URL_TEXT = st.lists(st.sampled_from([*PIECES, "..", "./", "%zz", "%4"]), max_size=30).map("".join)


@settings(max_examples=400, deadline=None)
@given(
    host=st.sampled_from(["Example.COM.", "127.0.0.1", "[0:0::1]", "b\u00fccher.example", "h:81"]),
    rest=URL_TEXT,
)
@example(host="h", rest="/pub/../priv/x")
@example(host="h", rest="/a/%2e%2e/b?c=%2e%2e#d")
@example(host="h", rest="//x/../y")
def test_parse_target_is_a_fixed_point_of_itself_and_of_httpx(host: str, rest: str) -> None:
    try:
        target = parse_target(f"http://{host}/{rest}")
    except UrlRejected:
        return
    assert parse_target(target.url) == target
    assert target.url.isascii()
    url = httpx.URL(target.url)
    assert str(url) == target.url
    path, _, query = target.url.split("/", 3)[3].partition("?")
    sent = url.raw_path.decode("ascii")
    assert sent == "/" + path + ("?" + query if query else "")
    segments = target.path.split("/")
    assert "." not in segments and ".." not in segments
