"""Small helpers shared by the benchmarks: progress lines, timing, medians, JSON results
and PNG charts.

Every benchmark writes ``bench/results/<name>.json`` (and usually ``<name>.png``).
matplotlib is imported only by :func:`bar_chart`, so the rest works without it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def log(text: str) -> None:
    """A progress line on stderr (stdout carries the results table)."""
    print(text, file=sys.stderr, flush=True)


def median(xs: Sequence[float]) -> float:
    """The median of ``xs`` (the mean of the middle two for an even count)."""
    if not xs:
        raise ValueError("median of an empty sequence")
    ordered = sorted(xs)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[middle])
    return (ordered[middle - 1] + ordered[middle]) / 2


def timeit(fn: Callable[[], object], repeat: int) -> list[float]:
    """Call ``fn()`` ``repeat`` times; return each call's wall time in seconds."""
    times: list[float] = []
    clock = time.perf_counter
    for _ in range(repeat):
        began = clock()
        fn()
        times.append(clock() - began)
    return times


def write_results(name: str, data: dict[str, Any]) -> Path:
    """Write ``data`` as ``bench/results/<name>.json``; return the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def bar_chart(
    name: str, title: str, labels: Sequence[str], values: Sequence[float], ylabel: str
) -> Path:
    """Draw one bar per label as ``bench/results/<name>.png``; return the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.png"
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(labels)), 4.5))
    try:
        bars = ax.bar(list(labels), list(values), color="#3b7dd8")
        ax.bar_label(bars, labels=[f"{v:.3g}" for v in values], padding=2, fontsize=8)
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path
