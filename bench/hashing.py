"""Checksums: our compiled CRCs and the one-pass MultiDigest against the anchors.

Over one random buffer (``--size`` MiB, 1 GiB by default) times, median of ``--repeat``
rounds (each round runs every case once, so load from elsewhere hits all cases alike):

* our C CRCs (``slipstream.ext._digest_c.crc``): CRC-32, CRC-32C, CRC-64/XZ, CRC-64/NVME;
* anchors: ``isal.isal_zlib.crc32``, ``fastcrc.crc64.xz``, ``zlib.crc32``, hashlib
  ``sha1`` / ``sha256`` and ``xxhash.xxh3_128``;
* the full set {CRC-32, CRC-64/XZ, SHA-1, SHA-256}: as four separate passes, and as one
  ``MultiDigest`` pass with ``threads=1`` and ``threads=2``.

Every result is checked against the anchors first (a fast wrong answer is no result).
Writes ``bench/results/hashing.json`` and the charts ``hashing.png`` (everything, GB/s)
and ``hashing_fullset.png`` (the full set against SHA-1 and SHA-256 alone).

Targets (exit status 1 when one is missed): CRC-32 and CRC-64/XZ >= 10 GB/s each; the
full set in one thread >= 0.75 GB/s; two threads faster than one; and the default
``MultiDigest`` thread count is the faster of the two here.  A missing anchor is an
error (exit 2) with the command that installs it, never a silent skip.

Usage: ``python bench/hashing.py [--size MiB] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import platform
import sys
import zlib
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from _common import bar_chart, median, timeit, write_results

CRC_TARGET_GBPS = 10.0
FULL_SET_TARGET_GBPS = 0.75
FULL_SET = ("crc32", "crc64xz", "sha1", "sha256")
ANCHORS = {  # module -> distribution
    "isal.isal_zlib": "isal",
    "fastcrc": "fastcrc",
    "xxhash": "xxhash",
    "matplotlib": "matplotlib",
}


def load_anchors() -> dict[str, ModuleType] | None:
    """Import every anchor; on a missing one say how to install it and return None."""
    loaded: dict[str, ModuleType] = {}
    missing = []
    for module, dist in ANCHORS.items():
        try:
            loaded[module] = importlib.import_module(module)
        except ImportError:
            missing.append(dist)
    if missing:
        print(
            f"hashing: missing benchmark anchor(s): {', '.join(missing)}.\n"
            "  install them with `make bench` (the `bench` extra), or\n"
            f"  .venv/bin/pip install {' '.join(missing)}",
            file=sys.stderr,
        )
        return None
    return loaded


def make_buffer(size: int) -> bytes:
    """``size`` random bytes (one object, so no call copies it)."""
    return os.urandom(size)


def gbps(size: int, seconds: float) -> float:
    return size / seconds / 1e9


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="buffer size in MiB")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    anchors = load_anchors()
    if anchors is None:
        return 2
    isal_zlib, fastcrc, xxhash = anchors["isal.isal_zlib"], anchors["fastcrc"], anchors["xxhash"]
    try:
        ours = importlib.import_module("slipstream.ext._digest_c")
    except ImportError as exc:
        print(f"the compiled twin is not built ({exc}); run `make install` first", file=sys.stderr)
        return 2

    size = args.size * 2**20
    print(f"hashing: {args.size} MiB random buffer, CRC kernel {ours.IMPLEMENTATION}", flush=True)
    data = make_buffer(size)

    cases: list[tuple[str, str, Callable[[], Any]]] = [
        ("crc32 (ours)", "ours", lambda: ours.crc("crc32", data)),
        ("crc32c (ours)", "ours", lambda: ours.crc("crc32c", data)),
        ("crc64xz (ours)", "ours", lambda: ours.crc("crc64xz", data)),
        ("crc64nvme (ours)", "ours", lambda: ours.crc("crc64nvme", data)),
        ("isal crc32", "anchor", lambda: isal_zlib.crc32(data)),
        ("fastcrc crc64xz", "anchor", lambda: fastcrc.crc64.xz(data)),
        ("zlib crc32", "anchor", lambda: zlib.crc32(data)),
        ("sha1", "anchor", lambda: hashlib.sha1(data).digest()),
        ("sha256", "anchor", lambda: hashlib.sha256(data).digest()),
        ("xxh3_128", "anchor", lambda: xxhash.xxh3_128(data).digest()),
        ("full set, 4 passes", "anchor", lambda: separate_passes(ours, data)),
        ("full set, 1 thread", "ours", lambda: ours.multi_digest(data, FULL_SET, threads=1)),
        ("full set, 2 threads", "ours", lambda: ours.multi_digest(data, FULL_SET, threads=2)),
    ]

    # Same answers first.
    expected = separate_passes(ours, data)
    checks = {
        "crc32 == zlib": ours.crc("crc32", data) == zlib.crc32(data) == isal_zlib.crc32(data),
        "crc64xz == fastcrc": ours.crc("crc64xz", data) == fastcrc.crc64.xz(data),
        "crc32c kernels agree": ours.crc("crc32c", data) == ours._crc_with("table", "crc32c", data),
        "crc64nvme kernels agree": (
            ours.crc("crc64nvme", data) == ours._crc_with("table", "crc64nvme", data)
        ),
        "full set, 1 thread": ours.multi_digest(data, FULL_SET, threads=1) == expected,
        "full set, 2 threads": ours.multi_digest(data, FULL_SET, threads=2) == expected,
    }
    wrong = [name for name, ok in checks.items() if not ok]
    if wrong:
        print(f"hashing: WRONG RESULTS: {', '.join(wrong)}", file=sys.stderr)
        return 1

    # Round-robin: repeat r of every case runs before repeat r + 1 of any, so a burst of
    # load from elsewhere on the machine lands on all cases alike, not on one.
    times: dict[str, list[float]] = {label: [] for label, _, _ in cases}
    kinds = {label: kind for label, kind, _ in cases}
    for _, _, fn in cases:
        fn()  # warm up (page faults, lazy thread pool)
    for _ in range(args.repeat):
        for label, _, fn in cases:
            times[label].extend(timeit(fn, 1))
    rates = {label: gbps(size, median(samples)) for label, samples in times.items()}
    for label, rate in rates.items():
        print(f"  {label:<22} {rate:8.2f} GB/s", flush=True)

    ratios = {
        "crc32 / isal crc32": rates["crc32 (ours)"] / rates["isal crc32"],
        "crc32 / zlib crc32": rates["crc32 (ours)"] / rates["zlib crc32"],
        "crc64xz / fastcrc crc64xz": rates["crc64xz (ours)"] / rates["fastcrc crc64xz"],
        "crc32c / isal crc32": rates["crc32c (ours)"] / rates["isal crc32"],
        "crc64nvme / fastcrc crc64xz": rates["crc64nvme (ours)"] / rates["fastcrc crc64xz"],
        "full set 1 thread / 4 passes": rates["full set, 1 thread"] / rates["full set, 4 passes"],
        "full set 2 threads / 1 thread": rates["full set, 2 threads"] / rates["full set, 1 thread"],
        "full set 2 threads / sha256 alone": rates["full set, 2 threads"] / rates["sha256"],
    }
    for name, value in ratios.items():
        print(f"  {name:<34} {value:6.2f}x")

    faster_threads = 2 if rates["full set, 2 threads"] > rates["full set, 1 thread"] else 1
    default_threads = ours.MultiDigest(FULL_SET).threads
    targets = {
        f"crc32 >= {CRC_TARGET_GBPS} GB/s": rates["crc32 (ours)"] >= CRC_TARGET_GBPS,
        f"crc64xz >= {CRC_TARGET_GBPS} GB/s": rates["crc64xz (ours)"] >= CRC_TARGET_GBPS,
        f"full set 1 thread >= {FULL_SET_TARGET_GBPS} GB/s": (
            rates["full set, 1 thread"] >= FULL_SET_TARGET_GBPS
        ),
        "full set 2 threads > 1 thread": faster_threads == 2,
        "default threads is the faster": default_threads == faster_threads,
    }
    missed = [name for name, ok in targets.items() if not ok]

    write_results(
        "hashing",
        {
            "buffer_mib": args.size,
            "repeat": args.repeat,
            "crc_kernel": ours.IMPLEMENTATION,
            "crc_kernels_available": list(ours.CRC_IMPLEMENTATIONS),
            "chunk_size": ours.CHUNK_SIZE,
            "default_threads": default_threads,
            "gbps": rates,
            "best_gbps": {label: gbps(size, min(samples)) for label, samples in times.items()},
            "seconds": times,
            "kinds": kinds,
            "ratios": ratios,
            "targets": targets,
            "machine": {
                "python": platform.python_version(),
                "cpus": len(os.sched_getaffinity(0)),
                "processor": platform.processor() or platform.machine(),
            },
        },
    )
    labels = list(rates)
    bar_chart(
        "hashing",
        f"Checksums over {args.size} MiB (median of {args.repeat}), GB/s",
        labels,
        [rates[label] for label in labels],
        "GB/s",
    )
    slow = ["sha1", "sha256", "full set, 4 passes", "full set, 1 thread", "full set, 2 threads"]
    bar_chart(
        "hashing_fullset",
        f"{{CRC-32, CRC-64/XZ, SHA-1, SHA-256}} over {args.size} MiB, GB/s",
        slow,
        [rates[label] for label in slow],
        "GB/s",
    )
    for name, ok in targets.items():
        print(f"  target {name}: {'ok' if ok else 'MISSED'}")
    return 1 if missed else 0


def separate_passes(ours: ModuleType, data: bytes) -> dict[str, int | bytes]:
    """The full set as four independent passes over ``data`` (the baseline)."""
    return {
        "crc32": ours.crc("crc32", data),
        "crc64xz": ours.crc("crc64xz", data),
        "sha1": hashlib.sha1(data).digest(),
        "sha256": hashlib.sha256(data).digest(),
    }


if __name__ == "__main__":
    sys.exit(main())
