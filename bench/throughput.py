"""Throughput: slipstream against nginx on loopback, side by side in one run.

Both servers serve the same temporary directory (a 1 GiB, a 1 MiB and a 1 KiB file).
``wrk`` drives each case against nginx and slipstream alternately, for several rounds;
the medians and the slipstream/nginx ratios are printed as a table and written to
``bench/results/throughput.json`` with a PNG chart next to it.

Cases: 1 GiB x 1 connection, 1 GiB x 8, 1 MiB x 32, 1 KiB x 32 keep-alive, and
256 connections each downloading the 1 GiB file while the server's RSS is sampled.

Targets (exit status 1 when one is missed): 1 GiB bytes/s ratio >= 0.95, 1 KiB
requests/s ratio >= 0.20, slipstream RSS < 150 MiB under the 256 clients.

Usage: ``python bench/throughput.py [--quick] [--cases big1,small32] [--rounds N]
[--nginx-sndbuf 64k]``.
Nothing is installed here: without nginx or wrk the script says what to install.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import RESULTS, median, write_results
from _servers import (
    RSS_LIMIT_MIB,
    WRK_DONE_LUA,
    BenchServer,
    Case,
    Nginx,
    Slipstream,
    machine_info,
    nginx_binary,
    proc_status_kib,
    run_wrk,
)

GIB = 1024**3
MIB = 1024**2
KIB = 1024
FILES = {"file-1g.bin": GIB, "file-1m.bin": MIB, "file-1k.bin": KIB}


CASES = [
    Case("big1", "1 GiB x 1 conn", "file-1g.bin", 1, 10, 3, "bytes_per_s", 0.95),
    Case("big8", "1 GiB x 8 conns", "file-1g.bin", 8, 10, 3, "bytes_per_s", 0.95),
    Case("mid32", "1 MiB x 32 conns", "file-1m.bin", 32, 8, 3, "", None),
    Case("small32", "1 KiB x 32 keep-alive", "file-1k.bin", 32, 8, 3, "requests_per_s", 0.20),
    Case("rss256", "1 GiB x 256 conns (RSS)", "file-1g.bin", 256, 5, 3, "rss", None),
]


def make_files(root: Path) -> None:
    """The data files: 1 MiB of random bytes, repeated up to each size."""
    block = os.urandom(MIB)
    for name, size in FILES.items():
        with open(root / name, "wb") as handle:
            left = size
            while left:
                chunk = block[: min(left, MIB)]
                handle.write(chunk)
                left -= len(chunk)


def summarize(case: Case, samples: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians per server, ratios slipstream/nginx, and the target verdict."""
    samples = {"nginx": samples["nginx"], "slipstream": samples["slipstream"]}
    med = {
        name: {
            key: median([s[key] for s in runs])
            for key in ("requests_per_s", "bytes_per_s", "rss_max_mib", "server_cpu_pct")
        }
        for name, runs in samples.items()
    }
    errors = {
        name: sum(s["status"] + s["connect"] + s["read"] + s["write"] for s in runs)
        for name, runs in samples.items()
    }
    ratio = {  # None when nginx completed nothing (1 GiB requests in a short run)
        key: (med["slipstream"][key] / med["nginx"][key]) if med["nginx"][key] else None
        for key in ("requests_per_s", "bytes_per_s")
    }
    peak = {name: max(s["rss_max_mib"] for s in runs) for name, runs in samples.items()}
    passed: bool | None
    if case.metric == "rss":
        passed = peak["slipstream"] < RSS_LIMIT_MIB
    elif case.target is not None:
        passed = (ratio[case.metric] or 0.0) >= case.target
    else:
        passed = None
    if errors["slipstream"] or errors["nginx"]:
        passed = False  # a server that answers errors fast is not fast
    return {
        "label": case.label,
        "file": case.file,
        "connections": case.connections,
        "metric": case.metric,
        "target": case.target if case.metric != "rss" else RSS_LIMIT_MIB,
        "target_text": case.target_text(),
        "median": med,
        "ratio": ratio,
        "errors": errors,
        "peak_rss_mib": peak,
        "passed": passed,
        "samples": samples,
    }


def print_table(results: dict[str, dict[str, Any]]) -> None:
    head = (
        f"{'case':<24}{'nginx r/s':>11}{'slip r/s':>11}{'ratio':>7}"
        f"{'nginx MB/s':>12}{'slip MB/s':>11}{'ratio':>7}"
        f"{'nginx RSS':>10}{'slip RSS':>10}  {'target':<14}result"
    )
    print(head)
    print("-" * len(head))
    for res in results.values():
        med, ratio = res["median"], res["ratio"]
        verdict = {True: "PASS", False: "FAIL", None: "-"}[res["passed"]]
        if any(res["errors"].values()):
            verdict += f" (errors {res['errors']})"
        print(
            f"{res['label']:<24}"
            f"{med['nginx']['requests_per_s']:>11.1f}{med['slipstream']['requests_per_s']:>11.1f}"
            f"{_fmt_ratio(ratio['requests_per_s'])}"
            f"{med['nginx']['bytes_per_s'] / 1e6:>12.1f}"
            f"{med['slipstream']['bytes_per_s'] / 1e6:>11.1f}{_fmt_ratio(ratio['bytes_per_s'])}"
            f"{res['peak_rss_mib']['nginx']:>9.1f}M{res['peak_rss_mib']['slipstream']:>9.1f}M"
            f"  {res['target_text']:<14}{verdict}"
        )
    print("(MB = 10^6 bytes; r/s = completed requests/s; RSS = max sampled VmRSS, MiB)")
    cpu = ", ".join(
        f"{key} {res['median']['nginx']['server_cpu_pct']:.0f}/"
        f"{res['median']['slipstream']['server_cpu_pct']:.0f}"
        for key, res in results.items()
    )
    print(f"server CPU, % of one core, nginx/slipstream: {cpu}")


def _fmt_ratio(value: float | None) -> str:
    return f"{value:>7.2f}" if value is not None else f"{'-':>7}"


def draw_chart(path: Path, results: dict[str, dict[str, Any]]) -> None:
    """Left: ratio slipstream/nginx per case (targets marked); right: peak RSS per case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [res["label"] for res in results.values()]
    xs = list(range(len(labels)))
    width = 0.38
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    series = ((-width / 2, "requests_per_s", "requests/s"), (width / 2, "bytes_per_s", "bytes/s"))
    for offset, key, name in series:
        values = [res["ratio"][key] or 0.0 for res in results.values()]
        left.bar([x + offset for x in xs], values, width, label=f"{name} ratio")
        for x, res in zip(xs, results.values(), strict=True):
            if res["metric"] == key and res["target"] is not None:
                ends = (x + offset - width / 2, x + offset + width / 2)
                left.hlines(res["target"], *ends, colors="red", linestyles="dashed")
    left.axhline(1.0, color="grey", linewidth=0.8)
    left.plot([], [], "r--", label="target")
    left.set_xticks(xs, labels, rotation=20, ha="right")
    left.set_ylabel("slipstream / nginx")
    left.set_title("Throughput ratio (median of rounds)")
    left.legend()
    for offset, name in ((-width / 2, "nginx"), (width / 2, "slipstream")):
        values = [res["peak_rss_mib"][name] for res in results.values()]
        right.bar([x + offset for x in xs], values, width, label=name)
    right.axhline(RSS_LIMIT_MIB, color="red", linestyle="dashed", label="slipstream limit")
    right.set_xticks(xs, labels, rotation=20, ha="right")
    right.set_ylabel("peak RSS (MiB)")
    right.set_title("Server memory during each case")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


SCALING_TARGET = 1.5
"""``--workers 2``: slipstream x2 must give this many times the 1 KiB requests/s of x1."""
RATIO_DRIFT = 0.10
"""``--workers``: the x2 ratio to nginx x2 stays within this share of the x1 ratio."""


def summarize_workers(
    case: Case, samples: dict[str, list[dict[str, Any]]], workers: int
) -> dict[str, Any]:
    """The ``--workers`` comparison of one case: each pair's ratio, the scaling of
    slipstream from 1 to N workers, and (for the 1 KiB case) the targets."""
    suffix = f" x{workers}"
    one = summarize(case, samples)
    several = summarize(
        case, {"nginx": samples["nginx" + suffix], "slipstream": samples["slipstream" + suffix]}
    )
    metric = case.metric if case.metric in ("requests_per_s", "bytes_per_s") else "bytes_per_s"
    base = one["median"]["slipstream"][metric]
    scaling = several["median"]["slipstream"][metric] / base if base else None
    nginx_base = one["median"]["nginx"][metric]
    nginx_scaling = several["median"]["nginx"][metric] / nginx_base if nginx_base else None
    ratio_one, ratio_several = one["ratio"][metric], several["ratio"][metric]
    drift = (ratio_several / ratio_one - 1.0) if ratio_one and ratio_several else None
    passed: bool | None = None
    if case.key == "small32":
        passed = (
            scaling is not None
            and scaling >= SCALING_TARGET
            and drift is not None
            and drift >= -RATIO_DRIFT
        )
    return {
        "label": case.label,
        "metric": metric,
        "one_worker": {k: one[k] for k in ("median", "ratio", "errors")},
        f"{workers}_workers": {k: several[k] for k in ("median", "ratio", "errors")},
        "slipstream_scaling": scaling,
        "nginx_scaling": nginx_scaling,
        "ratio_drift": drift,
        "targets": f"slipstream x{workers} >= {SCALING_TARGET}x slipstream x1; "
        f"ratio to nginx x{workers} within {RATIO_DRIFT:.0%} of the x1 ratio (1 KiB case)",
        "passed": passed,
        "cpu_s_by_process": {
            name: [s["server_cpu_s_by_process"] for s in runs] for name, runs in samples.items()
        },
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs, one round")
    parser.add_argument(
        "--cases",
        default=",".join(c.key for c in CASES),
        help="comma-separated subset of: " + ", ".join(c.key for c in CASES),
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3, quick 1)")
    parser.add_argument(
        "--nginx-sndbuf",
        default="",
        metavar="SIZE",
        help="give nginx's listen socket sndbuf=SIZE (e.g. 64k; default: kernel autotuning)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="also run slipstream --workers N against nginx worker_processes N in the same "
        "run, and compare with the one-worker pair (results: throughput-workers.json)",
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    known = {c.key for c in CASES}
    chosen = [k.strip() for k in args.cases.split(",") if k.strip()]
    unknown = [k for k in chosen if k not in known]
    if unknown or not chosen:
        parser.error(f"unknown case(s) {unknown}; choose from {sorted(known)}")
    args.case_list = [c for c in CASES if c.key in chosen]
    args.rounds = args.rounds or (1 if args.quick else 3)
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start both servers, run every case for both alternately, stop the servers."""
    cases: list[Case] = args.case_list
    nginx, slip = Nginx(args.nginx_sndbuf), Slipstream()
    servers: list[BenchServer] = [nginx, slip]
    if args.workers > 1:
        servers += [Nginx(args.nginx_sndbuf, args.workers), Slipstream(args.workers)]
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {
        c.key: {server.name: [] for server in servers} for c in cases
    }
    info = machine_info()
    with tempfile.TemporaryDirectory(prefix="slipstream-bench-") as tmpname:
        tmp = Path(tmpname)
        tmp.chmod(0o755)  # nginx workers run as an unprivileged user when we are root
        root = tmp / "data"
        root.mkdir(mode=0o755)
        make_files(root)
        script = tmp / "done.lua"
        script.write_text(WRK_DONE_LUA)
        try:
            for n, server in enumerate(servers):
                place = tmp / f"server-{n}"
                if not isinstance(server, Nginx):
                    place.mkdir()
                server.start(root, place)
            idle = {s.name: (proc_status_kib(s.worker_pid(), "VmRSS") or 0) / 1024 for s in servers}
            warm = Case("warm", "warm-up", "file-1k.bin", 4, 1, 1, "", None)
            for server in servers:
                run_wrk(server, warm, 1, script, 120)
            for rnd in range(args.rounds):
                for i, case in enumerate(cases):
                    order = servers if (rnd + i) % 2 == 0 else servers[::-1]
                    seconds = case.quick_seconds if args.quick else case.seconds
                    for server in order:
                        sample = run_wrk(server, case, seconds, script, 120)
                        samples[case.key][server.name].append(sample)
                        print(
                            f"round {rnd + 1}/{args.rounds} {case.key:<8} {server.name:<10} "
                            f"{sample['requests_per_s']:>10.1f} req/s "
                            f"{sample['bytes_per_s'] / 1e6:>9.1f} MB/s "
                            f"rss {sample['rss_max_mib']:.1f} MiB",
                            file=sys.stderr,
                            flush=True,
                        )
                        time.sleep(0.5)
            hwm = {s.name: (proc_status_kib(s.worker_pid(), "VmHWM") or 0) / 1024 for s in servers}
        finally:
            for server in servers:
                server.stop()
    info["loadavg_end"] = os.getloadavg()
    results = {c.key: summarize(c, samples[c.key]) for c in cases}
    if args.workers > 1:
        workers = {c.key: summarize_workers(c, samples[c.key], args.workers) for c in cases}
        data = {
            "benchmark": "throughput --workers",
            "workers": args.workers,
            "method": "wrk -t1 -cN -dS over loopback; each case against nginx and slipstream "
            f"with 1 worker and with {args.workers}, alternating, in one run; CPU seconds "
            "of every serving process (workers, not the supervisor or nginx's master)",
            "rounds": args.rounds,
            "durations_s": {c.key: c.quick_seconds if args.quick else c.seconds for c in cases},
            "machine": info,
            "cases": workers,
            "passed": all(r["passed"] is not False for r in workers.values()),
        }
        out = write_results("throughput-workers", data)
        print(f"wrote {out}")
        for key, row in workers.items():
            print(
                f"{key:<8} slipstream x{args.workers}/x1 {_fmt_ratio(row['slipstream_scaling'])}"
                f"  nginx x{args.workers}/x1 {_fmt_ratio(row['nginx_scaling'])}"
                f"  ratio drift {_fmt_ratio(row['ratio_drift'])}  passed {row['passed']}"
            )
    return {
        "benchmark": "throughput",
        "method": "wrk -t1 -cN -dS over loopback; bytes/s counts every byte read, "
        "including responses still in flight when the run ends",
        "quick": args.quick,
        "rounds": args.rounds,
        "nginx_sndbuf": args.nginx_sndbuf or "autotuned",
        "durations_s": {c.key: c.quick_seconds if args.quick else c.seconds for c in cases},
        "machine": info,
        "idle_rss_mib": idle,
        "final_vmhwm_mib": hwm,
        "cases": results,
        "passed": all(r["passed"] is not False for r in results.values()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 if every target is met, 1 if not, 2 if a tool is missing."""
    args = parse_args(argv)
    missing = [
        name for name, path in (("nginx", nginx_binary()), ("wrk", shutil.which("wrk"))) if not path
    ]
    if missing:
        print(
            f"throughput: {' and '.join(missing)} not found; install with\n"
            "    sudo apt-get install nginx-light wrk\n(or run `make bench`, which does)",
            file=sys.stderr,
        )
        return 2
    # SIGTERM (e.g. from run_all.py) unwinds like Ctrl-C, so the servers are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        data = run(args)
    except KeyboardInterrupt:
        print("throughput: interrupted; servers stopped", file=sys.stderr)
        return 130
    print_table(data["cases"])
    print(f"idle RSS MiB {data['idle_rss_mib']}, final VmHWM MiB {data['final_vmhwm_mib']}")
    if args.quick or len(args.case_list) < len(CASES):
        print("partial run (--quick or --cases): bench/results/ left as it was")
    else:
        out = write_results("throughput", data)
        chart = RESULTS / "throughput.png"
        draw_chart(chart, data["cases"])
        print(f"wrote {out} and {chart}")
    failed = [r["label"] for r in data["cases"].values() if r["passed"] is False]
    if failed:
        print(f"FAIL: below target: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
