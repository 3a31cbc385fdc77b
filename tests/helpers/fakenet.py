"""A fake network for fetcher tests: invented names and a public-looking address.

:class:`FakeNet` is a resolver + dialer pair for :class:`slipstream.fetch.Fetcher`
(or ``App(resolver=..., dialer=...)``): ``.example`` names resolve to whatever
a test says, :data:`PUBLIC` is dialled to a loopback upstream, and every lookup and dial
is recorded, so a policy leak shows up as a connection.
"""

from __future__ import annotations

import ipaddress

import httpcore

from slipstream.fetch import system_resolver

PUBLIC = "93.184.215.14"
"""A public-looking address; :class:`FakeNet` dials it to a loopback upstream."""


class FakeNet:
    """Resolver + dialer for a :class:`Fetcher` that records what it was asked."""

    def __init__(self, routes: dict[str, int] | None = None) -> None:
        self.routes = dict(routes or {})
        """Address -> loopback port it is dialled to."""
        self.names: dict[str, list[list[str]]] = {}
        """Name -> successive answers (the last one repeats)."""
        self.lookups: list[str] = []
        self.dialed: list[tuple[str, int]] = []

    def name(self, host: str, *answers: list[str]) -> None:
        """Make ``host`` resolve to ``answers[0]``, then ``answers[1]``, ..."""
        self.names[host] = list(answers)

    async def resolve(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if host in self.names:
            answers = self.names[host]
            seen = self.lookups.count(host) - 1
            return list(answers[min(seen, len(answers) - 1)])
        if host.endswith(".example"):
            raise OSError(f"no such name: {host}")
        return await system_resolver(host, port)

    async def dial(
        self, address: str, port: int, timeout: float | None
    ) -> httpcore.AsyncNetworkStream:
        self.dialed.append((address, port))
        if address in self.routes:
            address, port = "127.0.0.1", self.routes[address]
        elif not ipaddress.ip_address(address).is_loopback:
            raise httpcore.ConnectError(f"test network: {address} is unreachable")
        return await httpcore.TrioBackend().connect_tcp(address, port, timeout)
