"""Several server processes sharing one metrics directory (prometheus_client's
multiprocess mode, as ``--workers`` will run them): a scrape of any one adds them all up."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from slipstream.server.metrics import reset_multiprocess_dir, worker_exited
from tests.helpers.metrics import Samples, parse, value
from tests.helpers.subprocess_server import CliServer

TOKEN = "metrics-token"
HEALTHZ = {"route": "/healthz", "status": "200"}


def scrape(server: CliServer) -> Samples:
    with server.client() as client:
        response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    return parse(response.text)


def settled(server: CliServer, name: str, expected: float) -> Samples:
    """Scrape until gauge ``name`` reads ``expected`` (a server notices a closed client
    connection a moment after the client closed it)."""
    deadline = time.monotonic() + 5
    while value(samples := scrape(server), name) != expected:
        assert time.monotonic() < deadline, (name, value(samples, name))
        time.sleep(0.01)
    return samples


def healthz(server: CliServer, times: int) -> None:
    with server.client() as client:
        for _ in range(times):
            assert client.get("/healthz").status_code == 200


def test_two_processes_add_up_and_a_dead_one_keeps_its_counts(tmp_path: Path) -> None:
    shared = tmp_path / "metrics"
    (shared).mkdir()
    (shared / "counter_999999.db").write_bytes(b"left by an earlier run")
    reset_multiprocess_dir(shared)
    assert list(shared.iterdir()) == []
    env = {"PROMETHEUS_MULTIPROC_DIR": str(shared)}
    flags = ("--metrics", "--token", TOKEN, "--no-access-log")
    with (
        CliServer(tmp_path / "one", *flags, env=env) as one,
        CliServer(tmp_path / "two", *flags, env=env) as two,
    ):
        healthz(one, 3)
        healthz(two, 2)
        from_one, from_two = scrape(one), scrape(two)
        for samples in (from_one, from_two):
            assert value(samples, "slipstream_http_requests_total", **HEALTHZ) == 5
        with one.client() as held:  # a connection kept open in the first process
            assert held.get("/healthz").status_code == 200
            # it and the scrape's own connection are all that is open in both processes
            settled(two, "slipstream_open_connections", 2)
            pid = one.proc.pid
            one.kill()  # SIGKILL: its gauges stay in its file until the supervisor says
            settled(two, "slipstream_open_connections", 2)
            worker_exited(pid, shared)
        after = settled(two, "slipstream_open_connections", 1)  # the dead one's gauges went
        assert value(after, "slipstream_http_requests_total", **HEALTHZ) == 6  # counters stay


def test_a_missing_metrics_dir_is_one_line_and_status_2(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    env = {k: v for k, v in os.environ.items() if k != "SLIPSTREAM_TOKEN"}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(missing)
    command = [sys.executable, "-m", "slipstream", "serve", "--port", "0", "--metrics"]
    done = subprocess.run(
        [*command, "--root", str(tmp_path / "root")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"slipstream serve: metrics dir {missing} is not a directory\n"
