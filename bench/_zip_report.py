"""The results of ``zip.py``: medians, ratios and verdicts against its targets, as a
table, a chart and ``zip.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from _common import median

MIB = 1024**2
GIB = 1024**3
BIG_TARGET = 0.8  # (a) slipstream zip bytes/s over nginx's file bytes/s
TTFB_LIMIT_S = 0.050  # (c) first body byte of the resumed request
TTFB_FACTOR = 2.0  # (c) ... and at most this times the offset-0 first byte
RESUME_AT = 0.9


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    """Medians, ratios and verdicts."""

    def med(case: str, side: str, key: str) -> float:
        return median([s[key] for s in raw[case][side]])

    big_ratio = med("big", "slipstream", "bytes_per_s") / med("big", "nginx", "bytes_per_s")
    zs = med("many", "zipstream_ng", "bytes_per_s")
    ttfb0 = med("resume", "offset0", "first_body_s")
    ttfb90 = med("resume", "offset90", "first_body_s")
    return {
        "big": {
            "nginx_bytes_per_s": med("big", "nginx", "bytes_per_s"),
            "slipstream_bytes_per_s": med("big", "slipstream", "bytes_per_s"),
            "ratio": big_ratio,
            "floor_httpx_bytes_per_s": med("big", "floor_httpx", "bytes_per_s"),
            "floor_ratio": med("big", "floor_httpx", "bytes_per_s")
            / med("big", "nginx", "bytes_per_s"),
            "slipstream_cpu_s_per_gb": med("big", "slipstream", "slipstream_cpu_s")
            / (med("big", "slipstream", "bytes") / 1e9),
            "target": BIG_TARGET,
            "passed": big_ratio >= BIG_TARGET,
        },
        "many": {
            "zipstream_ng_bytes_per_s": zs,
            "slipstream_bytes_per_s": med("many", "slipstream", "bytes_per_s"),
            "slipstream_create_s": med("many", "slipstream", "create_s"),
            "ratio": med("many", "slipstream", "bytes_per_s") / zs,
            "ratio_with_create": med("many", "slipstream", "bytes_per_s_with_create") / zs,
            "zip_bytes": {
                "zipstream_ng": raw["many"]["zipstream_ng"][0]["bytes"],
                "slipstream": raw["many"]["slipstream"][0]["bytes"],
            },
            "passed": None,
        },
        "resume": {
            "first_byte_s_offset0": ttfb0,
            "first_byte_s_offset90": ttfb90,
            "ratio": ttfb90 / ttfb0,
            "limit_s": TTFB_LIMIT_S,
            "factor": TTFB_FACTOR,
            "resumed_total_s": med("resume", "offset90", "total_s"),
            "resumed_bytes_per_s": med("resume", "offset90", "bytes_per_s"),
            "create_s": med("resume", "offset90", "create_s"),
            "passed": ttfb90 < TTFB_LIMIT_S and ttfb90 <= TTFB_FACTOR * ttfb0,
        },
    }


def print_table(sizes: dict[str, int], summary: dict[str, Any]) -> None:
    """The results as a table on stdout (``sizes`` as in the run's JSON data)."""
    big, many, res = summary["big"], summary["many"], summary["resume"]
    verdict = {True: "PASS", False: "FAIL", None: "-"}
    head = f"{'case':<40}{'anchor':>16}{'slipstream':>16}{'ratio':>8}  {'target':<16}result"
    print(head)
    print("-" * len(head))
    label = f"(a) zip of {sizes['big'] / MIB:.0f} MiB vs nginx file"
    print(
        f"{label:<40}"
        f"{big['nginx_bytes_per_s'] / 1e6:>11.1f} MB/s{big['slipstream_bytes_per_s'] / 1e6:>11.1f}"
        f" MB/s{big['ratio']:>8.2f}  {f'>= {BIG_TARGET}':<16}{verdict[big['passed']]}"
    )
    print(f"    slipstream CPU {big['slipstream_cpu_s_per_gb']:.2f} s per GB of zip")
    print(
        f"    floor: the same file received through slipstream's fetcher (httpx on Trio),"
        f" dropped: {big['floor_httpx_bytes_per_s'] / 1e6:.1f} MB/s = "
        f"{big['floor_ratio']:.2f} x nginx"
    )
    label = f"(b) {sizes['many']} x {sizes['many_size'] / MIB:.0f} MiB vs zipstream-ng"
    print(
        f"{label:<40}{many['zipstream_ng_bytes_per_s'] / 1e6:>11.1f} MB/s"
        f"{many['slipstream_bytes_per_s'] / 1e6:>11.1f} MB/s{many['ratio']:>8.2f}  {'-':<16}-"
    )
    print(
        f"{'    with the POST (probes) counted':<40}{'':>16}{'':>16}"
        f"{many['ratio_with_create']:>8.2f}  (POST {many['slipstream_create_s']:.2f} s)"
    )
    label = f"(c) first byte @90% vs @0, {sizes['cold_total'] / GIB:.0f} GiB cold"
    target = f"<{TTFB_LIMIT_S * 1e3:.0f}ms, <={TTFB_FACTOR:g}x"
    print(
        f"{label:<40}{res['first_byte_s_offset0'] * 1e3:>13.1f} ms"
        f"{res['first_byte_s_offset90'] * 1e3:>13.1f} ms{res['ratio']:>8.2f}  {target:<16}"
        f"{verdict[res['passed']]}"
    )
    print(
        f"    resumed transfer: {res['resumed_total_s']:.2f} s "
        f"({res['resumed_bytes_per_s'] / 1e6:.1f} MB/s, CRCs of the earlier members in the "
        f"background); POST of {sizes['cold_members']} URIs {res['create_s']:.2f} s"
    )
    print("(MB = 10^6 bytes; medians of the rounds; (c) anchor column = offset 0)")


def draw_chart(path: Path, sizes: dict[str, int], summary: dict[str, Any]) -> None:
    """Three panels: (a) MB/s vs nginx, (b) MB/s vs zipstream-ng, (c) first-byte times."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    big, many, res = summary["big"], summary["many"], summary["resume"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.8))
    panels = [
        (
            axes[0],
            f"(a) zip of one {sizes['big'] / MIB:.0f} MiB file\nratio {big['ratio']:.2f} "
            f"(target >= {BIG_TARGET})",
            ["nginx (file)", "slipstream (zip)"],
            [big["nginx_bytes_per_s"] / 1e6, big["slipstream_bytes_per_s"] / 1e6],
            "MB/s",
        ),
        (
            axes[1],
            f"(b) zip of {sizes['many']} x {sizes['many_size'] / MIB:.0f} MiB\nratio "
            f"{many['ratio']:.2f} (with POST {many['ratio_with_create']:.2f})",
            ["zipstream-ng\n(in-process)", "slipstream"],
            [many["zipstream_ng_bytes_per_s"] / 1e6, many["slipstream_bytes_per_s"] / 1e6],
            "MB/s",
        ),
        (
            axes[2],
            f"(c) first body byte, cold {sizes['cold_total'] / GIB:.0f} GiB zip\n"
            f"resumed transfer {res['resumed_total_s']:.1f} s",
            ["bytes=0-", f"bytes={RESUME_AT:.0%}-"],
            [res["first_byte_s_offset0"] * 1e3, res["first_byte_s_offset90"] * 1e3],
            "ms",
        ),
    ]
    for ax, title, labels, values, unit in panels:
        bars = ax.bar(labels, values, color=["#999999", "#3b7dd8"])
        texts = [f"{v:.1f}" if v < 100 else f"{v:.0f}" for v in values]
        ax.bar_label(bars, labels=texts, padding=2, fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit)
    axes[2].axhline(TTFB_LIMIT_S * 1e3, color="red", linestyle="dashed", label="50 ms limit")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(out: Path, data: dict[str, Any]) -> None:
    """``zip.json`` and ``zip.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "zip.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    draw_chart(out / "zip.png", data["sizes"], data["summary"])
    print(f"wrote {out / 'zip.json'} and {out / 'zip.png'}")
