"""The guarded fetcher (slipstream.fetch) applying the network policy: refused before any
connection (loopback, domain lists, invalid URLs), the preflight check of a job's URL, and
URLs httpx cannot parse.

A :class:`FakeNet` stands in for DNS and for the network beyond loopback: invented
``.example`` names resolve from a table, and the public-looking address :data:`PUBLIC` is
dialled to a loopback upstream.  Any other address is dialled for real.
"""

from __future__ import annotations

import pytest
import trio

from slipstream.fetch import Fetcher, FetchError
from slipstream.netpolicy import NetworkPolicy, Target, UrlRejected
from tests.helpers.fakenet import PUBLIC, FakeNet
from tests.helpers.fetch import DATA, OPEN, body, fetch_error, fetcher, get
from tests.helpers.upstream import Blob, Upstream

pytestmark = pytest.mark.usefixtures("fetch_engine")


async def test_default_policy_refuses_loopback_without_connecting(upstream: Upstream) -> None:
    upstream.add("/data", Blob(DATA))
    async with fetcher(NetworkPolicy()) as f:
        assert await fetch_error(f, upstream.url("/data")) == "DOMAIN_BLOCKED"
        assert await fetch_error(f, f"http://localhost:{upstream.port}/data") == "DOMAIN_BLOCKED"
        assert await fetch_error(f, f"http://127.1:{upstream.port}/data") == "DOMAIN_BLOCKED"
    assert upstream.connections == 0
    assert upstream.requests == []


async def test_allow_private_networks_lets_loopback_through(upstream: Upstream) -> None:
    url = upstream.add("/data", Blob(DATA))
    async with fetcher(OPEN) as f, f.stream(url) as fetched:
        assert fetched.status == 200
        assert fetched.url == url
        assert fetched.headers["content-length"] == str(len(DATA))
        assert await body(fetched) == DATA
    assert upstream.connections == 1


async def test_domain_lists_apply_before_any_lookup(upstream: Upstream) -> None:
    net = FakeNet({PUBLIC: upstream.port or 0})
    net.name("files.example", [PUBLIC])
    net.name("evil.example", [PUBLIC])
    upstream.add("/data", Blob(DATA))
    policy = NetworkPolicy(block_domains=("evil.example",))
    async with fetcher(policy, net) as f:
        assert await fetch_error(f, "http://cdn.EVIL.example./data") == "DOMAIN_BLOCKED"
        assert net.lookups == []
        assert await get(f, "http://files.example/data") == (200, DATA)
    allow_only = NetworkPolicy(allow_domains=("files.example",))
    async with fetcher(allow_only, net) as f:
        assert await fetch_error(f, "http://evil.example/data") == "DOMAIN_BLOCKED"
    assert "evil.example" not in net.lookups


@pytest.mark.parametrize("url", ["ftp://files.example/x", "http://", "file:///etc/passwd", "x"])
async def test_invalid_urls(url: str) -> None:
    net = FakeNet()
    async with fetcher(OPEN, net) as f:
        assert await fetch_error(f, url) == "INVALID_URL"
    assert net.lookups == []
    assert net.dialed == []


async def test_preflight_refuses_loopback_without_connecting(upstream: Upstream) -> None:
    async with fetcher(NetworkPolicy()) as f:
        for url in (upstream.url("/x"), f"http://localhost:{upstream.port}/x"):
            with pytest.raises(FetchError) as caught:
                await f.preflight(url)
            assert caught.value.key == "DOMAIN_BLOCKED"
    assert upstream.connections == 0


async def test_preflight_normalises_and_never_connects() -> None:
    net = FakeNet()
    net.name("files.example", [PUBLIC])
    async with fetcher(NetworkPolicy(), net) as f:
        got = await f.preflight("HTTP://User:Pw@Files.Example.:8080/a/b?c=d#frag")
    assert got == Target("http", "files.example", 8080, "http://files.example:8080/a/b?c=d")
    assert net.lookups == ["files.example"]
    assert net.dialed == []


async def test_preflight_leaves_lookup_failures_to_the_fetch() -> None:
    net = FakeNet()
    async with fetcher(NetworkPolicy(), net) as f:
        got = await f.preflight("http://nowhere.example/x")
        assert got.host == "nowhere.example"
        assert await fetch_error(f, "http://nowhere.example/x") == "NETWORK_ERROR"


async def test_preflight_gives_up_on_a_slow_resolver() -> None:
    async def slow(host: str, port: int) -> list[str]:
        await trio.sleep(30)
        return ["127.0.0.1"]

    started = trio.current_time()
    async with Fetcher(NetworkPolicy(), resolver=slow) as f:
        got = await f.preflight("http://slow.example/x", timeout=0.2)
    assert got.host == "slow.example"
    assert trio.current_time() - started < 2


async def test_preflight_invalid_and_blocked() -> None:
    net = FakeNet()
    policy = NetworkPolicy(block_domains=("evil.example",))
    async with fetcher(policy, net) as f:
        for url, key in [
            ("gopher://files.example/", "INVALID_URL"),
            ("http://files.example:99999/", "INVALID_URL"),
            ("http://a b.example/", "INVALID_URL"),
            ("http://x.evil.example/", "DOMAIN_BLOCKED"),
            ("http://[fe80::1%25eth0]/", "DOMAIN_BLOCKED"),
            ("http://[::1]/", "DOMAIN_BLOCKED"),
            ("http://169.254.169.254/", "DOMAIN_BLOCKED"),
        ]:
            with pytest.raises(FetchError) as caught:
                await f.preflight(url)
            assert caught.value.key == key, url
    assert net.lookups == ["::1", "169.254.169.254"]
    assert net.dialed == []


@pytest.mark.parametrize("host", ["999.1.1.1", "0177.0.0.1", "1.2.3.04"])
async def test_url_httpx_rejects_is_an_invalid_url_not_a_crash(host: str) -> None:
    """Dotted-quad look-alikes that ``parse_target`` accepts (getaddrinfo may read them
    as octal or fail) but ``httpx.URL`` refuses must surface as a FetchError, not as a
    stray ``httpx.InvalidURL`` (which a job records as INTERNAL_ERROR)."""
    net = FakeNet()
    async with fetcher(OPEN, net) as f:
        assert await fetch_error(f, f"http://{host}/x") == "INVALID_URL"
    assert net.dialed == []


async def test_a_url_is_checked_once_and_its_addresses_at_every_connection(
    upstream: Upstream,
) -> None:
    """The verdict on a URL that passed is remembered (per ``check_url``); a refused one
    is judged again every time; a name that later resolves to a refused address is
    refused at the connection all the same (no DNS rebinding through the memo)."""
    net = FakeNet({PUBLIC: upstream.port or 0})
    net.name("files.example", [PUBLIC], ["127.0.0.1"])
    upstream.add("/data", Blob(DATA))
    seen: list[str] = []

    def only_data(t: Target) -> None:
        seen.append(t.url)
        if not t.url.endswith("/data"):
            raise UrlRejected("DOMAIN_BLOCKED", "not under the allowed prefix")

    async def fetch(f: Fetcher, url: str) -> str:
        try:
            # Connection: close, so every request opens (and checks) a new connection
            async with f.stream(url, [("Connection", "close")], check_url=only_data) as fetched:
                assert await body(fetched) == DATA
                return "ok"
        except FetchError as exc:
            return exc.key

    async with fetcher(NetworkPolicy(), net) as f:
        assert await fetch(f, "http://files.example/data") == "ok"
        assert seen == ["http://files.example/data"]
        # the second lookup answers loopback: refused at the connection, memo or not
        assert await fetch(f, "http://files.example/data") == "DOMAIN_BLOCKED"
        assert seen == ["http://files.example/data"]
        for _ in range(2):
            assert await fetch(f, "http://files.example/other") == "DOMAIN_BLOCKED"
        assert seen[1:] == ["http://files.example/other"] * 2
        assert f.check("http://files.example/data") is not None  # another check_url: judged
    assert net.lookups == ["files.example", "files.example"]
