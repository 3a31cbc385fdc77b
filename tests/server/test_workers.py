"""``slipstream serve --workers N``: several processes on one port, a supervisor that
restarts a dead worker and drains them all on SIGTERM/SIGINT, one token for all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from slipstream.server.cli_flags import build_parser
from slipstream.server.workers import BACKOFF_MAX, BACKOFF_START, backoff
from tests.helpers.subprocess_server import CliServer
from tests.helpers.workers import fresh_get, until_workers, wait_for, worker_of, workers_server

SERVE = [sys.executable, "-m", "slipstream", "serve"]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    (root / "hello.txt").write_bytes(b"hello from a worker\n")
    return root


def _pid(worker: str) -> int:
    return int(worker.split("-")[1])


def test_workers_flag_takes_a_count_or_auto() -> None:
    parse = build_parser().parse_args
    assert parse(["serve"]).workers == 1
    assert parse(["serve", "--workers", "3"]).workers == 3
    assert parse(["serve", "--workers", "auto"]).workers == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", "\u0663", "1025", ""])
def test_bad_workers_value_is_refused(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["serve", "--workers", value])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--workers" in err and len(err.strip().splitlines()) == 1


def test_bad_workers_value_stops_the_command_before_anything_is_made(site: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "slipstream", "serve", "--root", str(site), "--workers", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "--workers" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (site / ".slipstream").exists()


def test_backoff_doubles_up_to_its_cap() -> None:
    assert backoff(1) == BACKOFF_START
    assert backoff(2) == 2 * BACKOFF_START
    assert backoff(3) == 4 * BACKOFF_START
    assert backoff(100) == BACKOFF_MAX


def test_several_workers_answer_on_one_port_with_one_token(site: Path) -> None:
    with workers_server(site, 3) as server:
        assert "with 3 workers" in server.text
        token = (site / ".slipstream" / "token").read_text().strip()
        assert token == server.token  # created once, by the supervisor, read by all

        def ask() -> str:
            head, body = fresh_get(server.port, f"/api/download?filepath=hello.txt&token={token}")
            assert head.startswith(b"HTTP/1.1 200 "), head
            assert body == b"hello from a worker\n"
            return worker_of(head)

        seen = until_workers(3, ask)
        pids = {_pid(worker) for worker in seen}
        assert len(pids) == 3 and server.proc.pid not in pids
        assert {worker.split("-")[0] for worker in seen} == {"0", "1", "2"}
        assert server.stop() == 0
        assert "Traceback" not in server.log


def test_without_test_mode_no_worker_is_revealed(site: Path) -> None:
    with CliServer(site, "--workers", "2") as server:
        for _ in range(6):
            head, _ = fresh_get(server.port, "/healthz")
            assert b"x-slipstream-worker" not in head.lower()
        assert server.stop() == 0


def test_a_killed_worker_is_restarted_and_no_request_fails(site: Path) -> None:
    with workers_server(site, 2) as server:

        def ask() -> str:
            head, _ = fresh_get(server.port, "/healthz")
            assert head.startswith(b"HTTP/1.1 200 "), head
            return worker_of(head)

        seen = until_workers(2, ask)
        victim = next(w for w in seen if w.startswith("1-"))
        os.kill(_pid(victim), signal.SIGKILL)
        # Its slot's queue is kept by the supervisor: connections wait for the new
        # worker instead of being refused, so every request is answered.
        answered = {ask() for _ in range(10)}

        def restarted() -> bool:
            answered.add(ask())
            return any(w.startswith("1-") and w != victim for w in answered)

        wait_for(restarted, what="a new worker in slot 1")
        assert victim not in answered
        server.wait_for_log(f"worker 1 (pid {_pid(victim)}) was killed by SIGKILL")
        assert server.stop() == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_drains_every_worker_and_exits_0(site: Path, signum: int) -> None:
    data = os.urandom(16 * 1024 * 1024)
    (site / "large.bin").write_bytes(data)
    with workers_server(site, 2, "--max-download-size", "0") as server:
        request = (
            f"GET /api/download?filepath=large.bin&token={server.token} HTTP/1.1\r\nHost: x\r\n\r\n"
        ).encode()
        streams: dict[str, tuple[socket.socket, bytearray]] = {}
        spare: list[socket.socket] = []
        try:
            for _ in range(40):  # one slow download on each worker
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
                sock.sendall(request)
                first = bytearray(sock.recv(65536))
                worker = worker_of(bytes(first).partition(b"\r\n\r\n")[0])
                if worker in streams:
                    spare.append(sock)
                    continue
                streams[worker] = (sock, first)
                if len(streams) == 2:
                    break
            assert len(streams) == 2
            for sock in spare:
                sock.close()
            server.proc.send_signal(signum)
            wait_for(lambda: server.log.count("draining") >= 3, what="every worker draining")
            assert server.proc.poll() is None
            for sock, received in streams.values():
                while chunk := sock.recv(1024 * 1024):
                    received += chunk
                head, _, body = bytes(received).partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200 ")
                assert body == data
        finally:
            for sock, _ in streams.values():
                sock.close()
        assert server.wait() == 0
        assert "Traceback" not in server.log
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()


def test_port_in_use_is_one_line_and_status_1(site: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*SERVE, "--root", str(site), "--port", str(port), "--workers", "2"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"slipstream serve: cannot listen on 127.0.0.1:{port}: Address already in use"
    )


def test_a_damaged_record_store_stops_the_start_before_any_worker(site: Path) -> None:
    state = site / ".slipstream"
    state.mkdir(mode=0o700)
    (state / "downloads.sqlite3").write_bytes(b"not a database at all, not even close")
    done = subprocess.run(
        [*SERVE, "--root", str(site), "--port", "0", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "downloads.sqlite3 is not a SQLite database" in lines[0]


def test_metrics_add_up_over_the_workers(site: Path) -> None:
    """``/metrics`` of any worker counts the requests every worker answered."""
    from prometheus_client.parser import text_string_to_metric_families

    def downloads(text: str) -> float:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if (
                    sample.name == "slipstream_http_requests_total"
                    and sample.labels.get("route") == "/api/download"
                ):
                    return float(sample.value)
        return 0.0

    with workers_server(site, 2, "--metrics") as server:
        auth = {"Authorization": f"Bearer {server.token}"}

        def ask() -> str:
            head, _ = fresh_get(server.port, "/api/download?filepath=hello.txt", auth)
            assert head.startswith(b"HTTP/1.1 200 "), head
            return worker_of(head)

        seen = until_workers(2, ask)
        asked = sum(seen.values())
        scrapes = [fresh_get(server.port, "/metrics", auth) for _ in range(6)]
        assert len({worker_of(head) for head, _ in scrapes}) >= 1
        for head, body in scrapes:
            assert head.startswith(b"HTTP/1.1 200 "), head
            assert downloads(body.decode()) == asked  # whichever worker was scraped
        assert server.stop() == 0
        assert "Traceback" not in server.log
