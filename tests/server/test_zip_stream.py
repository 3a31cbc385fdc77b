"""Zip-as-a-service (seed 004): the zip itself, its ranges, expiry, and failing upstreams.

Reference bytes always come from a separate manifest of the same URIs (a full ``200``
expires its own stream; the zip is deterministic, so the ETags are equal).  A URI with an
extra query string names the same upstream object but has its own CRC cache entry, which
is how a "cold" manifest is made.
"""

from __future__ import annotations

import io
import os
import subprocess
import uuid
import zipfile
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slipstream.zip.state import ZipState
from tests.helpers.server import Served, StartServer, running_server
from tests.helpers.upstream import AUTO, FIXED_LAST_MODIFIED, Blob, Upstream
from tests.helpers.zip import (
    FORMATS,
    check_error,
    create,
    fetch,
    fetch_partial,
    format_params,
    member_bytes,
    read_zip,
    wait_expired,
    zip_server,
)

pytestmark = pytest.mark.usefixtures("zip_sender")

SIZES = [0, 1, 70_000, 5, 150_001]
"""Member sizes: an empty one, tiny ones, and two spanning several upstream chunks."""


def add_members(upstream: Upstream, query: str = "") -> list[str]:
    """The :data:`SIZES` members (the last without validators: its CRC is never cached)."""
    uris = []
    for n, size in enumerate(SIZES):
        no_validators = n == len(SIZES) - 1
        blob = Blob(
            member_bytes(n, size),
            etag=None if no_validators else AUTO,
            last_modified=None if no_validators else AUTO,
        )
        uris.append(upstream.add(f"/z/m{n}.dat", blob) + query)
    return uris


def expected() -> dict[str, bytes]:
    return {f"m{n}.dat": member_bytes(n, size) for n, size in enumerate(SIZES)}


async def reference(served: Served, uris: list[str]) -> httpx.Response:
    """The full 200 of a fresh manifest of ``uris`` (which it expires)."""
    full = await fetch(served, await create(served, uris))
    assert full.status_code == 200
    return full


# --- the zip read back -------------------------------------------------------------------


async def test_zip_reads_back_with_zipfile_unzip_7z_and_bsdtar(
    start_server: StartServer, upstream: Upstream, tmp_path: Path
) -> None:
    served = await zip_server(start_server, upstream)
    full = await reference(served, add_members(upstream))
    assert read_zip(full.content) == expected()
    infos = zipfile.ZipFile(io.BytesIO(full.content)).infolist()
    # Timestamps come from Last-Modified, or 1980-01-01 without one (the last member's
    # upstream sends none, nor does the 416 that answers the probe of the empty member).
    dos_epoch, modified = (1980, 1, 1, 0, 0, 0), (2015, 10, 21, 7, 28, 0)
    assert [i.date_time for i in infos] == [dos_epoch, modified, modified, modified, dos_epoch]
    assert all(i.flag_bits & 0x808 == 0x808 for i in infos)  # data descriptor, UTF-8
    assert full.headers["last-modified"] == FIXED_LAST_MODIFIED
    archive = tmp_path / "z.zip"
    archive.write_bytes(full.content)
    for command in (["unzip", "-t"], ["7z", "t", "-bb1"], ["bsdtar", "-tvf"]):
        result = await trio.run_process(
            [*command, str(archive)], capture_stdout=True, stderr=subprocess.STDOUT, check=False
        )
        output = result.stdout.decode(errors="replace")
        assert result.returncode == 0, f"{command[0]}: {output}"
        for name in expected():
            assert name in output, f"{command[0]} did not list {name}: {output}"
        if command[0] == "unzip":
            assert "No errors detected" in output
    extracted = tmp_path / "out"
    extracted.mkdir()
    await trio.run_process(["bsdtar", "-xf", str(archive), "-C", str(extracted)], check=True)
    for name, data in expected().items():
        assert (extracted / name).read_bytes() == data


async def test_head_if_range_and_expiry_by_one_200(
    start_server: StartServer, upstream: Upstream
) -> None:
    served = await zip_server(start_server, upstream)
    uris = add_members(upstream)
    full = await reference(served, uris)
    size = len(full.content)
    path = await create(served, uris, file_name="pack.zip")
    head = await fetch(served, path, "HEAD")
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == size
    for name in ("etag", "last-modified", "accept-ranges", "content-type"):
        assert head.headers[name] == full.headers[name]
    assert 'filename="pack.zip"' in head.headers["content-disposition"]
    ranged_head = await fetch(served, path, "HEAD", Range="bytes=10-19")
    assert ranged_head.status_code == 206
    assert ranged_head.headers["content-range"] == f"bytes 10-19/{size}"
    etag, modified = full.headers["etag"], full.headers["last-modified"]
    for validator in (etag, modified):
        part = await fetch(served, path, Range="bytes=100-199", If_Range=validator)
        assert part.status_code == 206
        assert part.headers["content-range"] == f"bytes 100-199/{size}"
        assert part.content == full.content[100:200]
    assert (await fetch(served, path, "HEAD")).status_code == 200
    # A stale If-Range gives the whole zip (a 200), which expires the stream.
    stale = await fetch(served, path, Range="bytes=100-199", If_Range='"z-stale"')
    assert stale.status_code == 200 and stale.content == full.content
    await wait_expired(served, path)
    check_error(await fetch(served, path), "DOWNLOAD_EXPIRED", "html")


# --- any Range equals the slice of the full 200 (cold and warm CRC cache) -----------------


@asynccontextmanager
async def zip_site(base: Path) -> AsyncIterator[tuple[Served, Upstream]]:
    """An upstream and a server with a fresh state dir, in their own nursery."""
    async with trio.open_nursery() as nursery:
        upstream = Upstream()
        await nursery.start(upstream.run)
        state = base / f"state-{uuid.uuid4()}"
        async with running_server(
            base, state_dir=state, zip_allow_prefixes=[upstream.url("/")]
        ) as served:
            yield served, upstream
        nursery.cancel_scope.cancel()


range_strategy = st.one_of(
    st.tuples(st.just("a-b"), st.floats(0, 1), st.integers(0, 250_000)),
    st.tuples(st.just("a-"), st.floats(0, 1), st.just(0)),
    st.tuples(st.just("-n"), st.just(0.0), st.integers(1, 250_000)),
)


def spell(kind: str, where: float, n: int, size: int) -> tuple[str, int, int]:
    """The header and the ``[start, stop)`` it selects from a ``size``-byte zip."""
    start = min(int(where * size), size - 1)
    if kind == "a-b":
        return f"bytes={start}-{start + n}", start, min(start + n + 1, size)
    if kind == "a-":
        return f"bytes={start}-", start, size
    return f"bytes=-{n}", max(size - n, 0), size


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(spec=range_strategy)
async def test_any_range_is_the_slice_of_the_full_zip(
    tmp_path: Path, spec: tuple[str, float, int]
) -> None:
    async with zip_site(tmp_path) as (served, upstream):
        full = await reference(served, add_members(upstream))
        size = len(full.content)
        header, start, stop = spell(*spec, size)
        cold = await create(served, add_members(upstream, "?cold"))  # no CRC cached
        warm = await create(served, add_members(upstream))  # CRCs cached by the 200
        for path in (cold, warm):
            part = await fetch(served, path, Range=header)
            assert part.status_code == 206, header
            assert part.headers["content-range"] == f"bytes {start}-{stop - 1}/{size}"
            assert part.headers["etag"] == full.headers["etag"]
            assert part.content == full.content[start:stop], (path, header)


# --- a segmented download ----------------------------------------------------------------


async def segments(served: Served, path: str, bounds: list[int], which: range) -> list[bytes]:
    """Segments ``which`` of ``path`` (``[bounds[k], bounds[k+1])``), each on its own
    connection, all at once."""
    parts: dict[int, bytes] = {}

    async def one(k: int) -> None:
        async with served.client() as client:
            headers = {"Range": f"bytes={bounds[k]}-{bounds[k + 1] - 1}"}
            reply = await client.get(path, headers=headers)
        assert reply.status_code == 206
        parts[k] = reply.content

    async with trio.open_nursery() as nursery:
        for k in which:
            nursery.start_soon(one, k)
    return [parts[k] for k in which]


@pytest.mark.parametrize("cache", ["cold", "warm"])
async def test_segmented_download_equals_the_zip_and_expires_it(
    start_server: StartServer, upstream: Upstream, cache: str
) -> None:
    served = await zip_server(start_server, upstream)
    full = (await reference(served, add_members(upstream))).content
    size = len(full)
    bounds = [size * k // 8 for k in range(9)]
    query = "?cold" if cache == "cold" else ""
    # Eight connections at once, as aria2c -x8 -s8 would do.
    path = await create(served, add_members(upstream, query))
    assert b"".join(await segments(served, path, bounds, range(8))) == full
    await wait_expired(served, path)
    check_error(await fetch(served, path, Range="bytes=0-0"), "DOWNLOAD_EXPIRED", "html")
    # Seven segments of eight (even twice) leave the stream alive; the eighth ends it.
    other = await create(served, add_members(upstream, query + ("&" if query else "?") + "b"))
    seven = await segments(served, other, bounds, range(1, 8))
    seven_again = await segments(served, other, bounds, range(1, 8))
    assert seven == seven_again == [full[bounds[k] : bounds[k + 1]] for k in range(1, 8)]
    assert (await fetch(served, other, "HEAD")).status_code == 200
    assert (await segments(served, other, bounds, range(1)))[0] == full[: bounds[1]]
    await wait_expired(served, other)


# --- upstreams that change, drop, or ignore Range -------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
async def test_changed_etag_cuts_the_reply_then_checksum_error(
    start_server: StartServer, upstream: Upstream, fmt: str
) -> None:
    served = await zip_server(start_server, upstream)
    uris = add_members(upstream)
    full = (await reference(served, uris)).content
    path = await create(served, uris, **format_params(fmt))
    changed = Blob(member_bytes(99, SIZES[3]))  # another ETag
    upstream.add("/z/m3.dat", changed)
    reply = await fetch_partial(served, path)
    assert reply.status == 200
    assert not reply.complete and len(reply.body) < reply.length == len(full)
    assert full.startswith(reply.body), "the bytes sent before the cut are the zip's"
    check_error(await fetch(served, path), "CHECKSUM_ERROR", fmt)
    check_error(await fetch(served, path, Range="bytes=0-9"), "CHECKSUM_ERROR", fmt)


async def test_changed_etag_found_by_a_background_crc(
    start_server: StartServer, upstream: Upstream
) -> None:
    served = await zip_server(start_server, upstream)
    path = await create(served, add_members(upstream, "?cold"), **format_params("json"))
    upstream.add("/z/m2.dat", Blob(member_bytes(98, SIZES[2])))
    # The last bytes need every CRC; m2's is computed in the background, and finds the
    # change before the reply's first byte: an error reply, not a cut one.
    check_error(await fetch(served, path, Range="bytes=-30"), "CHECKSUM_ERROR", "json")
    check_error(await fetch(served, path), "CHECKSUM_ERROR", "json")


async def test_new_bytes_under_the_same_etag_never_give_a_complete_zip(
    start_server: StartServer, upstream: Upstream
) -> None:
    served = await zip_server(start_server, upstream)
    original = member_bytes(7, 50_000)
    upstream.add("/same/a.bin", Blob(b"first member"))
    blob = upstream.add("/same/b.bin", Blob(original, etag='"fixed"'))
    uris = [upstream.url("/same/a.bin"), blob]
    full = (await reference(served, uris)).content  # caches the CRCs
    path = await create(served, uris)
    tampered = bytearray(original)
    tampered[25_000] ^= 0xFF
    upstream.add("/same/b.bin", Blob(bytes(tampered), etag='"fixed"'))
    reply = await fetch_partial(served, path)
    assert reply.status == 200
    assert not reply.complete and len(reply.body) < len(full)
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(reply.body))
    check_error(await fetch(served, path), "CHECKSUM_ERROR", "html")


async def test_a_member_that_always_breaks_cuts_the_reply_and_the_server_lives_on(
    start_server: StartServer, upstream: Upstream
) -> None:
    served = await zip_server(start_server, upstream)
    uris = add_members(upstream)
    full = (await reference(served, uris)).content
    cold = add_members(upstream, "?cold")
    path = await create(served, cold)
    upstream.add("/z/m2.dat", Blob(member_bytes(2, SIZES[2]), drop_after=1000))  # every time
    # The end of the zip needs m2's CRC, computed in the background before the reply's
    # first byte: every try breaks, so the reply is an error (not a cut one).
    tail = await fetch(served, path, Range="bytes=-30")
    check_error(tail, "FAILED_FETCHING_URIS", "html", [cold[2]])
    # A reply streaming m2 itself starts (m2's first byte still comes) and is cut mid-body.
    whole = await fetch_partial(served, path)
    assert whole.status == 200 and not whole.complete
    assert full.startswith(whole.body)
    # A network failure is not a changed object: once the upstream heals, the stream works.
    upstream.add("/z/m2.dat", Blob(member_bytes(2, SIZES[2])))
    healed = await fetch(served, path)
    assert healed.status_code == 200 and healed.content == full


@pytest.mark.parametrize("reset", [False, True])
async def test_a_dropped_member_connection_is_retried(
    start_server: StartServer, upstream: Upstream, reset: bool
) -> None:
    served = await zip_server(start_server, upstream)
    data = member_bytes(5, 300_000)
    blob = Blob(data, drop_after=100_000, drop_count=1, drop_with_reset=reset)
    uri = upstream.add("/drop/big.bin", blob)
    uri_small = upstream.add("/drop/small.bin", Blob(b"after the drop"))
    path = await create(served, [uri, uri_small])
    reply = await fetch_partial(served, path)
    assert reply.complete, "the member was retried, not cut"
    assert read_zip(reply.body) == {"big.bin": data, "small.bin": b"after the drop"}
    assert blob.drops_done == 1
    starts = [r.header("range") for r in upstream.requests_for("/drop/big.bin")]
    resumed = [s for s in starts if s and not s.startswith(("bytes=0-",))]
    assert resumed, f"no retry from the offset reached: {starts}"


# --- zip64: a member over 4 GiB, read through HTTP Range ----------------------------------

BIG = 4 * 1024**3 + 10


class RangeFile(io.RawIOBase):
    """A read-only, seekable file whose reads are HTTP Range requests (for ``zipfile``)."""

    def __init__(self, client: httpx.Client, path: str) -> None:
        self.client = client
        self.path = path
        head = client.head(path)
        assert head.status_code == 200
        self.size = int(head.headers["content-length"])
        self.pos = 0
        self.fetched = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.size}[whence]
        self.pos = base + offset
        return self.pos

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self.size - self.pos)
        if want <= 0:
            return 0
        reply = self.client.get(
            self.path, headers={"Range": f"bytes={self.pos}-{self.pos + want - 1}"}
        )
        assert reply.status_code == 206, reply.text
        data = reply.content
        assert len(data) == want
        buffer[:want] = data
        self.pos += want
        self.fetched += want
        return want


def zeros_crc(size: int) -> int:
    """CRC-32 of ``size`` zero bytes (zlib, independent of the code under test)."""
    block = bytes(16 * 1024 * 1024)
    value = 0
    for _ in range(size // len(block)):
        value = zlib.crc32(block, value)
    return zlib.crc32(bytes(size % len(block)), value)


async def test_zip64_member_over_4_gib_read_through_ranges(
    start_server: StartServer, upstream: Upstream, tmp_path: Path
) -> None:
    big = tmp_path / "sparse.bin"
    with big.open("wb") as f:
        f.truncate(BIG)  # a hole: no disk space used
    before = upstream.add("/64/before.txt", Blob(b"before the big one\n"))
    big_blob = Blob(path=big)
    big_uri = upstream.add("/64/big.bin", big_blob)
    after_data = member_bytes(3, 3000)
    after = upstream.add("/64/after.txt", Blob(after_data))
    state = tmp_path / "state"
    # Streaming 4 GiB through the loopback upstream would take minutes: the big member's
    # CRC is cached beforehand (the small members' are computed by ranged fetches).
    with ZipState(state / "zip.sqlite3") as cache:
        validator = big_blob.current_etag()
        assert validator is not None
        big_crc = await trio.to_thread.run_sync(zeros_crc, BIG)
        cache.put_crc(big_uri, BIG, validator, big_crc)
    served = await zip_server(start_server, upstream, state_dir=state)
    path = await create(served, [before, big_uri, after])

    def read_back() -> tuple[list[zipfile.ZipInfo], bytes, bytes, int]:
        with httpx.Client(base_url=served.base, timeout=30) as client:
            remote = RangeFile(client, path)
            archive = zipfile.ZipFile(remote)
            infos = archive.infolist()
            tail = archive.read("after.txt")  # checks its CRC
            first = archive.read("before.txt")
            return infos, tail, first, remote.fetched

    infos, tail, first, fetched = await trio.to_thread.run_sync(read_back)
    assert [i.filename for i in infos] == ["before.txt", "big.bin", "after.txt"]
    assert [i.file_size for i in infos] == [19, BIG, 3000]
    assert [i.compress_size for i in infos] == [19, BIG, 3000]
    assert [i.CRC for i in infos][1] == big_crc
    assert infos[2].header_offset > 0xFFFFFFFF
    assert tail == after_data and first == b"before the big one\n"
    assert fetched < 1024 * 1024, "the test read a few bytes, not the zip"
    size = int((await fetch(served, path, "HEAD")).headers["content-length"])
    assert size > BIG
    big_reads = [r.header("range") for r in upstream.requests_for("/64/big.bin")]
    assert big_reads == ["bytes=0-0"], "the big member was never fetched beyond its probe"
    assert os.stat(big).st_blocks == 0
