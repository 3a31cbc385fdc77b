"""Zip-as-a-service (seed 004) when things go wrong after the POST.

* upstreams that stop or lose a member: the GET answers the seed's ``502
  FAILED_FETCHING_URIS`` in the manifest's format whenever the failure is known before
  the first body byte, and cuts only mid-body;
* anything unexpected is the seed's ``UNKNOWN`` in the format of the POST or manifest;
* upstreams that ignore ``Range``: a resume is read from the member's start (bounded),
  deeper ones get the whole zip as a ``200``;
* a CRC cache that refuses writes: logged, contained, the server keeps serving.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import trio

from slipstream.server import App
from slipstream.zip.crc import CRC_CHUNK
from slipstream.zip.remote import SKIP_LIMIT
from slipstream.zip.service import ZipService
from slipstream.zip.state import ZipState
from slipstream.zip.stream import ZipSource
from tests.helpers.server import Served, StartServer
from tests.helpers.upstream import Blob, Upstream
from tests.helpers.zip import (
    FORMATS,
    add_three,
    check_error,
    create,
    expected_members,
    fetch,
    fetch_partial,
    form_fields,
    format_params,
    member_bytes,
    post,
    read_zip,
    zip_server,
)

pytestmark = pytest.mark.usefixtures("zip_sender")

MIB = 1024 * 1024


async def reply_head(
    served: Served, path: str, method: str, **headers: str
) -> tuple[int, httpx.Headers]:
    """Status and headers of a reply, without reading its body."""
    async with served.client() as client, client.stream(method, path, headers=headers) as reply:
        return reply.status_code, reply.headers


# --- upstream failures after the POST ----------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
async def test_upstream_stopped_after_the_post_is_failed_fetching_uris(
    start_server: StartServer, fmt: str
) -> None:
    async with trio.open_nursery() as nursery:
        upstream = Upstream()
        await nursery.start(upstream.run)
        uris = add_three(upstream)
        served = await zip_server(start_server, upstream)
        path = await create(served, uris, **format_params(fmt))
        nursery.cancel_scope.cancel()
    # Nothing listens on the upstream's port any more: every GET is the seed's error,
    # never a 200 cut before its first byte.
    for _ in range(2):
        check_error(await fetch(served, path), "FAILED_FETCHING_URIS", fmt, [uris[0]])
    resumed = await fetch(served, path, Range="bytes=1500-")  # inside the second member
    records = error_records(resumed, fmt)
    check_error(resumed, "FAILED_FETCHING_URIS", fmt, records)
    if fmt != "html":
        assert uris[1] in records and set(records) <= set(uris)


def error_records(response: httpx.Response, fmt: str) -> list[str]:
    """The records an error reply carries (none are read back from an HTML page)."""
    if fmt == "json":
        return list(response.json()["fs_error_records"])
    if fmt == "redirect":
        query = parse_qs(urlsplit(response.headers["location"]).query)
        return query["fs_error_records"][0].split(";")
    return []


async def test_a_deleted_member_cuts_only_mid_body_then_is_failed_fetching_uris(
    start_server: StartServer, upstream: Upstream
) -> None:
    served = await zip_server(start_server, upstream)
    uris = add_three(upstream)
    path = await create(served, uris, **format_params("json"))
    upstream.remove("/files/m1.bin")  # a 404 from now on
    # The first member is fine, so the reply starts; the second fails mid-body: a cut.
    first = await fetch_partial(served, path)
    assert first.status == 200 and not first.complete
    assert len(first.body) < first.length and member_bytes(0, 1000) in first.body
    # Now the failure is known before the first byte: the seed's error, every time.
    for headers in ({}, {"Range": "bytes=10-"}):
        check_error(await fetch(served, path, **headers), "FAILED_FETCHING_URIS", "json", uris[1:2])
    # A missing member is not a changed one: back in place, the stream works.
    upstream.add("/files/m1.bin", Blob(member_bytes(1, 1001)))
    healed = await fetch(served, path)
    assert healed.status_code == 200
    assert read_zip(healed.content) == expected_members()


async def test_a_member_deleted_before_the_first_get_is_failed_fetching_uris(
    start_server: StartServer, upstream: Upstream
) -> None:
    served = await zip_server(start_server, upstream)
    uris = add_three(upstream)
    path = await create(served, uris, **format_params("html"))
    upstream.remove("/files/m0.bin")
    check_error(await fetch(served, path), "FAILED_FETCHING_URIS", "html", uris[:1])
    assert len(upstream.requests_for("/files/m0.bin")) == 2, "a 404 is not retried"


# --- anything unexpected ------------------------------------------------------------------


def injected(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("injected failure")


async def injected_async(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("injected failure")


@pytest.mark.parametrize("fmt", FORMATS)
async def test_an_unexpected_failure_of_a_get_is_unknown_in_the_manifest_format(
    start_server: StartServer,
    upstream: Upstream,
    fmt: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    served = await zip_server(start_server, upstream)
    path = await create(served, add_three(upstream), **format_params(fmt))
    with monkeypatch.context() as patch:
        patch.setattr(ZipSource, "read", injected)
        check_error(await fetch(served, path), "UNKNOWN", fmt)
    assert "injected failure" in caplog.text  # logged with its traceback, never sent
    works = await fetch(served, path)
    assert works.status_code == 200 and read_zip(works.content) == expected_members()


@pytest.mark.parametrize(("encoding", "fmt"), [("json", "json"), *(("form", f) for f in FORMATS)])
async def test_an_unexpected_failure_of_a_post_is_unknown_in_its_format(
    start_server: StartServer,
    upstream: Upstream,
    encoding: str,
    fmt: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    served = await zip_server(start_server, upstream)
    uris = add_three(upstream)
    monkeypatch.setattr(ZipService, "create", injected_async)
    if encoding == "json":  # no fs_response_format: JSON's default
        response = await post(served, document={"fs_uri_list": uris})
    else:
        response = await post(served, fields=form_fields(uris, **format_params(fmt)))
    check_error(response, "UNKNOWN", fmt)
    assert "injected failure" in caplog.text


# --- upstreams that ignore Range ---------------------------------------------------------


async def test_a_resume_into_a_member_whose_upstream_ignores_range(
    start_server: StartServer, upstream: Upstream
) -> None:
    served = await zip_server(start_server, upstream)
    big = member_bytes(4, CRC_CHUNK + 70_000)  # its CRC needs more than one CRC chunk
    uris = [
        upstream.add("/plain/head.bin", Blob(b"head")),
        upstream.add("/plain/body.bin", Blob(big, ranges=False)),
    ]
    full = (await fetch(served, await create(served, uris))).content
    assert read_zip(full) == {"head.bin": b"head", "body.bin": big}
    middle = full.index(big[:64]) + 5 * MIB
    for query in ("", "?cold"):  # the CRCs cached by the 200 above, then none cached
        path = await create(served, [uri + query for uri in uris])
        reply = await fetch_partial(served, path, Range=f"bytes={middle}-")
        assert reply.status == 206 and reply.complete, query
        assert reply.headers["content-range"] == f"bytes {middle}-{len(full) - 1}/{len(full)}"
        assert reply.body == full[middle:], query


async def test_a_resume_deeper_than_the_skip_limit_gets_the_whole_zip(
    start_server: StartServer, upstream: Upstream, tmp_path: Path
) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as sparse:
        sparse.truncate(SKIP_LIMIT + 2 * MIB)
    uri = upstream.add("/plain/big.bin", Blob(path=big, ranges=False))
    served = await zip_server(start_server, upstream)
    path = await create(served, [uri])
    size = int((await fetch(served, path, "HEAD")).headers["content-length"])
    for method in ("HEAD", "GET"):
        status, headers = await reply_head(served, path, method, Range=f"bytes={SKIP_LIMIT + MIB}-")
        assert status == 200, method
        assert headers["content-length"] == str(size)
        assert "content-range" not in headers


# --- a CRC cache that refuses writes --------------------------------------------------------


class FailingZipState(ZipState):
    """A zip store whose CRC writes fail (a full or broken disk); records write threads."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.write_threads: list[int] = []

    def put_crcs(self, rows: Sequence[tuple[str, int, str, int]]) -> None:
        self.write_threads.append(threading.get_ident())
        raise sqlite3.OperationalError("disk I/O error (injected)")

    def record_delivered(self, manifest_id: str, start: int, stop: int, total: int) -> bool:
        self.write_threads.append(threading.get_ident())
        return super().record_delivered(manifest_id, start, stop, total)


with_failing_crc_cache = App(zip_state=FailingZipState)


async def test_a_failing_crc_cache_is_logged_and_the_server_keeps_serving(
    start_server: StartServer, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    served = await zip_server(start_server, upstream, app=with_failing_crc_cache)
    data = {f"m{n}.bin": member_bytes(n, 50_000) for n in range(4)}
    uris = [upstream.add(f"/crc/{name}", Blob(content)) for name, content in data.items()]
    path = await create(served, uris)
    # A resume inside the third member: the CRCs of the first three are computed in the
    # background (and cannot be stored), the fourth's while it is streamed.
    start = 120_000
    resumed = await fetch_partial(served, path, Range=f"bytes={start}-")
    assert resumed.status == 206 and resumed.complete
    full = await fetch(served, path)
    assert full.status_code == 200 and read_zip(full.content) == data
    assert resumed.body == full.content[start:]
    assert (await fetch(served, "/healthz")).status_code == 200
    state = served.server.services.zip_state
    assert isinstance(state, FailingZipState)
    assert state.write_threads, "the store was written"
    assert threading.get_ident() not in state.write_threads, "a write ran on the event loop"
    assert "storing the CRC-32s of " in caplog.text and uris[0] in caplog.text
    assert "disk I/O error (injected)" in caplog.text
