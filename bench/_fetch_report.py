"""The results of ``fetch.py``: medians, ratios and verdicts against its targets, as a
table and as a chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _common import median
from _servers import RSS_LIMIT_MIB

MIB = 1024**2
SINGLE_TARGET = 0.8  # slipstream bytes/s over curl's, single 1 GiB download
TOOLS = ("slipstream", "curl", "aria2c_x1", "aria2c_default")


def summarize(raw: dict[str, Any], hwm_mib: float) -> dict[str, Any]:
    """Medians, ratios (slipstream / other, in bytes/s), RSS peaks and the verdicts."""
    single, batch = raw["single"], raw["batch"]
    rate = {tool: median([s["bytes_per_s"] for s in runs]) for tool, runs in single.items()}
    seconds = {tool: median([s["seconds"] for s in runs]) for tool, runs in single.items()}
    fsync_s = median([s["fsync_after_s"] for s in single["curl"]])
    ratios = {
        f"slipstream/{tool}": rate["slipstream"] / rate[tool]
        for tool in TOOLS
        if tool != "slipstream"
    }
    ratios["slipstream/curl+fsync"] = (seconds["curl"] + fsync_s) / seconds["slipstream"]
    floor_rate = {
        name: median([s["bytes_per_s"] for s in runs]) for name, runs in raw["floors"].items()
    }
    for name, value in floor_rate.items():
        ratios[f"floor {name}/curl"] = value / rate["curl"]
    batch_s = {tool: median([s["seconds"] for s in runs]) for tool, runs in batch.items()}
    ratios["batch slipstream/curl"] = batch_s["curl"] / batch_s["slipstream"]
    peak = {
        "single": max(s["rss_max_mib"] for s in single["slipstream"]),
        "batch": max(s["rss_max_mib"] for s in batch["slipstream"]),
        "vmhwm": hwm_mib,
    }
    passed = {
        "single_vs_curl": ratios["slipstream/curl"] >= SINGLE_TARGET,
        "rss": max(peak.values()) < RSS_LIMIT_MIB,
    }
    return {
        "median_bytes_per_s": rate,
        "median_seconds": seconds,
        "floor_bytes_per_s": floor_rate,
        "curl_fsync_after_s": fsync_s,
        "batch_median_seconds": batch_s,
        "ratios": ratios,
        "rss_peak_mib": peak,
        "passed": passed,
    }


def print_table(summary: dict[str, Any]) -> None:
    """The results as a table on stdout (``summary`` is the run's JSON data)."""
    rate, secs = summary["median_bytes_per_s"], summary["median_seconds"]
    jobs, job_size = summary["batch"]["jobs"], summary["batch"]["job_bytes"]
    size_mib = summary["size_bytes"] // MIB
    print(f"single download of {size_mib} MiB (median of rounds)")
    print(f"{'tool':<16}{'seconds':>9}{'MB/s':>9}{'slipstream/tool':>17}")
    for tool in TOOLS:
        ratio = rate["slipstream"] / rate[tool]
        print(f"{tool:<16}{secs[tool]:>9.2f}{rate[tool] / 1e6:>9.1f}{ratio:>17.2f}")
    ratios = summary["ratios"]
    verdict = "PASS" if summary["passed"]["single_vs_curl"] else "FAIL"
    print(
        f"target slipstream/curl >= {SINGLE_TARGET}: {ratios['slipstream/curl']:.2f} {verdict}"
        f"  (curl + fsync of its file {summary['curl_fsync_after_s']:.2f} s: "
        f"ratio {ratios['slipstream/curl+fsync']:.2f}, for information)"
    )
    floors = summary["floor_bytes_per_s"]
    print(
        "floors (in-process, no disk, same URL): the fetcher's pump receive "
        f"{floors['httpx'] / 1e6:.1f} MB/s = {ratios['floor httpx/curl']:.2f} x curl; "
        f"+ a job's digests {floors['httpx+digests'] / 1e6:.1f} MB/s = "
        f"{ratios['floor httpx+digests/curl']:.2f} x curl"
    )
    print(
        "floor (no network): writing the file from memory as a job does, then fsync "
        f"{floors['disk'] / 1e6:.1f} MB/s = {ratios['floor disk/curl']:.2f} x curl"
    )
    batch = summary["batch_median_seconds"]
    print(
        f"{jobs} concurrent x {job_size // MIB} MiB: "
        f"slipstream {batch['slipstream']:.2f} s (8 at a time), "
        f"{jobs} curls {batch['curl']:.2f} s,"
        f" ratio {ratios['batch slipstream/curl']:.2f}"
    )
    peak = summary["rss_peak_mib"]
    verdict = "PASS" if summary["passed"]["rss"] else "FAIL"
    print(
        f"slipstream RSS peak: single {peak['single']:.1f} MiB, batch {peak['batch']:.1f} MiB,"
        f" VmHWM {peak['vmhwm']:.1f} MiB; target < {RSS_LIMIT_MIB:.0f} MiB {verdict}"
    )
    print("(MB = 10^6 bytes; ratios are slipstream / other in bytes/s)")


def draw_chart(path: Path, summary: dict[str, Any]) -> None:
    """Single-download MB/s per tool; the batch's total time; slipstream's RSS peaks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(14, 4.8))
    rate = summary["median_bytes_per_s"]
    bars = left.bar(list(TOOLS), [rate[t] / 1e6 for t in TOOLS], color="#3b7dd8")
    left.bar_label(bars, labels=[f"{rate[t] / 1e6:.0f}" for t in TOOLS], fontsize=8)
    left.axhline(
        SINGLE_TARGET * rate["curl"] / 1e6,
        color="red",
        linestyle="dashed",
        label=f"{SINGLE_TARGET} x curl (target)",
    )
    left.set_title(f"One {summary['size_bytes'] // MIB} MiB download (median)")
    left.set_ylabel("MB/s (10^6 bytes)")
    left.tick_params(axis="x", labelrotation=15, labelsize=8)
    left.legend()
    batch = summary["batch_median_seconds"]
    jobs, job_size = summary["batch"]["jobs"], summary["batch"]["job_bytes"]
    names = ["slipstream", "curl"]
    bars = middle.bar(names, [batch[n] for n in names], color=["#3b7dd8", "#999999"])
    middle.bar_label(bars, labels=[f"{batch[n]:.2f} s" for n in names], fontsize=8)
    middle.set_title(f"{jobs} concurrent x {job_size // MIB} MiB: total time")
    middle.set_ylabel("seconds (lower is better)")
    peak = summary["rss_peak_mib"]
    keys = ["single", "batch", "vmhwm"]
    bars = right.bar(keys, [peak[k] for k in keys], color="#3b7dd8")
    right.bar_label(bars, labels=[f"{peak[k]:.0f}" for k in keys], fontsize=8)
    right.axhline(RSS_LIMIT_MIB, color="red", linestyle="dashed", label="limit")
    right.set_title("slipstream RSS (MiB)")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
