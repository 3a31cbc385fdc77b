"""Zip-as-a-service (seed 004) as the upstream sees it: allow list, failed fetches,
forwarded and added headers, and the entry names made from what upstreams say.

Entry names are checked by our own reader of the central directory and our own safety
rules: ``unzip``, ``7z``, ``bsdtar`` and ``zipfile`` all accept unsafe names, so they
prove nothing here.
"""

from __future__ import annotations

import struct
import unicodedata
from urllib.parse import urlencode

import pytest

from slipstream.zip.threadfetch import REQUESTS_AHEAD
from slipstream.zip.threadsend import FETCH_WINDOW
from tests.helpers.raw_http import RawClient
from tests.helpers.server import Served, StartServer
from tests.helpers.upstream import Blob, Redirect, Status, Upstream
from tests.helpers.zip import (
    FORMATS,
    POST_TIMEOUT,
    check_error,
    create,
    expected_members,
    fetch,
    form_fields,
    format_params,
    member_bytes,
    post,
    read_zip,
    refused_port,
    zip_server,
)

pytestmark = pytest.mark.usefixtures("zip_sender")

# --- own reader of entry names ----------------------------------------------------------


def entry_names(data: bytes) -> list[bytes]:
    """Raw names of a (non-zip64) zip's central directory; each checked against its
    local header's name."""
    eocd = data.rfind(b"PK\x05\x06")
    assert eocd >= 0, "no end of central directory record"
    entries, cd_size, cd_offset = struct.unpack_from("<HII", data, eocd + 10)
    names = []
    pos = cd_offset
    for _ in range(entries):
        assert data[pos : pos + 4] == b"PK\x01\x02"
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, pos + 28)
        (local,) = struct.unpack_from("<I", data, pos + 42)
        name = data[pos + 46 : pos + 46 + name_len]
        assert data[local : local + 4] == b"PK\x03\x04"
        (local_len,) = struct.unpack_from("<H", data, local + 26)
        assert data[local + 30 : local + 30 + local_len] == name, "local and central names differ"
        names.append(name)
        pos += 46 + name_len + extra_len + comment_len
    assert pos == cd_offset + cd_size
    return names


RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"{d}{n}" for d in ("COM", "LPT") for n in range(1, 10)}


def unsafe_reasons(raw: bytes) -> list[str]:
    """Why an entry name would be unsafe to extract on Linux, macOS or Windows."""
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        return ["not UTF-8"]
    reasons = []
    if not name:
        reasons.append("empty")
    if name.startswith("/"):
        reasons.append("absolute")
    if "\\" in name:
        reasons.append("backslash")
    if ":" in name:
        reasons.append("colon (drive letter / stream)")
    if any(unicodedata.category(c) == "Cc" for c in name):
        reasons.append("control character")
    for segment in name.split("/"):
        if segment in ("", ".", ".."):
            reasons.append(f"segment {segment!r}")
        elif segment.split(".")[0].strip().upper() in RESERVED:
            reasons.append(f"reserved device name {segment!r}")
        elif segment.endswith((".", " ")):
            reasons.append(f"trailing dot or space in {segment!r}")
    return reasons


# --- the allow list ---------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
async def test_unauthorized_uris_are_listed_and_never_fetched(
    start_server: StartServer, upstream: Upstream, fmt: str
) -> None:
    served = await zip_server(start_server, upstream, upstream.url("/ok/"))
    inside = upstream.add("/ok/a.bin", Blob(b"a"))
    outside = [upstream.add("/no/b.bin", Blob(b"b")), "http://elsewhere.example/ok/c"]
    response = await post(served, fields=form_fields([inside, *outside], **format_params(fmt)))
    check_error(response, "UNAUTHORIZED_URIS", fmt, outside)
    assert upstream.requests == []


async def test_no_prefix_configured_means_every_uri_is_unauthorized(
    start_server: StartServer, upstream: Upstream, three: list[str]
) -> None:
    served = await start_server()  # no zip_allow_prefixes
    response = await post(served, document={"fs_uri_list": three})
    check_error(response, "UNAUTHORIZED_URIS", "json", three)
    assert upstream.requests == []


@pytest.mark.parametrize("fmt", FORMATS)
async def test_failed_fetching_uris(
    start_server: StartServer, upstream: Upstream, fmt: str
) -> None:
    port = refused_port()
    refused = f"http://127.0.0.1:{port}/ok/x.bin"
    served = await zip_server(start_server, upstream, upstream.url("/ok/"), refused)
    good = upstream.add("/ok/good.bin", Blob(b"good"))
    missing = upstream.add("/ok/missing.bin", Status(404, b"nope"))
    broken = upstream.add("/ok/broken.bin", Status(500, b"oops"))
    upstream.add("/out/target.bin", Blob(b"outside"))
    escaping = upstream.add("/ok/redirect", Redirect(upstream.url("/out/target.bin")))
    uris = [good, missing, broken, escaping, refused]
    response = await post(served, fields=form_fields(uris, **format_params(fmt)))
    check_error(response, "FAILED_FETCHING_URIS", fmt, uris[1:])
    assert upstream.requests_for("/out/target.bin") == [], "a redirect left the allow list"


async def test_redirects_inside_the_allow_list_are_followed(
    start_server: StartServer, upstream: Upstream
) -> None:
    served = await zip_server(start_server, upstream, upstream.url("/ok/"))
    upstream.add("/ok/real/data.bin", Blob(b"real data"))
    moved = upstream.add("/ok/moved.bin", Redirect(upstream.url("/ok/real/data.bin")))
    path = await create(served, [moved])
    zipped = await fetch(served, path)
    assert list(read_zip(zipped.content).values()) == [b"real data"]


async def test_members_after_the_first_that_redirect_are_followed(
    start_server: StartServer, upstream: Upstream
) -> None:
    # The members after the first are read ahead (with a send thread, their requests
    # are written ahead): an answer that is a redirect is read again the general way.
    served = await zip_server(start_server, upstream, upstream.url("/ok/"))
    first = upstream.add("/ok/first.bin", Blob(b"first"))
    upstream.add("/ok/real/data.bin", Blob(b"real data"))
    moved = upstream.add("/ok/moved.bin", Redirect(upstream.url("/ok/real/data.bin")))
    last = upstream.add("/ok/last.bin", Blob(b"last"))
    path = await create(served, [first, moved, last])
    zipped = await fetch(served, path)
    assert list(read_zip(zipped.content).values()) == [b"first", b"real data", b"last"]


async def test_many_members_with_odd_ones_among_them_give_the_whole_zip(
    start_server: StartServer, upstream: Upstream
) -> None:
    # More members than a send thread is given at once (FETCH_WINDOW), among them some it
    # gives up fetching itself, read on the general way: a redirect, a chunked answer, a
    # body cut midway (read on from the byte it reached).
    served = await zip_server(start_server, upstream, upstream.url("/ok/"))
    contents = [member_bytes(n, 1000 + 37 * n) for n in range(2 * FETCH_WINDOW + 5)]
    uris = []
    for n, data in enumerate(contents):
        name = f"m{n:03d}.bin"
        if n == 10:
            upstream.add(f"/ok/real/{name}", Blob(data))
            uris.append(upstream.add(f"/ok/{name}", Redirect(upstream.url(f"/ok/real/{name}"))))
        else:
            odd = {20: {"chunked": True}, 40: {"drop_after": 700, "drop_count": 1}}
            uris.append(upstream.add(f"/ok/{name}", Blob(data, **odd.get(n, {}))))
    path = await create(served, uris)
    zipped = await fetch(served, path)
    assert zipped.status_code == 200
    assert list(read_zip(zipped.content).values()) == contents  # (zipfile checks each CRC)
    ranges = [r.header("range") for r in upstream.requests_for("/ok/m040.bin")]
    assert ranges[-2:] == [f"bytes=0-{len(contents[40]) - 1}", f"bytes=700-{len(contents[40]) - 1}"]


async def test_members_the_send_thread_gives_up_on_do_not_pile_up_connections(
    start_server: StartServer, upstream: Upstream
) -> None:
    # Every member redirects: the send thread gives each up and it is read the general
    # way; the connection of each answer given up is closed as the reply goes, not held
    # until it ends (then there would be one per member).
    served = await zip_server(start_server, upstream, upstream.url("/ok/"))
    count = 6 * REQUESTS_AHEAD
    uris = []
    for n in range(count):
        upstream.add(f"/ok/real/{n}.bin", Blob(member_bytes(n, 2000)))
        uris.append(upstream.add(f"/ok/{n}.bin", Redirect(upstream.url(f"/ok/real/{n}.bin"))))
    path = await create(served, uris)
    upstream.reset()
    zipped = await fetch(served, path)
    assert list(read_zip(zipped.content).values()) == [member_bytes(n, 2000) for n in range(count)]
    # REQUESTS_AHEAD written ahead, the pool's idle ones, the general read and its redirect.
    assert upstream.most_open <= 3 * REQUESTS_AHEAD, upstream.most_open


# --- header forwarding, as the upstream saw it --------------------------------------------

CLIENT_HEADERS = [
    ("Host", "client-host.example"),
    ("Authorization", "Bearer client-token"),
    ("Cookie", "session=client-cookie"),
    ("X-Custom", "client-custom"),
    ("X-Secret-Hop", "listed-in-connection"),
    ("Connection", "keep-alive, X-Secret-Hop"),
    ("Keep-Alive", "timeout=99"),
    ("TE", "trailers"),
    ("Trailer", "X-Trailer-Client"),
    ("Proxy-Authorization", "Basic proxy-secret"),
    ("Range", "bytes=5-9"),
    ("If-None-Match", '"client-inm"'),
    ("If-Modified-Since", "Wed, 21 Oct 2015 07:28:00 GMT"),
    ("If-Range", '"client-if-range"'),
    ("Accept-Encoding", "x-client-encoding"),
    ("Expect", "x-client-expect"),
]
NEVER_SEEN = {
    "host": "client-host.example",
    "x-secret-hop": "listed-in-connection",
    "keep-alive": "timeout=99",
    "te": "trailers",
    "trailer": "X-Trailer-Client",
    "proxy-authorization": "Basic proxy-secret",
    "if-none-match": '"client-inm"',
    "if-modified-since": "Wed, 21 Oct 2015 07:28:00 GMT",
    "if-range": '"client-if-range"',
    "accept-encoding": "x-client-encoding",
}


async def raw_post(served: Served, headers: list[tuple[str, str]], body: bytes) -> tuple[int, str]:
    """POST with exactly ``headers`` (raw socket); the status and ``Location``."""
    client = await RawClient.connect(served.port)
    try:
        lines = ["POST /download HTTP/1.1", *(f"{n}: {v}" for n, v in headers)]
        lines.append(f"Content-Length: {len(body)}")
        await client.send(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        reply = await client.read_response("POST", timeout=POST_TIMEOUT)
    finally:
        await client.aclose()
    return reply.status, reply.header("location") or reply.body.decode(errors="replace")


async def test_forward_all_headers_skips_hop_by_hop_host_range_if_and_encoding(
    start_server: StartServer, upstream: Upstream, three: list[str]
) -> None:
    served = await zip_server(start_server, upstream)
    body = urlencode(form_fields(three, forward_all_headers="true"))
    headers = [*CLIENT_HEADERS, ("Content-Type", "application/x-www-form-urlencoded")]
    status, location = await raw_post(served, headers, body.encode())
    assert status == 303, location
    probes = list(upstream.requests)
    assert len(probes) == 3
    zipped = await fetch(served, location)
    assert read_zip(zipped.content) == expected_members()
    fetches = upstream.requests[len(probes) :]
    assert fetches, "the members were fetched"
    for request in [*probes, *fetches]:
        seen = dict(request.headers)
        assert request.header("authorization") == "Bearer client-token"
        assert request.header("cookie") == "session=client-cookie"
        assert request.header("x-custom") == "client-custom"
        assert request.header("host") == f"127.0.0.1:{upstream.port}"
        for name, value in NEVER_SEEN.items():
            assert seen.get(name) != value, f"{name} was forwarded"
        assert all(value != "x-client-expect" for _, value in request.headers)
        assert request.header("content-type") is None
        ranges = [value for name, value in request.headers if name == "range"]
        assert len(ranges) == 1 and ranges[0] != "bytes=5-9"
    assert all(r.header("range") == "bytes=0-0" for r in probes)


@pytest.mark.parametrize("forward_all", [False, True])
async def test_added_headers_reach_probes_and_member_fetches(
    start_server: StartServer, upstream: Upstream, three: list[str], forward_all: bool
) -> None:
    served = await zip_server(start_server, upstream)
    params = {"fs_add_header-X-Api-Key": "added-key", "fs_add_header-Authorization": "added"}
    if forward_all:
        params["forward_all_headers"] = "1"
    client_headers = {"Authorization": "Bearer from-client", "X-Other": "other"}
    response = await post(served, fields=form_fields(three, **params), headers=client_headers)
    assert response.status_code == 303, response.text
    await fetch(served, response.headers["location"])
    assert len(upstream.requests) >= 6  # three probes and at least three member fetches
    for request in upstream.requests:
        assert request.header("x-api-key") == "added-key"
        auths = [value for name, value in request.headers if name == "authorization"]
        # fs_forward_all_headers takes precedence over an added header of the same name.
        assert auths == (["Bearer from-client"] if forward_all else ["added"])
        assert request.header("x-other") == ("other" if forward_all else None)


async def test_malformed_added_header_is_refused(
    start_server: StartServer, upstream: Upstream, three: list[str]
) -> None:
    served = await zip_server(start_server, upstream)
    params = {"fs_add_header-Bad Name": "x", "fs_add_header-X-Ok": "line\r\nInjected: 1"}
    response = await post(served, document={"fs_uri_list": three, **params})
    assert response.status_code == 400
    assert response.json()["fs_error_key"] == "MALFORMED_HEADER"
    assert sorted(response.json()["fs_error_records"]) == sorted(params)
    assert upstream.requests == []


# --- entry names ------------------------------------------------------------------------

HOSTILE_DISPOSITIONS = [
    'attachment; filename="../x"',
    'attachment; filename="../../etc/passwd"',
    'attachment; filename="/abs"',
    'attachment; filename="a\\\\..\\\\b"',
    "attachment; filename*=UTF-8''..%5C..%5Cwin.ini",
    'attachment; filename="C:x"',
    'attachment; filename="C:\\\\Windows\\\\evil.dll"',
    'attachment; filename="CON"',
    'attachment; filename="nul.txt"',
    'attachment; filename="com1"',
    "attachment; filename*=UTF-8''bell%07%0Aline%00nul.txt",
    'attachment; filename=".."',
    'attachment; filename="."',
    'attachment; filename="trailing. "',
    'attachment; filename="a/b/../../c"',
    'attachment; filename="stream::$DATA"',
    "attachment; filename*=UTF-8''%E2%80%AEcod.exe",
    'attachment; filename="report.pdf"',
    'attachment; filename="report.pdf"',
    'attachment; filename="REPORT.pdf"',
]
# Paths that could still resolve to a dot segment or hold an encoded control character
# (``..%2F``, ``%00``) never get this far: the allow list refuses them (test_zip_allowlist).
HOSTILE_PATHS = [
    "/h/up%2F%2Fdown.txt",
    "/h/%5Cback%5Cslash",
    "/h/c%3A",
    "/h/aux",
    "/h/nel%C2%85.txt",
    "/h/",
]


@pytest.mark.parametrize(
    "raw",
    [b"../x", b"a/../b", b"/abs", b"a\\b", b"C:x", b"CON", b"nul.txt", b"Com1.log", b"a\x07b",
     b"\xff", b"", b"a//b", b"dir/", b"x.", b"x ", b"\xc2\x85nel"],
)  # fmt: skip
def test_the_safety_check_itself_refuses_unsafe_names(raw: bytes) -> None:
    assert unsafe_reasons(raw) != []


def test_the_safety_check_itself_accepts_ordinary_names() -> None:
    for raw in [b"report.pdf", "résumé (1).txt".encode(), b"a/b.txt", b".bashrc", b"_CON"]:
        assert unsafe_reasons(raw) == [], raw


async def test_hostile_names_become_safe_unique_entries(
    start_server: StartServer, upstream: Upstream
) -> None:
    served = await zip_server(start_server, upstream)
    uris = [
        upstream.add(f"/d/{n}", Blob(member_bytes(n, 10 + n), content_disposition=disposition))
        for n, disposition in enumerate(HOSTILE_DISPOSITIONS)
    ]
    for n, path in enumerate(HOSTILE_PATHS):
        uris.append(upstream.add(path, Blob(b"p" * (n + 1))))
    path = await create(served, uris)
    zipped = await fetch(served, path)
    assert zipped.status_code == 200
    names = entry_names(zipped.content)
    assert len(names) == len(uris)
    for raw in names:
        assert unsafe_reasons(raw) == [], raw
    decoded = [raw.decode() for raw in names]
    folded = [unicodedata.normalize("NFC", name).casefold() for name in decoded]
    assert len(set(folded)) == len(folded), f"duplicate names: {decoded}"
    # Duplicates are numbered the desktop way; the first keeps its name.
    first = HOSTILE_DISPOSITIONS.index('attachment; filename="report.pdf"')
    assert decoded[first] == "report.pdf"
    assert decoded[first + 1] == "report (1).pdf"
    assert decoded[first + 2].casefold() == "report (2).pdf"
    # The content is still where the name says (zipfile reads every member back).
    contents = read_zip(zipped.content)
    assert contents[decoded[0]] == member_bytes(0, 10)


# --- absurd sizes ---------------------------------------------------------------------------


def claims_size(size: int) -> Status:
    """A probe answer claiming an object of ``size`` bytes (the body is never read)."""
    return Status(206, b"x", [("Content-Range", f"bytes 0-0/{size}")])


@pytest.mark.parametrize("fmt", FORMATS)
async def test_absurd_sizes_are_failed_fetches_at_the_post(
    start_server: StartServer, upstream: Upstream, fmt: str
) -> None:
    served = await zip_server(start_server, upstream)
    good = upstream.add("/ok.bin", Blob(b"fine"))
    huge = upstream.add("/huge.bin", claims_size(99999999999999999999999))
    response = await post(served, fields=form_fields([good, huge], **format_params(fmt)))
    check_error(response, "FAILED_FETCHING_URIS", fmt, [huge])


@pytest.mark.parametrize(
    ("sizes", "blamed"),
    [
        ([2**63 - 1], 0),  # the member fits a Content-Length, the zip around it does not
        ([1, 2**62, 2**62], 2),  # each fits, together they do not
        ([2**62, 2**62 - 10], 1),
    ],
)
async def test_a_zip_past_the_largest_content_length_is_refused(
    start_server: StartServer, upstream: Upstream, sizes: list[int], blamed: int
) -> None:
    served = await zip_server(start_server, upstream)
    uris = [upstream.add(f"/big{n}.bin", claims_size(size)) for n, size in enumerate(sizes)]
    response = await post(served, document={"fs_uri_list": uris})
    check_error(response, "FAILED_FETCHING_URIS", "json", [uris[blamed]])


async def test_the_largest_zip_is_announced_exactly(
    start_server: StartServer, upstream: Upstream
) -> None:
    """Just under the limit: the POST succeeds and HEAD announces the exact size."""
    served = await zip_server(start_server, upstream)
    uri = upstream.add("/big.bin", claims_size(2**63 - 1000))
    path = await create(served, [uri])
    head = await fetch(served, path, "HEAD")
    assert head.status_code == 200
    assert 2**63 - 1000 < int(head.headers["content-length"]) <= 2**63 - 1
