"""The guarded fetcher (slipstream.fetch) resolving and dialling: one lookup per connection,
only checked addresses dialled, DNS rebinding caught at connect.

A :class:`FakeNet` stands in for DNS and for the network beyond loopback: invented
``.example`` names resolve from a table (answers may change between lookups, as a
rebinding attacker's DNS would), and the public-looking address :data:`PUBLIC` is dialled
to a loopback upstream.  Any other address is dialled for real, so if the policy ever
let ``127.0.0.1`` through, the ``target`` upstream would record the connection.
"""

from __future__ import annotations

import pytest

from slipstream.fetch import FetchError
from slipstream.netpolicy import NetworkPolicy
from tests.helpers.fakenet import PUBLIC, FakeNet
from tests.helpers.fetch import DATA, OPEN, fetch_error, fetcher, free_port, get
from tests.helpers.upstream import Blob, Upstream

pytestmark = pytest.mark.usefixtures("fetch_engine")


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
