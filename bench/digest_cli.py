"""``slipstream digest`` of a large cached file against ``openssl dgst -sha256``.

Both are whole commands, process start included, on the same file from the page cache
(read once before the rounds).  Rounds alternate the two (round-robin), so load from
elsewhere on the machine hits both alike; medians are compared.  ``slipstream digest``
computes every checksum (CRC-32, CRC-32C, CRC-64/XZ, CRC-64/NVME, SHA-1, SHA-256,
XXH3-128) in one read; openssl computes SHA-256 only, the costliest of them.  The two
SHA-256 values are checked to agree first.

Target (exit status 1 when missed): slipstream's rate >= 0.6x openssl's.
Writes ``bench/results/digest_cli.json`` and ``digest_cli.png``.

Usage: ``python bench/digest_cli.py [--size MiB] [--rounds N] [--file PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from _common import bar_chart, median, write_results

TARGET = 0.6
SLIPSTREAM = [sys.executable, "-m", "slipstream", "digest", "--json"]


def make_file(directory: Path, size: int) -> Path:
    """``size`` random bytes in ``directory/digest-bench.bin``, written in 64 MiB blocks."""
    path = directory / "digest-bench.bin"
    with path.open("wb") as out:
        left = size
        while left:
            block = min(left, 64 * 2**20)
            out.write(os.urandom(block))
            left -= block
    return path


def run(command: Sequence[str]) -> tuple[float, str]:
    """Wall time of ``command`` and its stdout; a failure is an error, not a time."""
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({done.returncode}): {done.stderr.strip()}")
    return elapsed, done.stdout


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="file size in MiB")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--file", type=Path, help="hash this file instead of a random one")
    args = parser.parse_args(argv)
    openssl = shutil.which("openssl")
    if openssl is None:
        print("digest_cli: openssl is missing; `make bench-deps` installs it", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="digest-bench-") as scratch:
        path = args.file or make_file(Path(scratch), args.size * 2**20)
        size = path.stat().st_size
        with path.open("rb") as warm:  # into the page cache
            while warm.read(64 * 2**20):
                pass
        _, ours_out = run([*SLIPSTREAM, str(path)])
        _, anchor_out = run([openssl, "dgst", "-sha256", "-r", str(path)])
        ours_sha = json.loads(ours_out)["sha256"]
        anchor_sha = anchor_out.split()[0]
        if ours_sha != anchor_sha:
            print(f"digest_cli: WRONG SHA-256: {ours_sha} != {anchor_sha}", file=sys.stderr)
            return 1
        times: dict[str, list[float]] = {"slipstream digest": [], "openssl dgst -sha256": []}
        for _ in range(args.rounds):
            times["slipstream digest"].append(run([*SLIPSTREAM, str(path)])[0])
            times["openssl dgst -sha256"].append(run([openssl, "dgst", "-sha256", str(path)])[0])

    medians = {label: median(samples) for label, samples in times.items()}
    rates = {label: size / seconds / 1e6 for label, seconds in medians.items()}
    ratio = rates["slipstream digest"] / rates["openssl dgst -sha256"]
    for label, seconds in medians.items():
        print(f"  {label:<22} {seconds:6.2f} s  {rates[label]:8.0f} MB/s (median of {args.rounds})")
    ok = ratio >= TARGET
    print(
        f"  slipstream / openssl     {ratio:6.2f}x  target >= {TARGET}: {'ok' if ok else 'MISSED'}"
    )
    write_results(
        "digest_cli",
        {
            "file_bytes": size,
            "rounds": args.rounds,
            "seconds": times,
            "median_seconds": medians,
            "mb_per_s": rates,
            "ratio": ratio,
            "target": TARGET,
            "target_met": ok,
            "cpus": len(os.sched_getaffinity(0)),
        },
    )
    bar_chart(
        "digest_cli",
        f"Hashing a cached {size // 2**20} MiB file, whole command (median of {args.rounds}), MB/s",
        list(rates),
        list(rates.values()),
        "MB/s",
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
