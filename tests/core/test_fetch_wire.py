"""The guarded fetcher (slipstream.fetch) on the wire, against real loopback upstreams: the
encoding it asks for, the body bytes as sent, environment proxies ignored, timeouts and a
cut body.
"""

from __future__ import annotations

import gzip

import pytest
import trio

from slipstream.fetch import FetchError
from tests.helpers.fetch import DATA, OPEN, body, fetch_error, fetcher, get
from tests.helpers.upstream import Blob, Upstream

pytestmark = pytest.mark.usefixtures("fetch_engine")


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
