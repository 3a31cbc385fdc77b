"""SIGKILL during a burst of writes to every store, twenty times over: each time, every
store passes ``PRAGMA integrity_check``, opens (no cache is set aside, no record refused),
keeps every commit the killed process reported, and a server starts on the state dir."""

from __future__ import annotations

import os
import random
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

from slipstream.digests.store import SCHEMA as DIGESTS
from slipstream.jobs.store import SCHEMA as DOWNLOADS
from slipstream.jobs.store import JobStore
from slipstream.statefiles import examine
from slipstream.zip.state import CRC_SCHEMA, ZipState
from slipstream.zip.state import SCHEMA as ZIP_MANIFESTS
from tests.helpers.subprocess_server import CliServer

REPO = Path(__file__).resolve().parents[2]
KILLS = 20


def burst_then_kill(state: Path, run: int, delay: float) -> list[str]:
    """Run the writer, SIGKILL it ``delay`` seconds after it is ready; what it committed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.state_writer", str(state), str(run)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    out = b""
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + 30
            while b"ready\n" not in out:
                assert time.monotonic() < deadline and proc.poll() is None, proc.stderr
                if selector.select(0.1):
                    out += os.read(proc.stdout.fileno(), 65536)
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            while chunk := os.read(proc.stdout.fileno(), 65536):
                out += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()
        assert proc.stderr is not None
        errors = proc.stderr.read()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, errors
    return [line for line in out.decode().splitlines() if line != "ready"]


def test_sigkill_during_writes_never_damages_a_store(tmp_path: Path) -> None:
    root = tmp_path / "root"
    state = root / ".slipstream"
    state.mkdir(parents=True)
    (root / "sample.bin").write_bytes(os.urandom(10_000))
    rng = random.Random(16)
    committed_jobs: list[str] = []
    committed_zips: list[str] = []
    for run in range(KILLS):
        lines = burst_then_kill(state, run, rng.uniform(0.02, 0.3))
        committed_jobs += [line[4:] for line in lines if line.startswith("job ")]
        committed_zips += [line[4:] for line in lines if line.startswith("zip ")]
        for schema in (DOWNLOADS, ZIP_MANIFESTS, CRC_SCHEMA, DIGESTS):
            health = examine(state / schema.name, schema, full=True)
            assert health.problem is None, (run, health)
        jobs = JobStore(state / "downloads.sqlite3", history_limit=10**9)
        try:
            finished = {record.id for record in jobs.history()}
        finally:
            jobs.close()
        lost = [job for job in committed_jobs[-400:] if job not in finished]
        assert not lost, (run, lost[:5])
        with ZipState(state / "zip.sqlite3") as zips:
            assert all(zips.status(ident) == "live" for ident in committed_zips)
            assert all(len(zips.delivered(ident)) == 1 for ident in committed_zips[-50:])
    assert len(committed_jobs) > KILLS and len(committed_zips) > KILLS
    assert not [p for p in state.iterdir() if ".corrupt-" in p.name or ".new-" in p.name]
    with CliServer(root) as server:
        assert server.download("sample.bin").status_code == 200
        assert server.stop() == 0
