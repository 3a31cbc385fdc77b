"""Hostile clients: request smuggling, path traversal, slow-loris, abandoned downloads."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.fds import open_fd_count, settle_fds
from tests.helpers.raw_http import RawClient, exchange, get
from tests.helpers.server import SECRET, TOKEN, Served, StartServer, running_server, wait_for

# --- request smuggling -------------------------------------------------------------------

SMUGGLED = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"

SMUGGLING = {
    "CL.CL different": b"Content-Length: 5\r\nContent-Length: 6\r\n",
    "CL.CL same": b"Content-Length: 5\r\nContent-Length: 5\r\n",
    "CL list": b"Content-Length: 5, 5\r\n",
    "CL list different": b"Content-Length: 5, 6\r\n",
    "CL.TE": b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
    "TE.CL": b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
    "CL.TE identity": b"Content-Length: 5\r\nTransfer-Encoding: identity\r\n",
    "CL lowercase twice": b"content-length: 5\r\nCONTENT-LENGTH: 5\r\n",
    "CL negative": b"Content-Length: -5\r\n",
    "CL plus sign": b"Content-Length: +5\r\n",
    "CL hex": b"Content-Length: 0x5\r\n",
    "CL two numbers": b"Content-Length: 5 5\r\n",
    "CL space before colon": b"Content-Length : 5\r\n",
    "CL folded": b"Content-Length: 5\r\n 6\r\n",
}


@pytest.mark.parametrize("name", list(SMUGGLING))
async def test_smuggling_framing_is_400_and_close(served: Served, name: str) -> None:
    request = b"POST /healthz HTTP/1.1\r\nHost: x\r\n" + SMUGGLING[name] + b"\r\n"
    out = await exchange(served.port, request + b"hello" + SMUGGLED + SMUGGLED)
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), out
    assert b"connection: close" in head.lower()
    assert body.startswith(b'{"error":')
    # nothing after the bad head is ever interpreted as a request
    assert out.count(b"HTTP/1.1") == 1, out


@pytest.mark.parametrize(
    "transfer_encoding",
    [b"xchunked", b"chunked, chunked", b"gzip, chunked", b"chunked\r\nTransfer-Encoding: chunked"],
)
async def test_unsupported_transfer_encoding_is_refused_and_closed(
    served: Served, transfer_encoding: bytes
) -> None:
    request = b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " + transfer_encoding
    out = await exchange(served.port, request + b"\r\n\r\n0\r\n\r\n" + SMUGGLED)
    assert out.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 501 ")), out
    assert out.count(b"HTTP/1.1") == 1, out
    assert out.endswith(b"}")


async def test_bad_chunk_size_is_400_and_close(served: Served) -> None:
    request = b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    out = await exchange(served.port, request + b"zz\r\nhello\r\n0\r\n\r\n" + SMUGGLED)
    assert out.count(b"HTTP/1.1") == 1, out
    assert out.startswith(b"HTTP/1.1 400 ")


async def test_get_with_body_does_not_smuggle_a_second_request(served: Served) -> None:
    """The body of a well-framed request is consumed, never parsed as a request."""
    body = SMUGGLED.replace(b"/healthz", b"/smuggled")
    request = get("/healthz", f"Content-Length: {len(body)}") + body + get("/healthz")
    client = await served.raw()
    await client.send(request)
    first, second = await client.read_response(), await client.read_response()
    assert first.status == second.status == 200
    await client.aclose()


# --- path traversal ------------------------------------------------------------------------

# What the server sees after the query string is decoded once.  ``{abs}`` is replaced by the
# absolute path of the secret file outside the root, ``{base}`` by the directory holding it.
TRAVERSAL: list[str] = [
    "../secret.txt",
    "../../secret.txt",
    "./../secret.txt",
    "subdir/../../secret.txt",
    "subdir/deeper/../../../secret.txt",
    "..",
    "../",
    "{abs}",
    "{base}/secret.txt",
    "//{abs}",
    "/../secret.txt",
    "..\\secret.txt",
    "subdir\\..\\..\\secret.txt",
    "..\\..\\secret.txt",
    "\\\\host\\share\\secret.txt",
    "C:\\secret.txt",
    "C:/secret.txt",
    "%2e%2e/secret.txt",
    "%2e%2e%2fsecret.txt",
    "..%2fsecret.txt",
    "..%5csecret.txt",
    "%2e%2e%5csecret.txt",
    "%252e%252e%252fsecret.txt",
    "%25252e%25252e%25252fsecret.txt",
    "..%252fsecret.txt",
    "%c0%ae%c0%ae/secret.txt",
    "%c0%ae%c0%ae%c0%afsecret.txt",
    "%e0%80%ae%e0%80%ae/secret.txt",
    "..%c0%afsecret.txt",
    "..%c1%9csecret.txt",
    "%uff0e%uff0e/secret.txt",
    "\uff0e\uff0e/secret.txt",
    "\u2024\u2024/secret.txt",
    "..\uff0fsecret.txt",
    "..\uff3csecret.txt",
    "../secret.txt\x00.png",
    "small.txt\x00/../../secret.txt",
    "..\x00/secret.txt",
    "%00../secret.txt",
    "small.txt%00",
    "... /secret.txt",
    ".. /secret.txt",
    ". ./secret.txt",
    "..../secret.txt",
    "escape.txt",
    "escape-rel.txt",
    "escape-dir/secret.txt",
    "./escape-dir/./secret.txt",
    "subdir/../escape.txt",
    ".slipstream/token",
    "./.slipstream//token",
    "subdir/../.slipstream/token",
    "file://{abs}",
    "/proc/self/environ",
    "../../../../../../../../etc/passwd",
    "....//....//secret.txt",
]

# Raw query values, placed in the target byte for byte (no further encoding by us).
RAW_TRAVERSAL: list[bytes] = [
    b"..%2fsecret.txt",
    b"%2e%2e%2fsecret.txt",
    b"%2E%2E/secret.txt",
    b"..%5Csecret.txt",
    b"%252e%252e%252fsecret.txt",
    b"%c0%ae%c0%ae/secret.txt",
    b"%c0%2e%c0%2e/secret.txt",
    b"%e0%80%ae%e0%80%ae%e0%80%afsecret.txt",
    b"..%00/secret.txt",
    b"%2e%2e%00%2fsecret.txt",
    b"..%u2215secret.txt",
    b"%ef%bc%8e%ef%bc%8e/secret.txt",
    b"../secret.txt",
    b"..\\secret.txt",
    b"%2e%2e/%2e%2e/secret.txt",
    b"escape-dir%2fsecret.txt",
    b"%2e%73lipstream%2ftoken",
]


def assert_no_escape(status: int, body: bytes, served: Served, what: object) -> None:
    assert SECRET not in body, f"escaped with {what!r}"
    assert b"root:" not in body, f"escaped with {what!r}"
    assert TOKEN.encode() not in body, f"token leaked with {what!r}"
    assert status in (400, 403, 404), f"{what!r} -> {status} {body[:200]!r}"
    assert body.startswith(b'{"error":'), f"{what!r} -> {body[:200]!r}"


async def test_traversal_corpus_never_escapes(served: Served) -> None:
    assert len(TRAVERSAL) + len(RAW_TRAVERSAL) >= 40
    (served.root / ".slipstream" / "token").write_text(TOKEN + "\n")
    secret = served.outside / "secret.txt"
    async with served.client() as client:
        for template in TRAVERSAL:
            payload = template.replace("{abs}", str(secret)).replace("{base}", str(served.outside))
            target = f"/api/download?filepath={quote(payload, safe='')}&token={TOKEN}"
            response = await client.get(target)
            assert_no_escape(response.status_code, response.content, served, payload)
    for raw in RAW_TRAVERSAL:
        request = b"GET /api/download?token=" + TOKEN.encode() + b"&filepath=" + raw
        out = await exchange(
            served.port, request + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        head, _, body = out.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        assert_no_escape(status, body, served, raw)


async def test_traversal_through_authorization_header_route_too(served: Served) -> None:
    async with served.client(headers=served.auth) as client:
        for payload in ("../secret.txt", "escape.txt", "escape-dir/secret.txt"):
            response = await client.get("/api/download", params={"filepath": payload})
            assert_no_escape(response.status_code, response.content, served, payload)
            head = await client.head("/api/download", params={"filepath": payload})
            assert head.status_code in (403, 404)


async def test_symlink_inside_the_root_is_served(served: Served) -> None:
    """The escape checks are not a blanket symlink ban."""
    async with served.client(headers=served.auth) as client:
        response = await client.get("/api/download", params={"filepath": "inside-link.txt"})
    assert response.status_code == 200
    assert response.content == served.files["small.txt"]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(
        st.sampled_from(
            [
                "..",
                ".",
                "",
                "secret.txt",
                "escape-dir",
                "subdir",
                "%2e",
                "%2f",
                "\\",
                "%00",
                "\uff0e",
                "escape.txt",
                ".slipstream",
                "token",
                "small.txt",
                "%25",
                "/",
            ]
        ),
        min_size=1,
        max_size=6,
    ).map("/".join)
    | st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
)
async def test_fuzzed_paths_never_escape(tmp_path: Path, payload: str) -> None:
    async with running_server(tmp_path) as served, served.client() as client:
        response = await client.get(
            f"/api/download?filepath={quote(payload, safe='')}&token={TOKEN}"
        )
    body = response.content
    assert SECRET not in body
    assert response.status_code != 500, body
    if response.status_code == 200:
        assert body in served.files.values(), payload
    else:
        assert response.status_code in (400, 403, 404, 412), (payload, body)
        assert response.json().keys() == {"error"}


# --- slow and vanishing clients -------------------------------------------------------------


async def test_slowloris_trickling_bytes_is_closed_at_head_timeout(
    start_server: StartServer,
) -> None:
    served = await start_server(limits={"head_timeout": 0.6})
    client = await served.raw()
    request = get("/healthz")
    started = trio.current_time()
    sent = 0
    got = bytearray()
    with trio.move_on_after(8):
        for byte in request:
            try:
                await client.send(bytes([byte]))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                break
            sent += 1
            with trio.move_on_after(0.3):  # a byte every 0.3 s, listening meanwhile
                while chunk := await client.receive():
                    got += chunk
            if client.closed_by_peer:
                break
    elapsed = trio.current_time() - started
    assert client.closed_by_peer, f"still open after {elapsed:.1f}s and {sent} bytes"
    assert sent < len(request)
    assert elapsed < 2.5, elapsed  # head_timeout 0.6 s: trickling bytes does not extend it
    assert got.startswith(b"HTTP/1.1 408 "), bytes(got)
    assert got.endswith(b"}")
    await client.aclose()


async def test_disconnect_mid_body_leaves_no_open_fd(served: Served) -> None:
    async with served.client(headers=served.auth) as warm:  # warm up lazily created fds
        assert (await warm.get("/healthz")).status_code == 200
    await trio.sleep(0.1)
    baseline = open_fd_count()
    size = len(served.files["random.bin"])
    for round_ in range(6):
        client = await served.raw()
        headers = ["Range: bytes=0-"] if round_ % 3 == 1 else []
        if round_ % 3 == 2:
            headers = [f"Range: bytes=0-{size // 2},{size // 2 + 10}-"]
        await client.send(get(f"/api/download?filepath=random.bin&token={TOKEN}", *headers))
        received = 0
        while received < 100_000:
            chunk = await client.receive()
            assert chunk
            received += len(chunk)
        if round_ % 2:
            client.abort()  # RST
        else:
            await client.aclose()  # FIN with unread data
    assert await wait_for(lambda: served.server.connections == 0, timeout=5)
    kept = len(served.server.services.open_files)  # random.bin's cached descriptor
    assert kept <= 1
    count = await settle_fds(baseline + kept, timeout=5)
    assert count <= baseline + kept, f"{count - baseline - kept} file descriptors leaked"


async def test_disconnect_mid_request_body_leaves_no_open_fd(served: Served) -> None:
    await trio.sleep(0.05)
    baseline = open_fd_count()
    for _ in range(5):
        client = await served.raw()
        await client.send(get("/healthz", "Content-Length: 100000", method="POST") + b"x" * 500)
        assert await wait_for(lambda: served.server.connections >= 1)
        client.abort()
    assert await wait_for(lambda: served.server.connections == 0, timeout=5)
    count = await settle_fds(baseline, timeout=5)
    assert count <= baseline, f"{count - baseline} file descriptors leaked"


async def test_many_concurrent_abandoned_downloads_leave_no_fd(served: Served) -> None:
    await trio.sleep(0.05)
    baseline = open_fd_count()
    clients: list[RawClient] = []
    for _ in range(12):
        client = await served.raw()
        await client.send(get(f"/api/download?filepath=random.bin&token={TOKEN}"))
        clients.append(client)
    assert await wait_for(lambda: served.server.connections == 12)
    for client in clients:
        assert await client.receive()
    for client in clients:
        client.abort()
    assert await wait_for(lambda: served.server.connections == 0, timeout=5)
    kept = len(served.server.services.open_files)  # random.bin's cached descriptor
    assert kept <= 1
    count = await settle_fds(baseline + kept, timeout=5)
    assert count <= baseline + kept, f"{count - baseline - kept} file descriptors leaked"
