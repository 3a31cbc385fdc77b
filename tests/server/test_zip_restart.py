"""A zip stream survives its server: SIGKILL, restart on the same state dir, same zip.

The server runs as a real subprocess (``python -m slipstream serve``); the upstream runs in
the test process, so its port (and so every URI of the manifest) stays the same across
the restart.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import httpx
import trio

from tests.helpers.subprocess_server import Running
from tests.helpers.subprocess_server import serve as serve_subprocess
from tests.helpers.upstream import Blob, Upstream
from tests.helpers.zip import member_bytes, read_zip


def serve(root: Path, log: Path, prefix: str) -> AbstractAsyncContextManager[Running]:
    """The server over ``root`` with the zip allow list ``[prefix]``."""
    return serve_subprocess(root, log, "--zip-allow-prefix", prefix)


async def create(server: Running, uris: list[str]) -> str:
    """POST the URIs (JSON); the stream path."""
    async with server.client() as client:
        reply = await client.post("/download", json={"fs_uri_list": uris})
    assert reply.status_code == 303, reply.text
    return reply.headers["location"]


async def get(server: Running, path: str, method: str = "GET", **headers: str) -> httpx.Response:
    async with server.client() as client:
        return await client.request(method, path, headers=headers)


def delivered(root: Path, path: str) -> list[list[int]]:
    """The delivered intervals of stream ``path`` in the server's state (read-only)."""
    database = root / ".slipstream" / "zip.sqlite3"
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        row = db.execute(
            "SELECT delivered FROM manifests WHERE id = ?", (path.removeprefix("/stream/"),)
        ).fetchone()
    intervals: list[list[int]] = json.loads(row[0]) if row else []
    return intervals


async def test_a_sigkilled_server_still_serves_the_stream_after_a_restart(
    upstream: Upstream, tmp_path: Path
) -> None:
    members = {f"f{n}.bin": member_bytes(n, 20_000 * n + 7) for n in range(4)}
    uris = [upstream.add(f"/r/{name}", Blob(data)) for name, data in members.items()]
    root = tmp_path / "root"
    root.mkdir()
    async with serve(root, tmp_path / "first.log", upstream.url("/")) as first:
        full = await get(first, await create(first, uris))  # the reference (its own stream)
        assert full.status_code == 200 and read_zip(full.content) == members
        size = len(full.content)
        path = await create(first, uris)
        head = await get(first, path, "HEAD")
        assert head.headers["etag"] == full.headers["etag"]
        # Deliver all but the last 100 bytes, in two ranges.
        for start, stop in [(0, size // 2), (size // 2, size - 100)]:
            part = await get(first, path, Range=f"bytes={start}-{stop - 1}")
            assert part.status_code == 206 and part.content == full.content[start:stop]
        # The server records a delivery just after its last byte left: wait for the record
        # (else the kill may come first, and the test would race).
        with trio.fail_after(5):
            while delivered(root, path) != [[0, size - 100]]:
                await trio.sleep(0.02)
        assert await first.stop(signal.SIGKILL) == -signal.SIGKILL

    async with serve(root, tmp_path / "second.log", upstream.url("/")) as second:
        head = await get(second, path, "HEAD")
        assert head.status_code == 200
        assert head.headers["etag"] == full.headers["etag"]
        assert head.headers["last-modified"] == full.headers["last-modified"]
        assert int(head.headers["content-length"]) == size
        middle = await get(second, path, Range="bytes=1000-2999", If_Range=full.headers["etag"])
        assert middle.status_code == 206 and middle.content == full.content[1000:3000]
        # The coverage delivered before the kill was kept: the last 100 bytes complete it.
        tail = await get(second, path, Range="bytes=-100")
        assert tail.status_code == 206 and tail.content == full.content[-100:]
        with trio.fail_after(5):
            while (await get(second, path, "HEAD")).status_code != 404:
                await trio.sleep(0.02)


async def test_a_restart_serves_a_whole_untouched_stream(
    upstream: Upstream, tmp_path: Path
) -> None:
    data = member_bytes(1, 50_000)
    uris = [upstream.add("/r/only.bin", Blob(data)), upstream.add("/r/two.txt", Blob(b"two"))]
    root = tmp_path / "root"
    root.mkdir()
    async with serve(root, tmp_path / "first.log", upstream.url("/")) as first:
        path = await create(first, uris)
        etag = (await get(first, path, "HEAD")).headers["etag"]
        assert await first.stop(signal.SIGKILL) == -signal.SIGKILL
    async with serve(root, tmp_path / "second.log", upstream.url("/")) as second:
        full = await get(second, path)
        assert full.status_code == 200 and full.headers["etag"] == etag
        assert read_zip(full.content) == {"only.bin": data, "two.txt": b"two"}
