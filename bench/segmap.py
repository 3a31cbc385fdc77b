"""SegmentMap: the compiled twin against the pure-Python twin, side by side.

Builds a map of 1,000,000 mixed segments (literals, file slices, upstream slices; the
segment objects are made before the clock starts), then times, for each twin:

* ``build``  - ``SegmentMap(segments)``, median of ``--repeat`` builds;
* ``locate`` - one ``locate(offset)`` at a random offset, per call;
* ``slice``  - one ``slice(start, stop)`` of a random range up to 256 KiB, per call.

Per-call costs are the median over ``--repeat`` rounds of ``--lookups`` calls each, loop
included (so they are an upper bound).  Results go to ``bench/results/segmap.json``, with
charts ``segmap.png`` (lookups) and ``segmap_build.png`` (build).

Targets for the C twin (exit status 1 when one is missed): build < 1 s, locate < 2 us.

Usage: ``python bench/segmap.py [--segments N] [--lookups N] [--repeat N] [--seed N]``.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import random
import sys
from collections.abc import Callable, Sequence
from typing import Any

from _common import bar_chart, median, timeit, write_results

from slipstream.ext._segtypes import FileSlice, Literal, Segment, UpstreamSlice

BUILD_TARGET_S = 1.0
LOOKUP_TARGET_US = 2.0
MAX_SLICE = 256 * 1024


def make_segments(count: int, rng: random.Random) -> list[Segment]:
    """``count`` segments shaped like a big zip: header, file data, descriptor, ..."""
    headers = [bytes(rng.randrange(256) for _ in range(30 + n)) for n in range(64)]
    out: list[Segment] = []
    for i in range(count):
        kind = i % 3
        if kind == 0:
            out.append(Literal(headers[i % 64]))
        elif kind == 1:
            out.append(
                FileSlice(
                    f"/srv/data/{i % 1000}.bin", rng.randrange(1 << 20), 1 + rng.randrange(1 << 20)
                )
            )
        else:
            out.append(
                UpstreamSlice(
                    f"https://origin.test/{i % 500}",
                    rng.randrange(1 << 30),
                    1 + rng.randrange(1 << 22),
                )
            )
    return out


def per_call_us(fn: Callable[[Sequence[Any]], object], args: Sequence[Any], repeat: int) -> float:
    """Median over ``repeat`` rounds of the time per element for ``fn(args)``, in us."""
    return median(timeit(lambda: fn(args), repeat)) / len(args) * 1e6


def measure(
    cls: Any,
    segments: list[Segment],
    offsets: list[int],
    ranges: list[tuple[int, int]],
    repeat: int,
) -> dict[str, float]:
    build_s = median(timeit(lambda: cls(segments), repeat))
    m = cls(segments)

    def run_locate(xs: Sequence[int]) -> None:
        locate = m.locate
        for x in xs:
            locate(x)

    def run_slice(rs: Sequence[tuple[int, int]]) -> None:
        cut = m.slice
        for a, b in rs:
            cut(a, b)

    pieces = sum(len(m.slice(a, b)) for a, b in ranges) / len(ranges)
    return {
        "build_s": build_s,
        "locate_us": per_call_us(run_locate, offsets, repeat),
        "slice_us": per_call_us(run_slice, ranges, repeat),
        "slice_mean_pieces": pieces,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=20240611)
    args = parser.parse_args(argv)

    try:
        c_twin = importlib.import_module("slipstream.ext._segmap_c")
    except ImportError as exc:
        print(f"the compiled twin is not built ({exc}); run `make install` first", file=sys.stderr)
        return 2
    py_twin = importlib.import_module("slipstream.ext._segmap_py")

    rng = random.Random(args.seed)
    print(f"making {args.segments:,} segments ...", flush=True)
    segments = make_segments(args.segments, rng)
    total = py_twin.SegmentMap(segments).total
    offsets = [rng.randrange(total) for _ in range(args.lookups)]
    ranges = []
    for _ in range(args.lookups):
        start = rng.randrange(total)
        ranges.append((start, min(total, start + 1 + rng.randrange(MAX_SLICE))))

    # Same answers first: a fast wrong twin is no result.
    sample_c, sample_py = c_twin.SegmentMap(segments), py_twin.SegmentMap(segments)
    for a, b in ranges[:1000]:
        if sample_c.locate(a) != sample_py.locate(a) or sample_c.slice(a, b) != sample_py.slice(
            a, b
        ):
            print(f"the twins disagree on [{a}, {b})", file=sys.stderr)
            return 2
    del sample_c, sample_py

    results = {}
    for label, twin in (("c", c_twin), ("python", py_twin)):
        print(f"timing the {label} twin ...", flush=True)
        results[label] = measure(twin.SegmentMap, segments, offsets, ranges, args.repeat)
    c, py = results["c"], results["python"]
    build_ok = c["build_s"] < BUILD_TARGET_S
    locate_ok = c["locate_us"] < LOOKUP_TARGET_US

    rows = [
        ("build (s)", c["build_s"], py["build_s"], f"< {BUILD_TARGET_S:g} s", build_ok),
        ("locate (us)", c["locate_us"], py["locate_us"], f"< {LOOKUP_TARGET_US:g} us", locate_ok),
        ("slice (us)", c["slice_us"], py["slice_us"], "-", None),
    ]
    print()
    print(
        f"SegmentMap, {args.segments:,} segments, total {total:,} bytes, "
        f"slices of ~{c['slice_mean_pieces']:.2f} pieces"
    )
    print(f"{'operation':<12} {'C':>10} {'Python':>10} {'Py/C':>7}  {'C target':<10} met")
    for name, c_val, py_val, target, ok in rows:
        met = "-" if ok is None else ("yes" if ok else "NO")
        print(
            f"{name:<12} {c_val:>10.4f} {py_val:>10.4f} {py_val / c_val:>6.1f}x  {target:<10} {met}"
        )

    write_results(
        "segmap",
        {
            "segments": args.segments,
            "total_bytes": total,
            "lookups": args.lookups,
            "repeat": args.repeat,
            "seed": args.seed,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "results": results,
            "ratios_py_over_c": {k: py[k] / c[k] for k in ("build_s", "locate_us", "slice_us")},
            "targets": {
                "c_build_s": {"limit": BUILD_TARGET_S, "met": build_ok},
                "c_locate_us": {"limit": LOOKUP_TARGET_US, "met": locate_ok},
            },
        },
    )
    try:
        bar_chart(
            "segmap",
            f"SegmentMap lookups, {args.segments:,} segments (lower is better)",
            ["locate C", "locate Python", "slice C", "slice Python"],
            [c["locate_us"], py["locate_us"], c["slice_us"], py["slice_us"]],
            "microseconds per call",
        )
        bar_chart(
            "segmap_build",
            f"SegmentMap build, {args.segments:,} segments (lower is better)",
            ["build C", "build Python"],
            [c["build_s"], py["build_s"]],
            "seconds",
        )
    except ImportError:
        print("matplotlib is missing (pip install '.[bench]'): no charts", file=sys.stderr)
    print("wrote bench/results/segmap.json")
    return 0 if build_ok and locate_ok else 1


if __name__ == "__main__":
    sys.exit(main())
