"""``slipstream.client`` and ``slipstream get`` against a real server on a loopback port.

Downloads go through the websocket (Initialize, type 7) and the presigned GET, so these
tests also check that the pieces fit: the type 7 checksum matches the bytes served,
Range + If-Range resume, and a changed file restarts from zero.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from slipstream.client import (
    ConnectError,
    DownloadFailed,
    FileChecksumMismatch,
    FileInvalidResumeOffset,
    FileNotFound,
    InvalidRequestBody,
    NotAuthorized,
    RateLimited,
    SlipstreamClient,
    etag_path_for,
    part_path_for,
)
from tests.helpers.server import Served, StartServer


def ws_url(served: Served) -> str:
    return f"ws://127.0.0.1:{served.port}/ws"


class Recorder:
    """An httpx client for the downloads that remembers every request and reply status."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.statuses: list[int] = []
        self.before: list[Callable[[httpx.Request], None]] = []
        """Called with each request after it is recorded, before it is sent."""

    async def _on_request(self, request: httpx.Request) -> None:
        self.requests.append(request)
        for hook in self.before:
            hook(request)

    async def _on_response(self, response: httpx.Response) -> None:
        self.statuses.append(response.status_code)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=10,
            verify=False,
            event_hooks={"request": [self._on_request], "response": [self._on_response]},
        )


async def fetch(
    served: Served,
    filename: str,
    dest: Path,
    *,
    recorder: Recorder | None = None,
    **kwargs: Any,
) -> Path:
    """One download with a fresh websocket session (and ``recorder``'s HTTP client)."""
    http = (recorder or Recorder()).client()
    async with http, SlipstreamClient(ws_url(served), served.token, http=http) as client:
        return await client.download(filename, dest, **kwargs)


async def interrupt(served: Served, filename: str, dest: Path, after: int) -> int:
    """Start downloading ``filename`` and cancel it once ``after`` bytes reached the disk;
    return the size of the ``.part`` file left behind."""
    with trio.CancelScope() as scope:

        def progress(done: int, total: int) -> None:
            if done >= after:
                scope.cancel()

        await fetch(served, filename, dest, progress=progress)
    assert scope.cancelled_caught, "the download finished before it could be interrupted"
    return part_path_for(dest).stat().st_size


async def test_full_download_gives_exact_bytes(served: Served, tmp_path: Path) -> None:
    dest = tmp_path / "random.bin"
    reports: list[tuple[int, int]] = []
    recorder = Recorder()
    path = await fetch(
        served,
        "random.bin",
        dest,
        recorder=recorder,
        progress=lambda done, total: reports.append((done, total)),
    )
    expected = served.files["random.bin"]
    assert path == dest
    assert dest.read_bytes() == expected
    assert not part_path_for(dest).exists()
    assert not etag_path_for(dest).exists()
    assert reports[0] == (0, len(expected))
    assert reports[-1] == (len(expected), len(expected))
    assert [done for done, _ in reports] == sorted(done for done, _ in reports)
    assert "range" not in recorder.requests[0].headers
    assert recorder.statuses == [200]


async def test_ticket_describes_the_file(served: Served) -> None:
    data = served.files["medium.bin"]
    async with SlipstreamClient(ws_url(served), served.token) as client:
        ticket = await client.create_download_url("medium.bin")
    assert ticket.file_size == len(data)
    assert ticket.file_checksum == hashlib.sha256(data).hexdigest()
    async with served.client() as http:
        reply = await http.get(ticket.presigned_url)
    assert reply.status_code == 200
    assert reply.content == data


async def test_interrupted_download_resumes_with_range(served: Served, tmp_path: Path) -> None:
    dest = tmp_path / "out.bin"
    expected = served.files["random.bin"]
    left = await interrupt(served, "random.bin", dest, after=1024 * 1024)
    assert 0 < left < len(expected)
    assert not dest.exists()
    etag = etag_path_for(dest).read_text().strip()
    assert etag.startswith('"')

    recorder = Recorder()
    await fetch(served, "random.bin", dest, recorder=recorder)
    assert dest.read_bytes() == expected
    (request,) = recorder.requests
    assert request.headers["range"] == f"bytes={left}-"
    assert request.headers["if-range"] == etag
    assert recorder.statuses == [206]
    assert not part_path_for(dest).exists()


class ForeignDigits(httpx.AsyncBaseTransport):
    """The real server's replies, with a 206's ``Content-Range`` digits rewritten as
    Arabic-Indic ones: the same numbers to ``int()``, but no HTTP number at all."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport(verify=False)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if response.status_code != 206:
            return response
        digits = str.maketrans(
            "0123456789", "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669"
        )
        headers = [
            (name, value.decode().translate(digits).encode())
            if name.lower() == b"content-range"
            else (name, value)
            for name, value in response.headers.raw
        ]
        return httpx.Response(
            206, headers=headers, stream=response.stream, extensions=response.extensions
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_resume_refuses_a_content_range_that_is_not_ascii_digits(
    served: Served, tmp_path: Path
) -> None:
    dest = tmp_path / "out.bin"
    left = await interrupt(served, "random.bin", dest, after=1024 * 1024)
    http = httpx.AsyncClient(timeout=10, transport=ForeignDigits())
    async with http, SlipstreamClient(ws_url(served), served.token, http=http) as client:
        with pytest.raises(DownloadFailed, match="Content-Range"):
            await client.download("random.bin", dest)
    assert part_path_for(dest).stat().st_size == left  # nothing spliced onto the part
    assert not dest.exists()


async def test_truncated_part_left_behind_resumes(served: Served, tmp_path: Path) -> None:
    """A .part cut at an arbitrary byte (a crash) resumes from exactly that byte."""
    expected = served.files["random.bin"]
    dest = tmp_path / "out.bin"
    await fetch(served, "random.bin", dest)
    async with SlipstreamClient(ws_url(served), served.token) as client:
        ticket = await client.create_download_url("random.bin")
    async with served.client() as http:
        etag = (await http.head(ticket.presigned_url)).headers["etag"]
    dest.unlink()
    part_path_for(dest).write_bytes(expected[:1_234_567])
    etag_path_for(dest).write_text(etag + "\n")

    recorder = Recorder()
    reports: list[tuple[int, int]] = []
    await fetch(
        served,
        "random.bin",
        dest,
        recorder=recorder,
        progress=lambda done, total: reports.append((done, total)),
    )
    assert dest.read_bytes() == expected
    assert recorder.requests[0].headers["range"] == "bytes=1234567-"
    assert recorder.statuses == [206]
    assert reports[0] == (1_234_567, len(expected))


async def test_complete_unverified_part_is_checked_with_its_last_byte(
    served: Served, tmp_path: Path
) -> None:
    """A .part holding every byte (killed before the rename): 303 for resume_at = size,
    so the client asks for the last byte again and verifies the whole."""
    expected = served.files["medium.bin"]
    dest = tmp_path / "medium.bin"
    async with SlipstreamClient(ws_url(served), served.token) as client:
        ticket = await client.create_download_url("medium.bin")
        with pytest.raises(FileInvalidResumeOffset):
            await client.create_download_url("medium.bin", resume_at=len(expected))
    async with served.client() as http:
        etag = (await http.head(ticket.presigned_url)).headers["etag"]
    part_path_for(dest).write_bytes(expected)
    etag_path_for(dest).write_text(etag)

    recorder = Recorder()
    await fetch(served, "medium.bin", dest, recorder=recorder)
    assert dest.read_bytes() == expected
    assert recorder.requests[0].headers["range"] == f"bytes={len(expected) - 1}-"
    assert recorder.statuses == [206]


async def test_part_without_etag_starts_over(served: Served, tmp_path: Path) -> None:
    dest = tmp_path / "out.bin"
    part_path_for(dest).write_bytes(b"garbage that must not be kept" * 100)
    recorder = Recorder()
    await fetch(served, "medium.bin", dest, recorder=recorder)
    assert dest.read_bytes() == served.files["medium.bin"]
    assert "range" not in recorder.requests[0].headers


async def test_file_changed_since_interruption_restarts_from_zero(
    served: Served, tmp_path: Path
) -> None:
    """If-Range no longer matches: the server sends 200 and the client starts over."""
    dest = tmp_path / "out.bin"
    left = await interrupt(served, "random.bin", dest, after=1024 * 1024)
    old_etag = etag_path_for(dest).read_text().strip()
    new = bytes(reversed(served.files["random.bin"]))  # same size, other bytes
    replacement = served.root / "random.bin.new"
    replacement.write_bytes(new)
    os.replace(replacement, served.root / "random.bin")

    recorder = Recorder()
    await fetch(served, "random.bin", dest, recorder=recorder)
    assert dest.read_bytes() == new
    assert recorder.requests[0].headers["range"] == f"bytes={left}-"
    assert recorder.requests[0].headers["if-range"] == old_etag
    assert recorder.statuses == [200]
    assert not etag_path_for(dest).exists()


async def test_corrupted_part_prefix_raises_checksum_mismatch(
    served: Served, tmp_path: Path
) -> None:
    expected = served.files["random.bin"]
    dest = tmp_path / "out.bin"
    left = await interrupt(served, "random.bin", dest, after=1024 * 1024)
    part = part_path_for(dest)
    with part.open("r+b") as handle:
        handle.seek(left // 2)
        byte = handle.read(1)
        handle.seek(left // 2)
        handle.write(bytes([byte[0] ^ 0x40]))

    with pytest.raises(FileChecksumMismatch) as caught:
        await fetch(served, "random.bin", dest)
    assert caught.value.expected == hashlib.sha256(expected).hexdigest()
    assert caught.value.actual != caught.value.expected
    assert caught.value.part == part
    assert not dest.exists()
    assert part.stat().st_size == len(expected)  # kept whole, for inspection

    await fetch(served, "random.bin", dest, resume=False)
    assert dest.read_bytes() == expected
    assert not part.exists()


async def test_corrupted_server_byte_raises_checksum_mismatch(
    served: Served, tmp_path: Path
) -> None:
    """Bit rot on the server: one byte flips in place, size and mtime unchanged, so the
    ETag and the cached checksum still describe the old bytes; the client must notice."""
    expected = served.files["medium.bin"]
    await fetch(served, "medium.bin", tmp_path / "first.bin")  # warms the digest cache
    stored = served.root / "medium.bin"
    before = stored.stat()
    with stored.open("r+b") as handle:
        handle.seek(1234)
        handle.write(bytes([expected[1234] ^ 0x01]))
    os.utime(stored, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert stored.stat().st_mtime_ns == before.st_mtime_ns

    dest = tmp_path / "second.bin"
    with pytest.raises(FileChecksumMismatch) as caught:
        await fetch(served, "medium.bin", dest)
    assert caught.value.expected == hashlib.sha256(expected).hexdigest()
    assert not dest.exists()
    assert part_path_for(dest).read_bytes()[1234] == expected[1234] ^ 0x01


async def test_empty_file(served: Served, tmp_path: Path) -> None:
    dest = tmp_path / "empty.txt"
    dest.write_bytes(b"old content")
    await fetch(served, "empty.txt", dest)
    assert dest.read_bytes() == b""


async def test_statuses_raise_their_errors(served: Served, tmp_path: Path) -> None:
    with pytest.raises(NotAuthorized, match="status 3 NotAuthorized"):
        async with SlipstreamClient(ws_url(served), "wrong-token"):
            pass
    with pytest.raises(NotAuthorized):
        async with SlipstreamClient(ws_url(served), served.token, "no-such-app"):
            pass
    async with SlipstreamClient(ws_url(served), served.token) as client:
        with pytest.raises(FileNotFound, match=r"missing\.bin.*status 300"):
            await client.create_download_url("missing.bin")
        with pytest.raises(FileInvalidResumeOffset, match="status 303"):
            await client.create_download_url("small.txt", resume_at=-1)
        with pytest.raises(FileNotFound):
            await client.download("missing.bin", tmp_path / "missing.bin")
        # the session survives error statuses
        ticket = await client.create_download_url("small.txt")
        assert ticket.file_size == len(served.files["small.txt"])
    assert not (tmp_path / "missing.bin").exists()


async def test_application_folder(start_server: StartServer, tmp_path: Path) -> None:
    appdir = tmp_path / "games"
    appdir.mkdir()
    (appdir / "patch.bin").write_bytes(b"patch data" * 1000)
    served = await start_server(applications={"games": appdir})
    dest = tmp_path / "patch.bin"
    async with SlipstreamClient(ws_url(served), served.token, "games") as client:
        await client.download("patch.bin", dest)
        with pytest.raises(FileNotFound):
            await client.create_download_url("small.txt")  # that one is in the root only
    assert dest.read_bytes() == b"patch data" * 1000


async def test_close_codes_raise_with_their_reason(
    start_server: StartServer, served: Served
) -> None:
    async with SlipstreamClient(ws_url(served), served.token) as client:
        with pytest.raises(InvalidRequestBody) as caught:
            await client.request({"type": 99})
        assert caught.value.code == 4302
        assert caught.value.reason == "invalid request body"
        with pytest.raises(InvalidRequestBody):  # the session is over
            await client.create_download_url("small.txt")

    limited = await start_server(ws_rate_limit=3, ws_rate_window=30.0, ws_block_seconds=30.0)
    with pytest.raises(RateLimited) as hit:
        async with SlipstreamClient(ws_url(limited), limited.token) as client:
            for _ in range(10):
                await client.create_download_url("small.txt")
    assert hit.value.code == 4201
    assert "rate limit" in hit.value.reason
    with pytest.raises(RateLimited, match=r"rate limited, \d+ seconds left"):
        async with SlipstreamClient(ws_url(limited), limited.token):
            pass


async def test_concurrent_requests_on_one_connection(served: Served) -> None:
    names = ["small.txt", "medium.bin", "data.json", "noext", "subdir/inner.txt"] * 4
    results: dict[int, int] = {}
    async with SlipstreamClient(ws_url(served), served.token) as client:

        async def one(index: int, name: str) -> None:
            results[index] = (await client.create_download_url(name)).file_size

        async with trio.open_nursery() as nursery:
            for index, name in enumerate(names):
                nursery.start_soon(one, index, name)
    assert results == {i: len(served.files[name]) for i, name in enumerate(names)}


async def test_connect_errors(served: Served) -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        free_port = sock.getsockname()[1]
    with pytest.raises(ConnectError, match="cannot connect"):
        async with SlipstreamClient(f"ws://127.0.0.1:{free_port}/ws", "t", timeout=5):
            pass
    with pytest.raises(ConnectError, match="HTTP 404"):
        async with SlipstreamClient(f"ws://127.0.0.1:{served.port}/nows", "t", timeout=5):
            pass
    with pytest.raises(ConnectError):
        async with SlipstreamClient("http://not-a-websocket-url", "t", timeout=5):
            pass


async def test_file_replaced_between_url_and_get_is_retried(served: Served, tmp_path: Path) -> None:
    """The signed route answers 412 for a file replaced after its URL was issued; the
    client asks for a fresh URL and gives the new bytes, exactly."""
    new = b"new version\n" * 1000
    recorder = Recorder()

    def replace_once(request: httpx.Request) -> None:
        if len(recorder.requests) == 1:
            (served.root / "medium.bin").write_bytes(new)

    recorder.before.append(replace_once)
    dest = tmp_path / "out.bin"
    await fetch(served, "medium.bin", dest, recorder=recorder)
    assert dest.read_bytes() == new
    assert recorder.statuses == [412, 200]


async def test_file_deleted_before_get_is_download_failed(served: Served, tmp_path: Path) -> None:
    recorder = Recorder()
    recorder.before.append(lambda request: (served.root / "medium.bin").unlink())
    dest = tmp_path / "out.bin"
    with pytest.raises(DownloadFailed, match="HTTP 404") as caught:
        await fetch(served, "medium.bin", dest, recorder=recorder)
    assert caught.value.status == 404
    assert not dest.exists()


# --- the command ---------------------------------------------------------------------


async def run_get(served: Served, cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "SLIPSTREAM_TOKEN"}
    with trio.fail_after(60):
        return await trio.run_process(
            [sys.executable, "-m", "slipstream", "get", "--server", ws_url(served), *args],
            cwd=cwd,
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


async def test_cli_get_downloads_and_resumes(served: Served, tmp_path: Path) -> None:
    expected = served.files["random.bin"]
    done = await run_get(served, tmp_path, "--token", served.token, "random.bin")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "random.bin").read_bytes() == expected
    assert b"SHA-256 verified" in done.stdout

    dest = tmp_path / "again.bin"
    left = await interrupt(served, "random.bin", dest, after=1024 * 1024)
    assert 0 < left < len(expected)
    done = await run_get(served, tmp_path, "--token", served.token, "random.bin", "-o", str(dest))
    assert done.returncode == 0, done.stderr
    assert dest.read_bytes() == expected
    assert not part_path_for(dest).exists()

    outdir = tmp_path / "dir"
    outdir.mkdir()
    done = await run_get(
        served, tmp_path, "--token", served.token, "subdir/inner.txt", "-o", str(outdir)
    )
    assert done.returncode == 0, done.stderr
    assert (outdir / "inner.txt").read_bytes() == served.files["subdir/inner.txt"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--token", "wrong", "small.txt"], "NotAuthorized"),
        (["--token", "TOKEN", "missing.bin"], "file not found: missing.bin"),
        (["--token", "TOKEN", "small.txt", "-o", "/nonexistent-dir/x"], "nonexistent-dir"),
        (["small.txt"], "no token"),
    ],
)
async def test_cli_get_fails_with_one_line(
    served: Served, tmp_path: Path, args: list[str], message: str
) -> None:
    args = [served.token if arg == "TOKEN" else arg for arg in args]
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    done = await run_get(served, cwd, *args)
    assert done.returncode != 0
    assert done.stdout == b""
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("slipstream get: ")
    assert message in lines[0]
    assert list(cwd.iterdir()) == []  # nothing written, not even a .part
