"""Run every benchmark script in ``bench/`` in sequence (what ``make bench`` calls).

A benchmark is any ``bench/*.py`` whose name does not start with ``_`` (helpers)
other than this file.  Each runs in its own process with this interpreter; the exit
status is 1 if any of them exited non-zero (a missed target or an error), else 0.

Usage: ``python bench/run_all.py [NAME ...]`` (e.g. ``throughput fetch``) to run a subset.
The scripts: throughput, small_requests, segmap, hashing, fetch (remote downloads),
zip (zip-as-a-service), dirzip (directory zips, ``/api/zip``).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def discover() -> list[Path]:
    """The benchmark scripts, by name."""
    here = Path(__file__).resolve()
    return sorted(
        p for p in BENCH_DIR.glob("*.py") if not p.name.startswith("_") and p.resolve() != here
    )


ARGS: dict[str, list[str]] = {"throughput": ["--workers", "2"]}
"""Arguments of a script in the gate: the throughput cases also run with two workers
beside nginx ``worker_processes 2``, in the same run as the one-worker pairs."""


def run_one(script: Path) -> int:
    """Run one script to completion; on interruption give it time to stop its servers."""
    command = [sys.executable, str(script), *ARGS.get(script.stem, [])]
    proc = subprocess.Popen(command, cwd=BENCH_DIR.parent)
    try:
        return proc.wait()
    except BaseException:
        # Ctrl-C reached the child too (same process group); a SIGTERM to us did not.
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; non-zero if any failed."""
    names = list(sys.argv[1:] if argv is None else argv)
    scripts = discover()
    if names:
        unknown = sorted(set(names) - {p.stem for p in scripts})
        if unknown:
            print(f"run_all: no benchmark named {', '.join(unknown)}", file=sys.stderr)
            return 2
        scripts = [p for p in scripts if p.stem in names]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    statuses: dict[str, int] = {}
    for script in scripts:
        print(f"=== {script.stem} ===", flush=True)
        started = time.monotonic()
        statuses[script.stem] = run_one(script)
        elapsed = time.monotonic() - started
        print(f"=== {script.stem}: exit {statuses[script.stem]} ({elapsed:.0f} s) ===", flush=True)
    failed = [name for name, status in statuses.items() if status != 0]
    print("bench: " + ("all passed" if not failed else f"FAILED: {', '.join(failed)}"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
