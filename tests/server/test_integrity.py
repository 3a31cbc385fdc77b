"""Integrity headers from the digest cache on file replies, and ``slipstream digest``."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio

from slipstream.segments import Segment
from slipstream.server import integrity
from tests.helpers.reference import reference_crc
from tests.helpers.server import Served, StartServer


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_reference_crcs_match_published_check_values() -> None:
    assert reference_crc("crc64xz", b"123456789") == 0x995DC9BBDF1939FA
    assert reference_crc("crc32c", b"123456789") == 0xE3069283


async def test_small_file_reply_carries_every_integrity_header(served: Served) -> None:
    data = served.files["medium.bin"]
    async with served.client() as client:
        for method in ("GET", "HEAD"):
            reply = await client.request(
                method, "/api/download", params={"filepath": "medium.bin"}, headers=served.auth
            )
            assert reply.status_code == 200
            assert reply.headers["repr-digest"] == f"sha-256=:{b64(hashlib.sha256(data).digest())}:"
            crc64 = reference_crc("crc64xz", data)
            assert reply.headers["x-oss-hash-crc64ecma"] == str(crc64)
            crc32c = reference_crc("crc32c", data).to_bytes(4, "big")
            assert reply.headers["x-goog-hash"] == f"crc32c={b64(crc32c)}"


async def test_range_reply_gets_content_digest_of_its_bytes(served: Served) -> None:
    data = served.files["medium.bin"]
    async with served.client() as client:
        reply = await client.get(
            "/api/download",
            params={"filepath": "medium.bin"},
            headers={**served.auth, "Range": "bytes=1000-4999"},
        )
    assert reply.status_code == 206
    assert reply.content == data[1000:5000]
    expected = b64(hashlib.sha256(data[1000:5000]).digest())
    assert reply.headers["content-digest"] == f"sha-256=:{expected}:"
    assert reply.headers["repr-digest"] == f"sha-256=:{b64(hashlib.sha256(data).digest())}:"


async def test_large_cold_file_is_served_at_once_and_hashed_in_the_background(
    served: Served,
) -> None:
    data = served.files["random.bin"]  # over the inline-hash limit
    async with served.client() as client:
        first = await client.get(
            "/api/download", params={"filepath": "random.bin"}, headers=served.auth
        )
        assert first.status_code == 200 and first.content == data
        assert "repr-digest" not in first.headers
        expected = f"sha-256=:{b64(hashlib.sha256(data).digest())}:"
        with trio.fail_after(20):
            while True:
                later = await client.head(
                    "/api/download", params={"filepath": "random.bin"}, headers=served.auth
                )
                if "repr-digest" in later.headers:
                    break
                await trio.sleep(0.05)
        assert later.headers["repr-digest"] == expected


async def test_changed_file_gets_fresh_digests(served: Served) -> None:
    path = served.root / "small.txt"
    async with served.client() as client:
        before = await client.head(
            "/api/download", params={"filepath": "small.txt"}, headers=served.auth
        )
        new = b"rewritten contents\n" * 3
        path.write_bytes(new)
        after = await client.head(
            "/api/download", params={"filepath": "small.txt"}, headers=served.auth
        )
    assert before.headers["repr-digest"] != after.headers["repr-digest"]
    assert after.headers["repr-digest"] == f"sha-256=:{b64(hashlib.sha256(new).digest())}:"


async def test_memory_layer_replies_without_integrity_headers(start_server: StartServer) -> None:
    served = await start_server()
    served.server.services.storages.get("MemFs").put("m.txt", b"in memory\n")  # type: ignore[attr-defined]
    async with served.client() as client:
        reply = await client.get(
            "/api/download", params={"filepath": "m.txt", "fstype": "MemFs"}, headers=served.auth
        )
    assert reply.status_code == 200 and reply.content == b"in memory\n"
    assert "repr-digest" not in reply.headers


def test_digest_command_prints_every_value(tmp_path: Path) -> None:
    data = bytes(range(256)) * 1000
    target = tmp_path / "f.bin"
    target.write_bytes(data)
    out = subprocess.run(
        [sys.executable, "-m", "slipstream", "digest", "--json", str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    values = json.loads(out.stdout)
    assert values["size"] == len(data)
    assert values["sha256"] == hashlib.sha256(data).hexdigest()
    assert values["sha1"] == hashlib.sha1(data).hexdigest()
    assert int(values["crc64xz"], 16) == reference_crc("crc64xz", data)


def test_digest_command_reports_a_missing_file_in_one_line(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "slipstream", "digest", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0
    assert "No such file" in out.stderr


def test_digest_command_refuses_a_fifo_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    regular = tmp_path / "f.txt"
    regular.write_bytes(b"still hashed\n")
    out = subprocess.run(
        [sys.executable, "-m", "slipstream", "digest", str(fifo), str(regular)],
        capture_output=True,
        text=True,
        timeout=15,  # the bug was a hang in open(): no writer ever comes
    )
    assert out.returncode == 1
    assert out.stderr.splitlines() == [f"slipstream digest: {fifo}: not a regular file"]
    assert hashlib.sha256(b"still hashed\n").hexdigest() in out.stdout


async def test_multipart_reply_gets_content_digest_of_its_whole_body(served: Served) -> None:
    async with served.client() as client:
        reply = await client.get(
            "/api/download",
            params={"filepath": "medium.bin"},
            headers={**served.auth, "Range": "bytes=0-9,100-199,-50"},
        )
    assert reply.status_code == 206
    assert reply.headers["content-type"].startswith("multipart/byteranges")
    expected = b64(hashlib.sha256(reply.content).digest())
    assert reply.headers["content-digest"] == f"sha-256=:{expected}:"


async def test_memory_layer_range_gets_content_digest(start_server: StartServer) -> None:
    served = await start_server()
    served.server.services.storages.get("MemFs").put("m.txt", b"0123456789" * 10)  # type: ignore[attr-defined]
    async with served.client() as client:
        reply = await client.get(
            "/api/download",
            params={"filepath": "m.txt", "fstype": "MemFs"},
            headers={**served.auth, "Range": "bytes=5-14"},
        )
    assert reply.status_code == 206 and reply.content == b"5678901234"
    expected = b64(hashlib.sha256(b"5678901234").digest())
    assert reply.headers["content-digest"] == f"sha-256=:{expected}:"


async def test_content_digest_limit_is_configurable(start_server: StartServer) -> None:
    limited = await start_server(content_digest_max=1000)
    unlimited = await start_server(content_digest_max=0)
    for served, present in ((limited, False), (unlimited, True)):
        async with served.client() as client:
            reply = await client.get(
                "/api/download",
                params={"filepath": "random.bin"},
                headers={**served.auth, "Range": "bytes=10-"},
            )
        assert reply.status_code == 206
        assert ("content-digest" in reply.headers) is present
    data = unlimited.files["random.bin"]
    assert reply.headers["content-digest"] == f"sha-256=:{b64(hashlib.sha256(data[10:]).digest())}:"


async def test_head_of_a_range_hashes_nothing_and_sends_no_content_digest(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = served.files["random.bin"]  # over 1 MiB
    assert len(data) > 1024 * 1024
    calls: list[int] = []
    original = integrity._hash_segments

    def counting(segments: Sequence[Segment]) -> bytes | None:
        calls.append(sum(segment.length for segment in segments))
        return original(segments)

    monkeypatch.setattr(integrity, "_hash_segments", counting)
    query = {"filepath": "random.bin"}
    async with served.client(headers=served.auth) as client:
        for ranges in ("bytes=100-2200000", "bytes=0-9,100-199,-50"):
            head = await client.head("/api/download", params=query, headers={"Range": ranges})
            assert head.status_code == 206
            assert "content-digest" not in head.headers
        assert head.headers["content-type"].startswith("multipart/byteranges")
        assert calls == []
        single = await client.head(
            "/api/download", params=query, headers={"Range": "bytes=100-2200000"}
        )
        assert single.headers["content-range"] == f"bytes 100-2200000/{len(data)}"
        assert single.headers["content-length"] == str(2200000 - 100 + 1)
        got = await client.get(
            "/api/download", params=query, headers={"Range": "bytes=100-2200000"}
        )
    assert got.status_code == 206 and got.content == data[100:2200001]
    assert calls == [len(got.content)]  # the counter sees what a GET hashes
    expected = b64(hashlib.sha256(data[100:2200001]).digest())
    assert got.headers["content-digest"] == f"sha-256=:{expected}:"
