"""A directory zip is sent at once: cold and warm give the same bytes, readers accept both,
a range needs no CRC it does not send, and a file that changes cuts the reply."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import socket
import subprocess
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slipstream.zip import localcrc
from tests.helpers.server import Served, running_server

ZIP = "/api/zip"
BIG = 3 * localcrc.SMALL_FILE + 17


def make_tree(base: Path, sizes: list[int], seed: int = 0) -> dict[str, bytes]:
    """Files of ``sizes`` under ``base`` (some in a subdirectory); name -> bytes."""
    out: dict[str, bytes] = {}
    for i, size in enumerate(sizes):
        name = f"{'sub/' if i % 3 == 2 else ''}f{i:03}.bin"
        data = hashlib.shake_256(f"{seed}-{i}".encode()).digest(size) if size else b""
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_bytes(data)
        out[name] = data
    return out


async def get(served: Served, path: str, **headers: str) -> httpx.Response:
    async with served.client() as client:
        return await client.get(ZIP, params={"path": path}, headers={**served.auth, **headers})


def members(body: bytes) -> dict[str, bytes]:
    archive = zipfile.ZipFile(io.BytesIO(body))
    assert archive.testzip() is None
    return {info.filename: archive.read(info) for info in archive.infolist()}


def crcs_cached(served: Served, base: Path) -> list[int | None]:
    stats = [p.stat() for p in sorted(base.rglob("*")) if p.is_file()]
    versions = [(s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns) for s in stats]
    return served.server.services.digests.crc32s(versions)


async def test_cold_and_warm_zips_are_the_same_bytes(served: Served) -> None:
    base = served.root / "mixed"
    files = make_tree(base, [0, 1, 100, localcrc.SMALL_FILE, localcrc.SMALL_FILE + 1, BIG, 7])
    assert crcs_cached(served, base).count(None) == 7
    cold = await get(served, "mixed")
    assert cold.status_code == 200
    assert crcs_cached(served, base).count(None) == 1  # stored; an empty file needs none
    warm = await get(served, "mixed")
    assert warm.content == cold.content
    assert warm.headers["etag"] == cold.headers["etag"]
    assert warm.headers["content-length"] == str(len(cold.content))
    assert members(cold.content) == files


@pytest.mark.parametrize(
    "command",
    [["unzip", "-tq"], ["7z", "t"], ["bsdtar", "-tf"]],
    ids=["unzip", "7z", "bsdtar"],
)
async def test_zip_readers_accept_cold_and_warm(
    served: Served, tmp_path: Path, command: list[str]
) -> None:
    make_tree(served.root / "tools", [5, BIG, 0, 2 * BIG, 300])
    for kind in ("cold", "warm"):
        body = (await get(served, "tools")).content
        path = tmp_path / f"{kind}.zip"
        path.write_bytes(body)
        run = subprocess.run([*command, str(path)], capture_output=True, timeout=60)
        assert run.returncode == 0, (kind, run.stdout, run.stderr)


async def test_several_ranges_get_the_whole_zip(served: Served) -> None:
    make_tree(served.root / "multi", [10, 20])
    whole = await get(served, "multi")
    reply = await get(served, "multi", Range="bytes=0-3,10-20")
    assert reply.status_code == 200 and reply.content == whole.content


_examples = iter(range(1_000_000))


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sizes=st.lists(
        st.sampled_from([0, 1, 2, 500, localcrc.SMALL_FILE, BIG]), min_size=1, max_size=6
    ),
    where=st.tuples(st.floats(0, 1), st.floats(0, 1)),
)
async def test_a_cold_range_is_a_slice_of_the_warm_zip(
    tmp_path: Path, sizes: list[int], where: tuple[float, float]
) -> None:
    """A new tree and server per example: its files are new versions, so each starts cold."""
    example = next(_examples)
    base = tmp_path / f"site{example}"
    files = make_tree(base / "root" / "tree", sizes, seed=example)
    async with running_server(base, state_dir=base / "state") as served:
        head = await get(served, "tree", Range="bytes=0-0")
        size = int(head.headers["content-range"].split("/")[1])
        first, last = sorted(int(w * (size - 1)) for w in where)
        cold = await get(served, "tree", Range=f"bytes={first}-{last}")
        assert cold.status_code == 206
        warm = await get(served, "tree")
    assert cold.content == warm.content[first : last + 1]
    assert members(warm.content) == files


@pytest.fixture
def blocked_crcs(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """CRC computations from disk wait (in their worker threads) until the event is set."""
    release = threading.Event()
    real = localcrc.crc_range

    def waiting(*args: object) -> int:
        release.wait(30)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(localcrc, "crc_range", waiting)
    yield release
    release.set()


async def test_a_range_deep_into_a_cold_gigabyte_answers_without_its_crcs(
    served: Served, blocked_crcs: threading.Event
) -> None:
    base = served.root / "sparse"
    base.mkdir()
    for i in range(4):
        with (base / f"part{i}.bin").open("wb") as f:
            f.truncate(256 * 1024 * 1024)  # sparse: a gigabyte of zeros, no disk
    head = await get(served, "sparse", Range="bytes=0-0")
    total = int(head.headers["content-range"].rsplit("/", 1)[1])
    at = int(total * 0.9)
    with trio.fail_after(10):  # every CRC is blocked: only an answer that needs none comes
        reply = await get(served, "sparse", Range=f"bytes={at}-{at + 99}")
    assert reply.status_code == 206 and reply.content == b"\0" * 100
    blocked_crcs.set()


async def test_a_range_that_needs_crcs_first_waits_for_them(served: Served) -> None:
    files = make_tree(served.root / "tail", [BIG, 10, BIG])
    whole = (await get(served, "tail", Range="bytes=-22")).content  # the end record
    assert len(whole) == 22
    full = await get(served, "tail")
    assert full.content[-22:] == whole
    assert members(full.content) == files


def _read_some(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            break
        data += chunk
    return data


async def test_a_file_changed_mid_stream_cuts_the_reply_before_its_descriptor(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    base = served.root / "changing"
    big = 32 * 1024 * 1024  # more than the socket buffers hold
    files = make_tree(base, [100, big, 100])
    assert list(files) == ["f000.bin", "f001.bin", "sub/f002.bin"]
    sock = socket.create_connection(("127.0.0.1", served.port))
    try:
        sock.settimeout(20)
        token = served.auth["Authorization"]
        request = f"GET {ZIP}?path=changing HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n\r\n"
        await trio.to_thread.run_sync(sock.sendall, request.encode())
        first = await trio.to_thread.run_sync(_read_some, sock, 1 << 20)
        head, _, body = first.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        length = int(
            next(
                line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
            ).split(b":")[1]
        )
        st_ = (base / "f001.bin").stat()
        os.utime(base / "f001.bin", ns=(st_.st_atime_ns, st_.st_mtime_ns + 1_000_000_000))

        def rest() -> bytes:
            chunks = [body]
            while chunk := sock.recv(1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)

        received = await trio.to_thread.run_sync(rest)
    finally:
        sock.close()
    assert len(received) < length
    cut = [r.getMessage() for r in caplog.records if "directory zip reply cut" in r.getMessage()]
    assert cut and "f001.bin changed since the zip was planned" in cut[0]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # a cut, not a crash
    second_data = received.index(files["f001.bin"][:64])
    # Cut right after the changed member's data: no descriptor, nothing of the next member.
    assert len(received) <= second_data + big
    changed = await get(served, "changing")
    assert members(changed.content) == files  # listed again: a new ETag, a whole zip


async def test_a_file_named_as_a_folder_ignoring_case_is_zipped_too(served: Served) -> None:
    base = served.root / "cases"
    (base / "a").mkdir(parents=True)
    (base / "a" / "b").write_bytes(b"in the folder")
    (base / "A").write_bytes(b"the file")
    reply = await get(served, "cases")
    assert reply.status_code == 200
    assert members(reply.content) == {"A": b"the file", "a/b": b"in the folder"}
