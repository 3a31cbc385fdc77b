"""The loopback test upstream (tests/helpers/upstream.py), driven by httpx and raw sockets."""

from __future__ import annotations

import hashlib
import os
import random
from email.utils import formatdate
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.helpers.upstream import (
    FIXED_LAST_MODIFIED,
    Blob,
    Handler,
    RecordedRequest,
    Redirect,
    Resource,
    Status,
    Upstream,
    choose_range,
)

DATA = random.Random(5).randbytes(1000)


def client(**kwargs: Any) -> httpx.AsyncClient:
    """An httpx client (``verify=False`` skips building a TLS context we never use)."""
    return httpx.AsyncClient(timeout=5, verify=False, **kwargs)


async def raw_exchange(port: int, request: bytes, *, timeout: float = 5.0) -> bytes:
    """Send ``request`` on a fresh connection; every byte until the server closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    out = bytearray()
    try:
        await stream.send_all(request)
        with trio.fail_after(timeout):
            while data := await stream.receive_some(65536):
                out += data
    finally:
        await stream.aclose()
    return bytes(out)


async def read_partial(response: httpx.Response) -> tuple[bytes, Exception | None]:
    """The body bytes a streamed response delivered, and the error that ended it (if any)."""
    body = bytearray()
    try:
        async for piece in response.aiter_raw():
            body += piece
    except httpx.TransportError as exc:
        return bytes(body), exc
    return bytes(body), None


async def test_full_get_and_recorded_request(upstream: Upstream) -> None:
    url = upstream.add("/obj.bin", Blob(DATA, content_disposition='attachment; filename="o.bin"'))
    async with client() as http:
        response = await http.get(url, headers={"X-Probe": "yes"})
    assert response.status_code == 200
    assert response.content == DATA
    assert response.headers["content-length"] == "1000"
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["last-modified"] == FIXED_LAST_MODIFIED
    assert response.headers["content-disposition"] == 'attachment; filename="o.bin"'
    etag = response.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 2
    assert Blob(DATA).current_etag() == etag
    assert Blob(DATA[:-1]).current_etag() != etag
    [seen] = upstream.requests
    assert (seen.method, seen.target, seen.path) == ("GET", "/obj.bin", "/obj.bin")
    assert seen.header("X-PROBE") == "yes"
    assert ("x-probe", "yes") in seen.headers
    assert all(name == name.lower() for name, _ in seen.headers)
    assert seen.header("range") is None
    assert 0 < seen.client_port < 65536
    assert upstream.connections == 1


@pytest.mark.parametrize(
    ("range_header", "status", "expected"),
    [
        ("bytes=0-0", 206, (0, 1)),
        ("bytes=10-19", 206, (10, 20)),
        ("bytes=990-", 206, (990, 1000)),
        ("bytes=-5", 206, (995, 1000)),
        ("bytes=-5000", 206, (0, 1000)),
        ("bytes=500-99999", 206, (500, 1000)),
        ("bytes=999-999", 206, (999, 1000)),
        ("bytes=0-1,5-6", 200, None),
        ("items=0-1", 200, None),
        ("bytes=5-2", 200, None),
        ("bytes=x-3", 200, None),
        ("bytes=-", 200, None),
        ("bytes=1000-", 416, None),
        ("bytes=1000-2000", 416, None),
        ("bytes=-0", 416, None),
        ("bytes=" + "9" * 500 + "-", 416, None),
    ],
)
async def test_ranges(
    upstream: Upstream, range_header: str, status: int, expected: tuple[int, int] | None
) -> None:
    url = upstream.add("/r", Blob(DATA))
    async with client() as http:
        response = await http.get(url, headers={"Range": range_header})
    assert response.status_code == status
    if status == 206:
        assert expected is not None
        start, stop = expected
        assert response.content == DATA[start:stop]
        assert response.headers["content-range"] == f"bytes {start}-{stop - 1}/1000"
    elif status == 200:
        assert response.content == DATA
        assert "content-range" not in response.headers
    else:
        assert response.content == b""
        assert response.headers["content-range"] == "bytes */1000"


async def test_random_ranges_on_one_keepalive_connection(upstream: Upstream) -> None:
    url = upstream.add("/r", Blob(DATA, chunk=97))
    rng = random.Random(11)
    async with client() as http:
        for _ in range(40):
            start = rng.randrange(len(DATA))
            last = rng.randrange(start, len(DATA) + 50)
            response = await http.get(url, headers={"Range": f"bytes={start}-{last}"})
            assert response.status_code == 206
            assert response.content == DATA[start : last + 1]
    assert upstream.connections == 1
    assert len({r.client_port for r in upstream.requests}) == 1
    assert len(upstream.requests) == 40


def test_choose_range_empty_object() -> None:
    assert choose_range("bytes=0-", None, 0, None, None) == "unsatisfiable"
    assert choose_range("bytes=-3", None, 0, None, None) == "unsatisfiable"
    assert choose_range(None, None, 0, None, None) is None


async def test_if_range(upstream: Upstream) -> None:
    url = upstream.add("/r", Blob(DATA))
    weak_url = upstream.add("/weak", Blob(DATA, etag='W/"v1"'))
    etag = Blob(DATA).current_etag()
    assert etag is not None
    cases = [
        (url, etag, 206),
        (url, '"something-else"', 200),
        (url, "W/" + etag, 200),
        (url, FIXED_LAST_MODIFIED, 206),
        (url, "Thu, 22 Oct 2015 07:28:00 GMT", 200),
        (weak_url, 'W/"v1"', 200),  # a weak validator never matches If-Range
    ]
    async with client() as http:
        for target, if_range, status in cases:
            response = await http.get(target, headers={"Range": "bytes=3-7", "If-Range": if_range})
            assert response.status_code == status, if_range
            assert response.content == (DATA[3:8] if status == 206 else DATA)


async def test_ranges_disabled_and_validators_omitted(upstream: Upstream) -> None:
    url = upstream.add("/plain", Blob(DATA, ranges=False, etag=None, last_modified=None))
    async with client() as http:
        response = await http.get(url, headers={"Range": "bytes=0-9"})
    assert response.status_code == 200
    assert response.content == DATA
    for name in ("accept-ranges", "content-range", "etag", "last-modified"):
        assert name not in response.headers


async def test_redirects_and_statuses(upstream: Upstream) -> None:
    target = upstream.add("/final", Blob(b"landed"))
    upstream.add("/hop1", Redirect(target, status=301))
    upstream.add("/hop2", Redirect("/hop1"))  # relative
    upstream.add("/teapot", Status(418, b"short and stout", [("X-Kind", "pot")]))
    upstream.add("/empty", Status(204))
    async with client() as http:
        direct = await http.get(upstream.url("/hop2"))
        assert direct.status_code == 302
        assert direct.headers["location"] == "/hop1"
        followed = await http.get(upstream.url("/hop2"), follow_redirects=True)
        assert followed.status_code == 200
        assert followed.content == b"landed"
        assert [r.status_code for r in followed.history] == [302, 301]
        missing = await http.get(upstream.url("/nope"))
        assert missing.status_code == 404
        teapot = await http.get(upstream.url("/teapot"))
        assert (teapot.status_code, teapot.content) == (418, b"short and stout")
        assert teapot.headers["x-kind"] == "pot"
        empty = await http.get(upstream.url("/empty"))
        assert (empty.status_code, empty.content) == (204, b"")
    assert [r.path for r in upstream.requests] == [
        "/hop2",
        "/hop2",
        "/hop1",
        "/final",
        "/nope",
        "/teapot",
        "/empty",
    ]
    upstream.remove("/final")
    async with client() as http:
        assert (await http.get(target)).status_code == 404


async def test_drop_after_truncates_then_recovers(upstream: Upstream) -> None:
    blob = Blob(DATA, chunk=64, drop_after=300, drop_count=1)
    url = upstream.add("/flaky", blob)
    async with client() as http:
        async with http.stream("GET", url) as response:
            assert response.status_code == 200
            body, error = await read_partial(response)
        assert body == DATA[:300]
        assert isinstance(error, httpx.RemoteProtocolError)
        assert blob.drops_done == 1
        again = await http.get(url)  # drop_count=1: the second reply is whole
        assert again.content == DATA
        # A resumed range shorter than drop_after is never cut, whatever drop_count says.
        blob.drop_count = None
        tail = await http.get(url, headers={"Range": "bytes=800-"})
        assert tail.content == DATA[800:]
    assert upstream.connections == 2  # the cut connection could not be reused


async def test_drop_with_reset_and_at_zero(upstream: Upstream) -> None:
    url = upstream.add("/rst", Blob(DATA, drop_after=100, drop_with_reset=True))
    zero = upstream.add("/zero", Blob(DATA, drop_after=0))
    async with client() as http:
        for target, expected in ((url, DATA[:100]), (zero, b"")):
            async with http.stream("GET", target) as response:
                body, error = await read_partial(response)
            assert error is not None
            assert DATA.startswith(body) and len(body) <= len(expected)
    raw = await raw_exchange(upstream.port or 0, b"GET /zero HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"Content-Length: 1000" in head
    assert body == b""


@pytest.mark.parametrize("lie", [1500, 10])
async def test_lie_length(upstream: Upstream, lie: int) -> None:
    upstream.add("/liar", Blob(DATA, lie_length=lie))
    raw = await raw_exchange(upstream.port or 0, b"GET /liar HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert f"Content-Length: {lie}".encode() in head
    assert body == DATA  # the real body, then the connection closes
    if lie > len(DATA):
        async with client() as http, http.stream("GET", upstream.url("/liar")) as response:
            got, error = await read_partial(response)
        assert got == DATA
        assert isinstance(error, httpx.RemoteProtocolError)


async def test_slow_head_and_body(upstream: Upstream) -> None:
    url = upstream.add("/slow", Blob(DATA[:40], chunk=10, delay_per_chunk=0.05, delay_head=0.1))
    async with client() as http:
        began = trio.current_time()
        async with http.stream("GET", url) as response:
            head_at = trio.current_time() - began
            arrivals = []
            body = bytearray()
            async for piece in response.aiter_raw():
                arrivals.append(trio.current_time() - began)
                body += piece
    assert head_at >= 0.1
    assert arrivals[-1] >= 0.1 + 4 * 0.05 - 0.01
    assert len(arrivals) >= 2  # the body trickled in pieces
    assert body == DATA[:40]


async def test_head_requests(upstream: Upstream) -> None:
    url = upstream.add("/h", Blob(DATA, content_type="text/x-test"))
    async with client() as http:
        full = await http.head(url)
        ranged = await http.head(url, headers={"Range": "bytes=100-199"})
        missing = await http.head(upstream.url("/missing"))
        after = await http.get(url)  # keep-alive survives bodiless replies
    assert (full.status_code, full.content) == (200, b"")
    assert full.headers["content-length"] == "1000"
    assert full.headers["content-type"] == "text/x-test"
    assert ranged.status_code == 206
    assert ranged.headers["content-length"] == "100"
    assert ranged.headers["content-range"] == "bytes 100-199/1000"
    assert (missing.status_code, missing.content) == (404, b"")
    assert after.content == DATA
    assert [r.method for r in upstream.requests] == ["HEAD", "HEAD", "HEAD", "GET"]
    assert upstream.connections == 1


async def test_connection_counting_and_reset(upstream: Upstream) -> None:
    url = upstream.add("/c", Blob(b"x"))
    async with client() as first, client() as second:
        await first.get(url)
        await first.get(url)
        await second.get(url)
    assert upstream.connections == 2
    ports = [r.client_port for r in upstream.requests]
    assert ports[0] == ports[1] != ports[2]
    upstream.reset()
    assert (upstream.connections, upstream.requests) == (0, [])
    async with client() as third:
        await third.get(url)
    assert upstream.connections == 1
    assert len(upstream.requests_for("c")) == 1


async def test_file_backed_blob(upstream: Upstream, tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    data = random.Random(3).randbytes(3 * 1024 * 1024 + 7)
    path.write_bytes(data)
    blob = Blob(path=path, chunk=256 * 1024)
    url = upstream.add("/big", blob)
    async with client() as http:
        full = await http.get(url)
        middle = await http.get(url, headers={"Range": "bytes=1000000-2000000"})
        head = await http.head(url)
    assert hashlib.sha256(full.content).digest() == hashlib.sha256(data).digest()
    assert middle.status_code == 206
    assert middle.content == data[1_000_000:2_000_001]
    assert full.headers["etag"] == middle.headers["etag"] == blob.current_etag()
    mtime = formatdate(os.stat(path).st_mtime, usegmt=True)
    assert full.headers["last-modified"] == mtime
    assert head.headers["content-length"] == str(len(data))
    assert blob.size == len(data) and blob.content() == data
    with pytest.raises(ValueError, match="not both"):
        Blob(b"x", path=path)


async def test_chunked_framing(upstream: Upstream) -> None:
    url = upstream.add("/ch", Blob(DATA, chunked=True, chunk=100))
    cut = upstream.add("/ch-cut", Blob(DATA, chunked=True, chunk=100, drop_after=250))
    async with client() as http:
        response = await http.get(url)
        assert response.content == DATA
        assert "content-length" not in response.headers
        assert response.headers["transfer-encoding"] == "chunked"
        async with http.stream("GET", cut) as broken:
            body, error = await read_partial(broken)
    assert body == DATA[:250]
    assert isinstance(error, httpx.RemoteProtocolError)


async def test_handler_sync_and_async(upstream: Upstream) -> None:
    calls: list[RecordedRequest] = []

    def flaky(request: RecordedRequest) -> Resource:
        calls.append(request)
        return Status(503) if len(calls) == 1 else Blob(b"second time lucky")

    async def slow_echo(request: RecordedRequest) -> Resource:
        await trio.sleep(0.01)
        return Blob(request.method.encode() + b" " + request.target.encode())

    upstream.add("/flaky", Handler(flaky))
    upstream.add("/echo", Handler(slow_echo))
    async with client() as http:
        assert (await http.get(upstream.url("/flaky"))).status_code == 503
        assert (await http.get(upstream.url("/flaky"))).content == b"second time lucky"
        echoed = await http.post(upstream.url("/echo?q=1"), content=b"ignored body" * 1000)
        assert echoed.content == b"POST /echo?q=1"
    assert len(calls) == 2


async def test_query_matching_and_method_not_allowed(upstream: Upstream) -> None:
    upstream.add("/q", Blob(b"plain"))
    upstream.add("/q?v=2", Blob(b"version two"))
    async with client() as http:
        assert (await http.get(upstream.url("/q?v=2"))).content == b"version two"
        assert (await http.get(upstream.url("/q?v=3"))).content == b"plain"
        posted = await http.post(upstream.url("/q"), content=b"a request body")
        assert posted.status_code == 405
        assert posted.headers["allow"] == "GET, HEAD"
        assert (await http.get(upstream.url("/q"))).content == b"plain"
    assert upstream.connections == 1  # the POST body was read and the connection reused


async def test_bad_request_gets_400(upstream: Upstream) -> None:
    raw = await raw_exchange(upstream.port or 0, b"NOT HTTP AT ALL\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400 ")


async def test_idle_timeout_closes_silent_connection() -> None:
    server = Upstream(timeout=0.2)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.run)
        began = trio.current_time()
        assert await raw_exchange(port, b"", timeout=3) == b""
        assert 0.15 <= trio.current_time() - began < 2
        nursery.cancel_scope.cancel()


async def test_cancel_closes_listener_and_connections() -> None:
    server = Upstream()
    server.add("/slow", Blob(DATA, chunk=10, delay_per_chunk=1.0))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.run)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        with trio.fail_after(3):
            assert (await stream.receive_some(65536)).startswith(b"HTTP/1.1 200 ")
        nursery.cancel_scope.cancel()
    with trio.fail_after(3):
        assert await stream.receive_some(65536) == b""  # closed mid-body on cancel
    await stream.aclose()
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", port)


def test_url_requires_running_server() -> None:
    server = Upstream()
    assert server.add("x", Blob(b"")) == "/x"
    with pytest.raises(RuntimeError):
        server.url("/x")
    with pytest.raises(ValueError):
        Blob(b"", status=101)
