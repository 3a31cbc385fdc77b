"""``slipstream serve`` as a real subprocess: flags, tokens, state dir, signals and drain."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.subprocess_server import CliServer


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "root"
    root.mkdir()
    (root / "hello.txt").write_bytes(b"hello from the cli\n")
    (tmp_path / "outside.txt").write_bytes(b"outside\n")
    yield root


def test_generated_token_is_persisted_printed_and_reused(site: Path) -> None:
    with CliServer(site) as server:
        token_file = site / ".slipstream" / "token"
        assert token_file.read_text().strip() == server.token
        assert len(server.token) >= 16
        assert token_file.stat().st_mode & 0o077 == 0  # private to the owner
        assert server.host == "127.0.0.1"
        ok = server.download("hello.txt")
        assert ok.status_code == 200
        assert ok.content == b"hello from the cli\n"
        assert server.download("hello.txt", token="wrong").status_code == 401
        assert server.stop() == 0
    with CliServer(site) as again:
        assert again.token == server.token
        assert again.download("hello.txt").status_code == 200
        assert again.stop() == 0


def test_token_flags_are_repeatable_and_nothing_is_generated(site: Path) -> None:
    with CliServer(site, "--token", "alpha-token", "--token", "beta-token") as server:
        assert server.token == "alpha-token"
        assert server.download("hello.txt", token="alpha-token").status_code == 200
        assert server.download("hello.txt", token="beta-token").status_code == 200
        assert server.download("hello.txt", token="gamma-token").status_code == 401
        assert not (site / ".slipstream" / "token").exists()
        assert server.stop() == 0


def test_token_from_the_environment(site: Path) -> None:
    with CliServer(site, env={"SLIPSTREAM_TOKEN": "env-token-123"}) as server:
        assert server.download("hello.txt", token="env-token-123").status_code == 200
        assert server.download("hello.txt", token="other").status_code == 401
        assert not (site / ".slipstream" / "token").exists()
        with server.client() as client:
            bearer = client.get(
                "/api/download",
                params={"filepath": "hello.txt"},
                headers={"Authorization": "Bearer env-token-123"},
            )
        assert bearer.status_code == 200
        assert server.stop() == 0


def test_state_dir_flag_and_state_dir_never_served(site: Path, tmp_path: Path) -> None:
    with CliServer(site) as server:
        response = server.download(".slipstream/token")
        assert response.status_code in (403, 404)
        assert server.token.encode() not in response.content
        assert server.stop() == 0
    state = tmp_path / "elsewhere"
    with CliServer(site, "--state-dir", str(state), "--token", "t0ken-x") as server:
        assert state.is_dir()
        assert server.stop() == 0
    with CliServer(site, "--state-dir", str(state)) as server:
        assert (state / "token").read_text().strip() == server.token
        assert server.download("hello.txt").status_code == 200
        assert server.stop() == 0


def test_max_download_size_flag(site: Path) -> None:
    (site / "big.bin").write_bytes(b"b" * 5000)
    with CliServer(site, "--max-download-size", "4096") as server:
        too_big = server.download("big.bin")
        assert too_big.status_code == 413
        assert too_big.json() == {"error": "file too large, max size is 4 KB"}
        assert server.download("hello.txt").status_code == 200
        assert server.stop() == 0
    with CliServer(site, "--max-download-size", "0") as server:
        assert server.download("big.bin").content == b"b" * 5000
        assert server.stop() == 0


def test_content_digest_max_flag(site: Path) -> None:
    (site / "digits.txt").write_bytes(b"0123456789" * 10)
    with (
        CliServer(site, "--content-digest-max", "20") as server,
        server.client(headers={"Authorization": f"Bearer {server.token}"}) as client,
    ):
        small = client.get(
            "/api/download", params={"filepath": "digits.txt"}, headers={"Range": "bytes=0-9"}
        )
        large = client.get(
            "/api/download", params={"filepath": "digits.txt"}, headers={"Range": "bytes=0-49"}
        )
        assert small.status_code == large.status_code == 206
        assert "content-digest" in small.headers
        assert "content-digest" not in large.headers
        assert server.stop() == 0


def test_negative_max_download_size_is_refused(site: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "slipstream",
            "serve",
            "--root",
            str(site),
            "--port",
            "0",
            "--max-download-size",
            "-1",
        ],
        capture_output=True,
        timeout=20,
    )
    assert result.returncode != 0
    assert b"max-download-size" in result.stderr


@pytest.mark.parametrize(
    "prefix", ["files.example/pub/", "ftp://files.example/", "http://u@h/", "http://h/?k="]
)
def test_an_invalid_zip_allow_prefix_is_refused_with_one_line(site: Path, prefix: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "slipstream", "serve", "--root", str(site), "--port", "0",
         "--zip-allow-prefix", "http://fine.example/", "--zip-allow-prefix", prefix],
        capture_output=True,
        timeout=20,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("slipstream serve: invalid zip allow prefix")
    assert repr(prefix) in lines[0]
    assert result.stdout == b""


def test_help_lists_every_flag() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "slipstream", "serve", "--help"], capture_output=True, timeout=20
    )
    assert result.returncode == 0
    for flag in (
        "--root",
        "--host",
        "--port",
        "--state-dir",
        "--token",
        "--max-download-size",
        "--content-digest-max",
        "--log-level",
    ):
        assert flag.encode() in result.stdout


def test_access_log_hides_tokens_and_log_level_silences_it(site: Path) -> None:
    with CliServer(site, "--token", "sekrit-token-1") as server:
        assert server.download("hello.txt", token="sekrit-token-1").status_code == 200
        assert server.stop() == 0
        log = server.log
    assert "hello.txt" in log
    assert "sekrit-token-1" not in log
    with CliServer(site, "--token", "sekrit-token-1", "--log-level", "warning") as server:
        assert server.download("hello.txt", token="sekrit-token-1").status_code == 200
        assert server.stop() == 0
        assert "hello.txt" not in server.log


def test_host_flag_is_used(site: Path) -> None:
    with CliServer(site, "--host", "127.0.0.1", "--token", "t") as server:
        assert server.url == f"http://127.0.0.1:{server.port}/"
        with server.client() as client:
            assert client.get("/healthz").json() == {"status": "ok"}
        assert server.stop() == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_server_with_exit_code_0(site: Path, signum: int) -> None:
    with CliServer(site, "--token", "t") as server:
        with server.client() as client:
            assert client.get("/healthz").status_code == 200
        started = time.monotonic()
        assert server.stop(signum) == 0
        assert time.monotonic() - started < 5
        assert "Traceback" not in server.log
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_drains_a_slow_download(site: Path, signum: int) -> None:
    data = os.urandom(24 * 1024 * 1024)
    (site / "large.bin").write_bytes(data)
    with CliServer(site, "--token", "t", "--max-download-size", "0") as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        try:
            sock.sendall(
                b"GET /api/download?filepath=large.bin&token=t HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            received = bytearray(sock.recv(65536))
            assert received.startswith(b"HTTP/1.1 200 ")
            server.proc.send_signal(signum)
            server.wait_for_log("draining")  # we are still mid-body
            assert server.proc.poll() is None
            while chunk := sock.recv(256 * 1024):
                received += chunk
                time.sleep(0.002)
        finally:
            sock.close()
        head, _, body = bytes(received).partition(b"\r\n\r\n")
        assert f"content-length: {len(data)}".encode() in head.lower()
        assert len(body) == len(data)
        assert body == data
        assert server.wait() == 0
