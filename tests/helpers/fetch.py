"""Plain helpers of the fetcher tests: a :class:`Fetcher` on a fake network or the real
one, reading a body, the key of a :class:`FetchError`, a port nothing listens on."""

from __future__ import annotations

import random
import socket
from collections.abc import Sequence

import pytest

from slipstream.fetch import Fetched, Fetcher, FetchError
from slipstream.netpolicy import NetworkPolicy
from tests.helpers.fakenet import FakeNet

DATA = random.Random(11).randbytes(200_000)
OPEN = NetworkPolicy(allow_private_networks=True)
ENGINE = {"pump": True}
"""Which path :func:`fetcher` builds: the body pump (plaintext GETs) or httpx for all
(set per test by the ``fetch_engine`` fixture)."""


def fetcher(
    policy: NetworkPolicy = OPEN,
    net: FakeNet | None = None,
    *,
    max_redirects: int = 5,
    read_timeout: float = 10.0,
) -> Fetcher:
    """A Fetcher using ``net`` (or the system resolver and real connections)."""
    pump = ENGINE["pump"]
    if net is None:
        return Fetcher(policy, max_redirects=max_redirects, read_timeout=read_timeout, pump=pump)
    return Fetcher(
        policy,
        resolver=net.resolve,
        dialer=net.dial,
        max_redirects=max_redirects,
        read_timeout=read_timeout,
        pump=pump,
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


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
