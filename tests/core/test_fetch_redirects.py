"""The guarded fetcher (slipstream.fetch) following redirects: at most five by default,
every hop checked against the policy and the caller's ``check_url``, credentials dropped
across origins.

A :class:`FakeNet` stands in for DNS and for the network beyond loopback; any other
address is dialled for real, so if the policy ever let ``127.0.0.1`` through, the
``target`` upstream would record the connection.
"""

from __future__ import annotations

import pytest

from slipstream.fetch import FetchError
from slipstream.netpolicy import NetworkPolicy, Target, UrlRejected
from tests.helpers.fakenet import PUBLIC, FakeNet
from tests.helpers.fetch import DATA, OPEN, body, fetch_error, fetcher, get
from tests.helpers.upstream import Blob, RecordedRequest, Redirect, Upstream

pytestmark = pytest.mark.usefixtures("fetch_engine")


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
