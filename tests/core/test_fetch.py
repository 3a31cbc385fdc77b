"""The guarded fetcher (slipstream.fetch) alone, against real loopback upstreams.

A :class:`FakeNet` stands in for DNS and for the network beyond loopback: invented
``.example`` names resolve from a table (answers may change between lookups, as a
rebinding attacker's DNS would), and the public-looking address :data:`PUBLIC` is dialled
to a loopback upstream.  Any other address is dialled for real, so if the policy ever
let ``127.0.0.1`` through, the "target" upstream would record the connection.
"""

from __future__ import annotations

import gzip
import random
import socket
from collections.abc import Sequence

import pytest
import trio

from slipstream.fetch import Fetched, Fetcher, FetchError
from slipstream.netpolicy import NetworkPolicy, Target, UrlRejected
from tests.helpers.fakenet import PUBLIC, FakeNet
from tests.helpers.upstream import Blob, RecordedRequest, Redirect, Upstream

DATA = random.Random(11).randbytes(200_000)
OPEN = NetworkPolicy(allow_private_networks=True)


def fetcher(
    policy: NetworkPolicy = OPEN,
    net: FakeNet | None = None,
    *,
    max_redirects: int = 5,
    read_timeout: float = 10.0,
) -> Fetcher:
    """A Fetcher using ``net`` (or the system resolver and real connections)."""
    if net is None:
        return Fetcher(policy, max_redirects=max_redirects, read_timeout=read_timeout)
    return Fetcher(
        policy,
        resolver=net.resolve,
        dialer=net.dial,
        max_redirects=max_redirects,
        read_timeout=read_timeout,
    )


async def body(fetched: Fetched) -> bytes:
    """Every body byte of ``fetched``."""
    out = bytearray()
    async for chunk in fetched.chunks():
        out += chunk
    return bytes(out)


async def get(f: Fetcher, url: str, headers: Sequence[tuple[str, str]] = ()) -> tuple[int, bytes]:
    """Fetch ``url`` with ``f``: (status, body)."""
    async with f.stream(url, headers) as fetched:
        return fetched.status, await body(fetched)


async def fetch_error(f: Fetcher, url: str, headers: Sequence[tuple[str, str]] = ()) -> str:
    """Fetch ``url`` expecting a FetchError; its key."""
    with pytest.raises(FetchError) as caught:
        await get(f, url, headers)
    return caught.value.key


@pytest.fixture
async def target(nursery: trio.Nursery) -> Upstream:
    """A second upstream: where an attack would like to land (must see no connection)."""
    server = Upstream()
    await nursery.start(server.run)
    server.add("/secret", Blob(b"internal secret\n"))
    return server


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- policy ------------------------------------------------------------------------------


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


# --- redirects ---------------------------------------------------------------------------


def redirect_chain(upstream: Upstream, hops: int, final: str, status: int = 302) -> str:
    """``/chain{hops}/0 -> /1 -> ... -> final``; returns the first URL."""
    prefix = f"/chain{hops}-{status}"
    for n in range(hops):
        location = f"{prefix}/{n + 1}" if n + 1 < hops else final
        upstream.add(f"{prefix}/{n}", Redirect(location, status))
    return upstream.url(f"{prefix}/0") if hops else upstream.url(final)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_up_to_five_redirects_are_followed(upstream: Upstream, status: int) -> None:
    upstream.add("/data", Blob(DATA))
    first = redirect_chain(upstream, 5, "/data", status)
    async with fetcher(OPEN) as f, f.stream(first) as fetched:
        assert fetched.status == 200
        assert fetched.url == upstream.url("/data")
        assert await body(fetched) == DATA
    assert len(upstream.requests) == 6


async def test_the_sixth_redirect_is_a_network_error(upstream: Upstream) -> None:
    upstream.add("/data", Blob(DATA))
    first = redirect_chain(upstream, 6, "/data")
    async with fetcher(OPEN) as f:
        assert await fetch_error(f, first) == "NETWORK_ERROR"
    assert upstream.requests_for("/data") == []
    assert len(upstream.requests) == 6


async def test_max_redirects_is_configurable(upstream: Upstream) -> None:
    upstream.add("/data", Blob(DATA))
    async with fetcher(OPEN, max_redirects=1) as f:
        assert await get(f, redirect_chain(upstream, 1, "/data")) == (200, DATA)
        assert await fetch_error(f, redirect_chain(upstream, 2, "/data")) == "NETWORK_ERROR"


@pytest.mark.parametrize(
    "location",
    [
        "http://127.0.0.1:{port}/secret",
        "//127.0.0.1:{port}/secret",
        "http://localhost:{port}/secret",
        "http://LOCALHOST.:{port}/secret",
        "http://2130706433:{port}/secret",
        "http://0x7f000001:{port}/secret",
        "http://[::ffff:127.0.0.1]:{port}/secret",
        "http://loopback.example:{port}/secret",
        "http://mixed.example:{port}/secret",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1:{port}/secret",
    ],
)
async def test_every_redirect_hop_is_checked(
    upstream: Upstream, target: Upstream, location: str
) -> None:
    net = FakeNet({PUBLIC: upstream.port or 0})
    net.name("files.example", [PUBLIC])
    net.name("loopback.example", ["127.0.0.1"])
    net.name("mixed.example", [PUBLIC, "127.0.0.1"])
    upstream.add("/go", Redirect(location.format(port=target.port), 307))
    async with fetcher(NetworkPolicy(), net) as f:
        assert await fetch_error(f, "http://files.example/go") == "DOMAIN_BLOCKED"
    assert len(upstream.requests_for("/go")) == 1
    assert target.connections == 0
    assert net.dialed == [(PUBLIC, 80)]


async def test_redirect_to_another_scheme_is_invalid(upstream: Upstream) -> None:
    upstream.add("/go", Redirect("file:///etc/passwd"))
    async with fetcher(OPEN) as f:
        assert await fetch_error(f, upstream.url("/go")) == "INVALID_URL"


async def test_redirect_to_a_blocked_domain(upstream: Upstream) -> None:
    net = FakeNet({PUBLIC: upstream.port or 0})
    net.name("files.example", [PUBLIC])
    net.name("evil.example", [PUBLIC])
    upstream.add("/go", Redirect("http://evil.example/data"))
    upstream.add("/data", Blob(DATA))
    policy = NetworkPolicy(block_domains=("evil.example",))
    async with fetcher(policy, net) as f:
        assert await fetch_error(f, "http://files.example/go") == "DOMAIN_BLOCKED"
    assert "evil.example" not in net.lookups
    assert upstream.requests_for("/data") == []


async def test_check_url_runs_for_every_hop(upstream: Upstream) -> None:
    upstream.add("/data", Blob(DATA))
    upstream.add("/go", Redirect("/data"))
    seen: list[str] = []

    def only_go(t: Target) -> None:
        seen.append(t.url)
        if not t.url.endswith("/go"):
            raise UrlRejected("DOMAIN_BLOCKED", "not under the allowed prefix")

    async with fetcher(OPEN) as f:
        with pytest.raises(FetchError) as caught:
            async with f.stream(upstream.url("/go"), check_url=only_go):
                pass
    assert caught.value.key == "DOMAIN_BLOCKED"
    assert seen == [upstream.url("/go"), upstream.url("/data")]
    assert upstream.requests_for("/data") == []


async def test_cross_origin_redirect_drops_credentials(
    upstream: Upstream, target: Upstream
) -> None:
    upstream.add("/start", Redirect(target.url("/land")))
    target.add("/land", Redirect(upstream.url("/back")))
    upstream.add("/back", Blob(DATA))
    upstream.add("/same", Redirect("/back"))
    secrets = [
        ("Authorization", "Bearer s3cret"),
        ("Cookie", "session=abc"),
        ("Proxy-Authorization", "Basic eHg6eXk="),
    ]
    headers = [*secrets, ("X-Trace", "t-1")]
    async with fetcher(OPEN) as f:
        assert await get(f, upstream.url("/start"), headers) == (200, DATA)
        upstream.reset()
        assert await get(f, upstream.url("/same"), headers) == (200, DATA)

    def sent(requests: list[RecordedRequest]) -> dict[str, str | None]:
        (request,) = requests
        names = ["authorization", "cookie", "proxy-authorization", "x-trace"]
        return {name: request.header(name) for name in names}

    (land,) = target.requests_for("/land")
    assert land.header("authorization") is None
    assert land.header("cookie") is None
    assert land.header("proxy-authorization") is None
    assert land.header("x-trace") == "t-1"
    # Once dropped, credentials stay dropped, even when the chain comes back.
    same_origin = {k.lower(): v for k, v in headers}
    assert sent(upstream.requests_for("/same")) == same_origin
    assert sent(upstream.requests_for("/back")) == same_origin  # same-origin hop keeps them


async def test_credentials_dropped_on_the_way_back_to_the_origin(
    upstream: Upstream, target: Upstream
) -> None:
    upstream.add("/start", Redirect(target.url("/land")))
    target.add("/land", Redirect(upstream.url("/back")))
    upstream.add("/back", Blob(DATA))
    async with fetcher(OPEN) as f:
        await get(f, upstream.url("/start"), [("Authorization", "Bearer s3cret")])
    (start,) = upstream.requests_for("/start")
    (back,) = upstream.requests_for("/back")
    assert start.header("authorization") == "Bearer s3cret"
    assert back.header("authorization") is None


# --- resolution and dialling -------------------------------------------------------------


async def test_one_lookup_per_connection_and_only_checked_addresses_dialled(
    upstream: Upstream,
) -> None:
    net = FakeNet({PUBLIC: upstream.port or 0})
    net.name("files.example", [PUBLIC])
    upstream.add("/data", Blob(DATA))
    async with fetcher(NetworkPolicy(), net) as f:
        for _ in range(3):
            assert await get(f, "http://files.example/data") == (200, DATA)
    assert upstream.connections >= 1
    assert net.lookups == ["files.example"] * upstream.connections
    assert net.dialed == [(PUBLIC, 80)] * upstream.connections
    assert len(upstream.requests_for("/data")) == 3
    assert all(r.header("host") == "files.example" for r in upstream.requests)


async def test_dns_rebinding_cannot_reach_loopback(upstream: Upstream, target: Upstream) -> None:
    """The name answers a public address, then 127.0.0.1: every connection uses an
    address checked on its own lookup, so the second answer is refused, never dialled."""
    net = FakeNet({PUBLIC: upstream.port or 0})
    net.name("rebind.example", [PUBLIC], ["127.0.0.1"])
    upstream.add("/secret", Blob(DATA))
    url = f"http://rebind.example:{target.port}/secret"
    async with fetcher(NetworkPolicy(), net) as f:
        assert await get(f, url) == (200, DATA)
    assert net.dialed == [(PUBLIC, target.port)]
    async with fetcher(NetworkPolicy(), net) as f:  # a new pool: a new connection
        assert await fetch_error(f, url) == "DOMAIN_BLOCKED"
    assert net.lookups == ["rebind.example"] * 2
    assert net.dialed == [(PUBLIC, target.port)]
    assert target.connections == 0


async def test_preflight_then_rebinding_is_caught_at_connect(target: Upstream) -> None:
    net = FakeNet()
    net.name("rebind.example", [PUBLIC], ["127.0.0.1"])
    url = f"http://rebind.example:{target.port}/secret"
    async with fetcher(NetworkPolicy(), net) as f:
        checked = await f.preflight(url)
        assert checked.host == "rebind.example"
        assert await fetch_error(f, url) == "DOMAIN_BLOCKED"
    assert net.dialed == []
    assert target.connections == 0


@pytest.mark.parametrize(
    "answers",
    [[PUBLIC, "127.0.0.1"], ["127.0.0.1", PUBLIC], [PUBLIC, "::1"], [PUBLIC, "fe80::1%eth0"]],
)
async def test_one_bad_address_refuses_the_whole_host(
    upstream: Upstream, target: Upstream, answers: list[str]
) -> None:
    net = FakeNet({PUBLIC: upstream.port or 0})
    net.name("mixed.example", answers)
    url = f"http://mixed.example:{target.port}/secret"
    async with fetcher(NetworkPolicy(), net) as f:
        with pytest.raises(FetchError) as caught:
            await f.preflight(url)
        assert caught.value.key == "DOMAIN_BLOCKED"
        assert await fetch_error(f, url) == "DOMAIN_BLOCKED"
    assert net.dialed == []
    assert upstream.connections == target.connections == 0


async def test_next_checked_address_is_tried_when_one_fails(upstream: Upstream) -> None:
    other = "93.184.215.15"  # public, unreachable in the test network
    net = FakeNet({PUBLIC: upstream.port or 0})
    net.name("files.example", [other, PUBLIC])
    upstream.add("/data", Blob(DATA))
    async with fetcher(NetworkPolicy(), net) as f:
        assert await get(f, "http://files.example/data") == (200, DATA)
    assert net.dialed == [(other, 80), (PUBLIC, 80)]


async def test_resolver_failure_and_refused_connection_are_network_errors() -> None:
    net = FakeNet()
    async with fetcher(NetworkPolicy(), net) as f:
        assert await fetch_error(f, "http://nowhere.example/x") == "NETWORK_ERROR"
    async with fetcher(OPEN) as f:
        assert await fetch_error(f, f"http://127.0.0.1:{free_port()}/x") == "NETWORK_ERROR"


# --- what goes over the wire ------------------------------------------------------------


async def test_identity_encoding_is_requested(upstream: Upstream) -> None:
    url = upstream.add("/data", Blob(DATA))
    async with fetcher(OPEN) as f:
        await get(f, url)
        await get(f, url, [("accept-encoding", "gzip")])
    first, second = upstream.requests_for("/data")
    assert [v for k, v in first.headers if k == "accept-encoding"] == ["identity"]
    assert first.header("user-agent") == "slipstream"
    assert [v for k, v in second.headers if k == "accept-encoding"] == ["gzip"]


async def test_body_bytes_are_not_decoded(upstream: Upstream) -> None:
    compressed = gzip.compress(DATA)
    headers = [("Content-Encoding", "gzip")]
    url = upstream.add("/data.gz", Blob(compressed, extra_headers=headers))
    async with fetcher(OPEN) as f, f.stream(url) as fetched:
        assert fetched.headers["content-encoding"] == "gzip"
        assert await body(fetched) == compressed


async def test_environment_proxies_are_ignored(
    upstream: Upstream, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = Upstream()
    await nursery.start(proxy.run)
    proxy_url = f"http://127.0.0.1:{proxy.port}"
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.setenv(name, proxy_url)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    url = upstream.add("/data", Blob(DATA))
    async with fetcher(OPEN) as f:
        assert await get(f, url) == (200, DATA)
    assert proxy.connections == 0
    (request,) = upstream.requests_for("/data")
    assert request.target == "/data"  # origin form: not a proxy request


# --- timeouts ----------------------------------------------------------------------------


async def test_slow_head_is_a_download_timeout(upstream: Upstream) -> None:
    url = upstream.add("/slow", Blob(DATA, delay_head=5))
    started = trio.current_time()
    async with fetcher(OPEN, read_timeout=0.3) as f:
        assert await fetch_error(f, url) == "DOWNLOAD_TIMEOUT"
    assert trio.current_time() - started < 3


async def test_stalled_body_is_a_download_timeout(upstream: Upstream) -> None:
    url = upstream.add("/stall", Blob(DATA, chunk=len(DATA) // 2, delay_per_chunk=5))
    async with fetcher(OPEN, read_timeout=0.3) as f, f.stream(url) as fetched:
        assert fetched.status == 200
        with pytest.raises(FetchError) as caught:
            await body(fetched)
    assert caught.value.key == "DOWNLOAD_TIMEOUT"


async def test_cut_body_is_a_network_error(upstream: Upstream) -> None:
    url = upstream.add("/cut", Blob(DATA, drop_after=1000))
    async with fetcher(OPEN) as f, f.stream(url) as fetched:
        with pytest.raises(FetchError) as caught:
            await body(fetched)
    assert caught.value.key == "NETWORK_ERROR"


# --- preflight ---------------------------------------------------------------------------


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


# --- URLs the policy accepts but httpx cannot parse ---------------------------------------


@pytest.mark.parametrize("host", ["999.1.1.1", "0177.0.0.1", "1.2.3.04"])
async def test_url_httpx_rejects_is_an_invalid_url_not_a_crash(host: str) -> None:
    """Dotted-quad look-alikes that ``parse_target`` accepts (getaddrinfo may read them
    as octal or fail) but ``httpx.URL`` refuses must surface as a FetchError, not as a
    stray ``httpx.InvalidURL`` (which a job records as INTERNAL_ERROR)."""
    net = FakeNet()
    async with fetcher(OPEN, net) as f:
        assert await fetch_error(f, f"http://{host}/x") == "INVALID_URL"
    assert net.dialed == []
