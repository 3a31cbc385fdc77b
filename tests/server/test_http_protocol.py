"""The HTTP/1.1 layer over real loopback sockets: keep-alive, pipelining, HEAD, limits."""

from __future__ import annotations

import json

import pytest
import trio

from slipstream.errors import SlipstreamError
from slipstream.server import App
from slipstream.storage import OpenFile, Storage
from tests.helpers.raw_http import RawClient, RawResponse, exchange, get
from tests.helpers.server import TOKEN, Served, StartServer, download_target, wait_for


def assert_json_error(response: RawResponse, status: int) -> str:
    """The reply is exactly one ``{"error": "..."}`` JSON body with ``status``."""
    assert response.status == status, response
    assert response.header("content-type") == "application/json"
    payload = response.json()
    assert isinstance(payload, dict) and list(payload) == ["error"], payload
    message = payload["error"]
    assert isinstance(message, str) and message
    assert "Traceback" not in message and 'File "' not in message
    return message


# --- basic routes --------------------------------------------------------------------


async def test_healthz(raw_client: RawClient) -> None:
    await raw_client.send(get("/healthz"))
    response = await raw_client.read_response()
    assert response.status == 200
    assert response.header("content-type") == "application/json"
    assert response.json() == {"status": "ok"}
    assert response.header("content-length") == str(len(response.body))


async def test_healthz_over_httpx(served: Served) -> None:
    async with served.client() as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_head_healthz_has_get_headers_and_no_body(raw_client: RawClient) -> None:
    await raw_client.send(get("/healthz"))
    full = await raw_client.read_response("GET")
    await raw_client.send(get("/healthz", method="HEAD"))
    head = await raw_client.read_response("HEAD")
    assert head.status == 200
    assert head.body == b""
    assert head.header("content-length") == full.header("content-length") == str(len(full.body))
    assert head.header("content-type") == full.header("content-type")


async def test_head_download_matches_get_without_body(raw_client: RawClient) -> None:
    target = download_target("random.bin")
    await raw_client.send(get(target, method="HEAD"))
    head = await raw_client.read_response("HEAD")
    await raw_client.send(get(target))
    full = await raw_client.read_response("GET")
    assert head.status == full.status == 200
    assert head.body == b""
    assert len(full.body) == int(full.header("content-length") or -1)

    def comparable(r: RawResponse) -> list[tuple[str, str]]:
        return sorted((k, v) for k, v in r.headers if k != "date")

    assert comparable(head) == comparable(full)


async def test_unknown_path_is_404_json(raw_client: RawClient) -> None:
    await raw_client.send(get("/no/such/route"))
    assert_json_error(await raw_client.read_response(), 404)
    # a routing error keeps the connection usable
    await raw_client.send(get("/healthz"))
    assert (await raw_client.read_response()).status == 200


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
async def test_method_not_allowed_is_405_json(served: Served, method: str) -> None:
    client = await served.raw()
    body = b"x=1" if method in ("POST", "PUT", "PATCH") else b""
    head = get("/healthz", f"Content-Length: {len(body)}", method=method)
    await client.send(head + body)
    assert_json_error(await client.read_response(method), 405)
    await client.send(get(download_target("small.txt"), method=method))
    assert_json_error(await client.read_response(method), 405)
    await client.aclose()


# --- keep-alive and pipelining ---------------------------------------------------------


async def test_keep_alive_serves_sequential_requests_on_one_socket(
    raw_client: RawClient, served: Served
) -> None:
    for _ in range(3):
        await raw_client.send(get(download_target("small.txt")))
        response = await raw_client.read_response()
        assert response.status == 200
        assert response.body == served.files["small.txt"]
        assert response.header("connection") is None
        await trio.sleep(0.2)  # well below idle_timeout
    await raw_client.send(get("/healthz"))
    assert (await raw_client.read_response()).json() == {"status": "ok"}
    assert not raw_client.closed_by_peer


async def test_pipelined_requests_are_answered_in_order(
    raw_client: RawClient, served: Served
) -> None:
    requests = [
        ("GET", get("/healthz")),
        ("HEAD", get(download_target("small.txt"), method="HEAD")),
        ("GET", get(download_target("random.bin"), "Range: bytes=10-19")),
        ("GET", get(download_target("nope.txt"))),
        ("POST", get("/healthz", "Content-Length: 4", method="POST") + b"abcd"),
        ("GET", get(download_target("medium.bin"))),
        ("GET", get("/healthz", "Connection: close")),
    ]
    await raw_client.send(b"".join(data for _, data in requests))
    replies = [await raw_client.read_response(method) for method, _ in requests]
    assert [r.status for r in replies] == [200, 200, 206, 404, 405, 200, 200]
    assert replies[0].json() == {"status": "ok"}
    assert replies[1].body == b""
    assert replies[1].header("content-length") == str(len(served.files["small.txt"]))
    assert replies[2].body == served.files["random.bin"][10:20]
    assert replies[3].json() == {"error": "file not found at nope.txt"}
    assert replies[5].body == served.files["medium.bin"]
    assert replies[6].header("connection") == "close"
    assert await raw_client.is_closed(timeout=2)


async def test_fast_path_and_h11_requests_interleave_on_one_socket(
    raw_client: RawClient, served: Served
) -> None:
    """Heads the fast path takes and heads it hands to h11 (chunked body, bare LF,
    absolute-form target, obs-fold) alternate in one pipeline, answered in order: the
    bytes h11 does not read come back to the fast path for the next request."""
    small = served.files["small.txt"]
    target = download_target("small.txt").encode()
    requests = [
        ("GET", get("/healthz")),
        (
            "POST",
            b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n",
        ),
        ("GET", get(download_target("small.txt"))),
        (
            "GET",
            b"GET "
            + target
            + b" HTTP/1.1\nHost: x\nAuthorization: Bearer "
            + TOKEN.encode()
            + b"\n\n",
        ),
        ("GET", b"GET http://x/healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("POST", get("/healthz", "Content-Length: 3", method="POST") + b"xyz"),
        ("GET", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n"),
        ("GET", get("/healthz")),
    ]
    await raw_client.send(b"".join(data for _, data in requests))
    replies = [await raw_client.read_response(method) for method, _ in requests]
    assert [r.status for r in replies] == [200, 405, 200, 200, 200, 405, 200, 200]
    assert replies[2].body == small
    assert replies[3].body == small
    assert replies[7].json() == {"status": "ok"}
    assert not raw_client.closed_by_peer


async def test_http_1_0_and_connection_close_end_the_connection_on_the_fast_path(
    start_server: StartServer,
) -> None:
    served = await start_server()
    for head in (
        b"GET /healthz HTTP/1.0\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close\r\n\r\n",
    ):
        client = await served.raw()
        await client.send(head + get("/healthz"))
        response = await client.read_response()
        assert response.status == 200
        assert response.header("connection") == "close"
        assert await client.is_closed(timeout=2)  # the second request is not answered
        await client.aclose()


async def test_pipelined_requests_split_at_odd_byte_boundaries(
    raw_client: RawClient, served: Served
) -> None:
    stream = get(download_target("small.txt")) * 3 + get("/healthz")
    for i in range(0, len(stream), 7):
        await raw_client.send(stream[i : i + 7])
        await trio.sleep(0)
    for _ in range(3):
        assert (await raw_client.read_response()).body == served.files["small.txt"]
    assert (await raw_client.read_response()).json() == {"status": "ok"}


async def test_chunked_request_body_is_consumed_and_connection_kept(
    raw_client: RawClient,
) -> None:
    await raw_client.send(
        get("/healthz", "Transfer-Encoding: chunked") + b"5\r\nhello\r\n0\r\n\r\n" + get("/healthz")
    )
    assert (await raw_client.read_response()).status == 200
    assert (await raw_client.read_response()).status == 200


async def test_http_1_0_gets_a_reply_then_close(served: Served) -> None:
    out = await exchange(served.port, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 ")
    assert out.endswith(b'{"status":"ok"}')


async def test_connection_close_request_closes_after_reply(raw_client: RawClient) -> None:
    await raw_client.send(get("/healthz", "Connection: close"))
    response = await raw_client.read_response()
    assert response.status == 200
    assert response.header("connection") == "close"
    assert await raw_client.is_closed(timeout=2)


# --- limits ----------------------------------------------------------------------------


async def test_head_over_64k_is_431_and_close(raw_client: RawClient) -> None:
    await raw_client.send(get("/healthz", "X-Big: " + "a" * (65 * 1024)))
    assert_json_error(await raw_client.read_response(), 431)
    assert await raw_client.is_closed(timeout=2)


async def test_head_over_64k_in_many_fields_is_431(raw_client: RawClient) -> None:
    fields = [f"X-F{i}: {'b' * 1000}" for i in range(70)]
    await raw_client.send(get("/healthz", *fields))
    assert_json_error(await raw_client.read_response(), 431)


async def test_request_target_over_64k_is_431(raw_client: RawClient) -> None:
    await raw_client.send(get("/healthz?q=" + "c" * (70 * 1024)))
    assert_json_error(await raw_client.read_response(), 431)


async def test_head_over_64k_that_never_ends_is_431(raw_client: RawClient) -> None:
    """A head that keeps growing without a blank line is cut off, not buffered forever."""
    await raw_client.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
    with trio.move_on_after(3):
        for _ in range(40):
            try:
                await raw_client.send(b"d" * 4096)
            except trio.BrokenResourceError:
                break
    data = await raw_client.read_until_eof(timeout=3)
    assert data.startswith(b"HTTP/1.1 431 ")
    assert data.endswith(b"}")


async def test_head_just_under_64k_is_served(raw_client: RawClient) -> None:
    await raw_client.send(get("/healthz", "X-Big: " + "a" * (60 * 1024)))
    assert (await raw_client.read_response()).status == 200


async def test_more_than_100_header_fields_is_431(raw_client: RawClient) -> None:
    await raw_client.send(get("/healthz", *[f"X-H{i}: v" for i in range(100)]))
    assert_json_error(await raw_client.read_response(), 431)


async def test_exactly_100_header_fields_is_served(raw_client: RawClient) -> None:
    await raw_client.send(get("/healthz", *[f"X-H{i}: v" for i in range(99)]))  # + Host
    assert (await raw_client.read_response()).status == 200


async def test_head_limit_is_configurable(start_server: StartServer) -> None:
    served = await start_server(limits={"max_head_bytes": 2048, "max_header_count": 10})
    small = await exchange(served.port, get("/healthz", "X-Big: " + "a" * 3000))
    assert small.startswith(b"HTTP/1.1 431 ")
    many = await exchange(served.port, get("/healthz", *[f"X-H{i}: v" for i in range(10)]))
    assert many.startswith(b"HTTP/1.1 431 ")
    client = await served.raw()
    await client.send(get("/healthz", "X-Ok: " + "a" * 1000))
    assert (await client.read_response()).status == 200
    await client.aclose()


async def test_request_body_over_limit_is_413_and_close(raw_client: RawClient) -> None:
    await raw_client.send(get("/healthz", "Content-Length: 5000000", method="POST"))
    assert_json_error(await raw_client.read_response("POST"), 413)
    assert await raw_client.is_closed(timeout=2)


async def test_idle_keep_alive_connection_closes_after_idle_timeout(
    start_server: StartServer,
) -> None:
    served = await start_server(limits={"idle_timeout": 0.5})
    client = await served.raw()
    await client.send(get("/healthz"))
    assert (await client.read_response()).status == 200
    started = trio.current_time()
    assert await client.is_closed(timeout=5)
    waited = trio.current_time() - started
    assert 0.4 <= waited <= 2.0, waited
    await client.aclose()


async def test_idle_timeout_is_not_the_head_timeout(start_server: StartServer) -> None:
    served = await start_server(limits={"head_timeout": 0.2, "idle_timeout": 1.2})
    client = await served.raw()
    await client.send(get("/healthz"))
    assert (await client.read_response()).status == 200
    await trio.sleep(0.4)  # twice the head_timeout: still open while idle
    await client.send(get("/healthz"))
    assert (await client.read_response()).status == 200
    await client.aclose()


async def test_silent_new_connection_closes_after_head_timeout(start_server: StartServer) -> None:
    served = await start_server(limits={"head_timeout": 0.5})
    client = await served.raw()
    started = trio.current_time()
    data = await client.read_until_eof(timeout=3)
    waited = trio.current_time() - started
    assert data == b""  # nothing was asked, so nothing is answered
    assert 0.4 <= waited <= 2.0, waited
    await client.aclose()


async def test_partial_head_times_out_with_408(start_server: StartServer) -> None:
    served = await start_server(limits={"head_timeout": 0.5})
    client = await served.raw()
    await client.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    assert_json_error(await client.read_response(), 408)
    assert await client.is_closed(timeout=2)
    await client.aclose()


async def test_connection_cap_refuses_with_503(start_server: StartServer) -> None:
    served = await start_server(limits={"max_connections": 2, "head_timeout": 5})
    first, second = await served.raw(), await served.raw()
    assert await wait_for(lambda: served.server.connections == 2)
    third = await served.raw()
    assert_json_error(await third.read_response(), 503)
    assert await third.is_closed(timeout=2)
    await third.aclose()
    # the two admitted connections still work; once one leaves, a new one is admitted
    await first.send(get("/healthz"))
    assert (await first.read_response()).status == 200
    await second.aclose()
    assert await wait_for(lambda: served.server.connections == 1)
    fourth = await served.raw()
    await fourth.send(get("/healthz"))
    assert (await fourth.read_response()).status == 200
    for client in (first, fourth):
        await client.aclose()


async def test_client_that_stops_reading_is_dropped_after_send_timeout(
    start_server: StartServer,
) -> None:
    served = await start_server(
        limits={"send_timeout": 0.5, "idle_timeout": 30}, max_download_size=0
    )
    big = served.root / "huge.bin"
    with big.open("wb") as handle:
        handle.truncate(64 * 1024 * 1024)  # larger than every socket buffer on the path
    client = await served.raw()
    await client.send(get(download_target("huge.bin")))
    assert await wait_for(lambda: served.server.connections == 1)
    started = trio.current_time()
    # never read: the server must give up on us and free the connection slot
    assert await wait_for(lambda: served.server.connections == 0, timeout=5)
    assert trio.current_time() - started < 3.0
    data = bytearray()
    with trio.move_on_after(10):
        while chunk := await client.receive(1 << 20):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 "), bytes(data[:200])
    assert client.closed_by_peer
    assert len(data) < 64 * 1024 * 1024  # cut off mid-body
    await client.aclose()


# --- no traceback ever reaches a client ----------------------------------------------


class ExplodingStorage(Storage):
    """A layer whose every call fails with an undocumented exception."""

    name = "Boom"

    def open(self, user_path: str) -> OpenFile:
        raise RuntimeError(f"secret internal detail /srv/private/{user_path}")

    def list_dir(self, user_path: str) -> list[object]:  # type: ignore[override]
        raise RuntimeError("secret internal detail")


class DocumentedErrorStorage(ExplodingStorage):
    name = "Documented"

    def open(self, user_path: str) -> OpenFile:
        raise SlipstreamError()


async def test_unexpected_exception_is_500_without_details(start_server: StartServer) -> None:
    app = App(filesystems={"Boom": ExplodingStorage(), "Documented": DocumentedErrorStorage()})

    served = await start_server(app=app)
    client = await served.raw()
    await client.send(get(download_target("small.txt", fstype="Boom")))
    response = await client.read_response()
    message = assert_json_error(response, 500)
    assert "secret" not in message and "/srv" not in message and "RuntimeError" not in message
    assert b"secret" not in response.body
    # the connection survives an application error
    await client.send(get(download_target("small.txt", fstype="Documented")))
    assert_json_error(await client.read_response(), 500)
    await client.send(get(download_target("small.txt")))
    assert (await client.read_response()).status == 200
    await client.aclose()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /healthz\r\n\r\n",
        b"GET /healthz HTTP/1.1 extra\r\nHost: x\r\n\r\n",
        b"GET  /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET\t/healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        b"G(T /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n: empty-name\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
        b"GET /\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /%ff HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/download?filepath=%c0%ae%c0%ae/x&token=test-token HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)) + b"\r\n\r\n",
    ],
)
async def test_malformed_request_is_400_json_and_close(
    served: Served, request_bytes: bytes
) -> None:
    out = await exchange(served.port, request_bytes + get("/healthz"))
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), out
    assert b"connection: close" in head.lower()
    payload = json.loads(body)
    assert list(payload) == ["error"]
    assert b"Traceback" not in out
    assert out.count(b"HTTP/1.1 ") == 1  # the request after it was never served


async def test_valid_token_in_header_of_pipelined_request_is_not_leaked(served: Served) -> None:
    """Errors never echo request headers (tokens) back."""
    out = await exchange(
        served.port,
        get(download_target("missing.txt", token=None), f"Authorization: Bearer {TOKEN}")
        + b"BROKEN\r\n\r\n",
    )
    assert TOKEN.encode() not in out
    assert out.count(b"HTTP/1.1 404 ") == 1 and out.count(b"HTTP/1.1 400 ") == 1


async def test_a_reset_between_requests_ends_only_that_connection(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that resets its connection after a reply (the next read, taken without
    waiting, fails with ECONNRESET) or in the middle of a head leaves no error behind,
    and the server goes on serving."""
    for partial in (b"", b"GET /healthz HTTP/1.1\r\nHo"):
        client = await served.raw()
        await client.send(get("/healthz"))
        assert (await client.read_response()).status == 200
        if partial:
            await client.send(partial)
        await trio.sleep(0.05)
        client.abort()
        await trio.sleep(0.1)
    assert [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")] == []
    again = await served.raw()
    await again.send(get("/healthz"))
    assert (await again.read_response()).json() == {"status": "ok"}
    await again.aclose()
