"""The results of ``zip.py``: medians, ratios and verdicts against its targets, as a
table, a chart and ``zip.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from _common import median
from _servers import RSS_LIMIT_MIB

MIB = 1024**2
GIB = 1024**3
COLD_TARGET = 0.7  # (a) cold-CRC zip bytes/s over nginx proxy_pass bytes/s
WARM_TARGET = 0.9  # (a) warm-CRC zip bytes/s over nginx proxy_pass bytes/s
MANY_TARGET = 0.7  # (b) zip bytes/s over (a) cold zip bytes/s, same run
TTFB_LIMIT_S = 0.050  # (c) first body byte of the resumed request
TTFB_FACTOR = 2.0  # (c) ... and at most this times the offset-0 first byte
SLOW_LIMIT_S = 2.0  # (d) POST + GET of the zip from the slow upstream
RESUME_AT = 0.9
RSS_CASES = ("big", "many", "slow")  # the cases whose peak RSS is judged

TARGETS = {
    "big_cold_over_proxy_pass": COLD_TARGET,
    "big_warm_over_proxy_pass": WARM_TARGET,
    "many_over_big_cold": MANY_TARGET,
    "resume_first_byte_s": TTFB_LIMIT_S,
    "resume_factor": TTFB_FACTOR,
    "slow_whole_s": SLOW_LIMIT_S,
    "rss_mib": RSS_LIMIT_MIB,
}

# (a)'s sides as the table and the chart show them, the anchor first.
BIG_SIDES = {
    "proxy_pass": "nginx proxy_pass (anchor)",
    "nginx": "nginx, the file itself",
    "pump": "floor: Trio pump",
    "pump_crc": "floor: Trio pump + CRC-32",
    "floor_httpx": "floor: fetcher receive only",
    "cold": "slipstream zip, cold CRC",
    "warm": "slipstream zip, warm CRC",
}


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    """Medians, ratios and verdicts."""

    def med(case: str, side: str, key: str) -> float:
        return median([s[key] for s in raw[case][side]])

    anchor = med("big", "proxy_pass", "bytes_per_s")
    big_rates = {side: med("big", side, "bytes_per_s") for side in BIG_SIDES}
    cold, warm = big_rates["cold"], big_rates["warm"]
    many_rate = med("many", "slipstream", "bytes_per_s")
    many_floor = med("many", "pump_crc", "bytes_per_s")
    upstream_many = med("many", "upstream_curl", "bytes_per_s")
    design_floor = med("many", "relay_floor", "bytes_per_s")
    thread_floor = med("many", "thread_floor", "bytes_per_s")
    zs = med("many", "zipstream_ng", "bytes_per_s")
    ttfb0 = med("resume", "offset0", "first_body_s")
    ttfb90 = med("resume", "offset90", "first_body_s")
    slow_whole = med("slow", "slipstream", "seconds")
    rss = {
        case: {
            "idle_mib": max(s["idle_mib"] for s in samples),
            "peak_mib": max(s["hwm_mib"] for s in samples),
            "limit_mib": RSS_LIMIT_MIB if case in RSS_CASES else None,
        }
        for case, samples in raw["rss"].items()
    }
    rss_passed = all(rss[case]["peak_mib"] < RSS_LIMIT_MIB for case in RSS_CASES)
    summary = {
        "big": {
            "bytes_per_s": big_rates,
            "ratio_to_proxy_pass": {side: rate / anchor for side, rate in big_rates.items()},
            "ratio_to_nginx": {side: rate / big_rates["nginx"] for side, rate in big_rates.items()},
            "slipstream_cpu_s_per_gb": {
                side: med("big", side, "slipstream_cpu_s") / (med("big", side, "bytes") / 1e9)
                for side in ("cold", "warm")
            },
            "cold_target": COLD_TARGET,
            "warm_target": WARM_TARGET,
        },
        "many": {
            "zipstream_ng_bytes_per_s": zs,
            "slipstream_bytes_per_s": many_rate,
            "big_cold_bytes_per_s": cold,
            "slipstream_create_s": med("many", "slipstream", "create_s"),
            "ratio": many_rate / zs,
            "ratio_with_create": med("many", "slipstream", "bytes_per_s_with_create") / zs,
            "ratio_to_big_cold": many_rate / cold,
            "floor_bytes_per_s": many_floor,
            "floor_ratio_to_big_cold": many_floor / cold,
            "ratio_to_floor": many_rate / many_floor,
            "upstream_curl_bytes_per_s": upstream_many,
            "upstream_curl_ratio_to_big_cold": upstream_many / cold,
            "design_floor_bytes_per_s": design_floor,
            "design_floor_ratio_to_big_cold": design_floor / cold,
            "thread_floor_bytes_per_s": thread_floor,
            "thread_floor_ratio_to_big_cold": thread_floor / cold,
            "target": MANY_TARGET,
            "zip_bytes": {
                "zipstream_ng": raw["many"]["zipstream_ng"][0]["bytes"],
                "slipstream": raw["many"]["slipstream"][0]["bytes"],
            },
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
        },
        "slow": {
            "whole_s": slow_whole,
            "get_s": med("slow", "slipstream", "get_s"),
            "create_s": med("slow", "slipstream", "create_s"),
            "first_body_s": med("slow", "slipstream", "first_body_s"),
            "proxy_first_body_s": med("slow", "proxy_check", "first_body_s"),
            "limit_s": SLOW_LIMIT_S,
            "ratio_to_limit": slow_whole / SLOW_LIMIT_S,
        },
        "rss": rss,
        "verdicts": {
            "big_cold": cold / anchor >= COLD_TARGET,
            "big_warm": warm / anchor >= WARM_TARGET,
            "many_vs_big_cold": many_rate / cold >= MANY_TARGET,
            "resume": ttfb90 < TTFB_LIMIT_S and ttfb90 <= TTFB_FACTOR * ttfb0,
            "slow": slow_whole <= SLOW_LIMIT_S,
            "rss": rss_passed,
        },
    }
    return summary


def _mbps(rate: float) -> str:
    return f"{rate / 1e6:,.0f} MB/s"


def print_table(sizes: dict[str, int], summary: dict[str, Any]) -> None:
    """The results as a table on stdout (``sizes`` as in the run's JSON data)."""
    big, many, res, slow = (summary[k] for k in ("big", "many", "resume", "slow"))
    verdicts = summary["verdicts"]
    result = {True: "PASS", False: "FAIL"}
    head = f"{'case':<44}{'anchor':>14}{'measured':>14}{'ratio':>8}  {'target':<14}result"
    print(head)
    print("-" * len(head))

    def row(label: str, anchor: str, value: str, ratio: str, target: str, ok: str) -> None:
        print(f"{label:<44}{anchor:>14}{value:>14}{ratio:>8}  {target:<14}{ok}")

    print(f"(a) one {sizes['big'] / MIB:,.0f} MiB file; anchor nginx proxy_pass")
    anchor = _mbps(big["bytes_per_s"]["proxy_pass"])
    for side, label in BIG_SIDES.items():
        if side == "proxy_pass":
            continue
        target, ok = "", ""
        if side in ("cold", "warm"):
            goal = big[f"{side}_target"]
            target, ok = f">= {goal}", result[verdicts[f"big_{side}"]]
        ratio = f"{big['ratio_to_proxy_pass'][side]:.2f}"
        row(f"    {label}", anchor, _mbps(big["bytes_per_s"][side]), ratio, target, ok)
    cpu = big["slipstream_cpu_s_per_gb"]
    print(
        f"    slipstream CPU s per GB of zip: cold {cpu['cold']:.2f}, warm {cpu['warm']:.2f};"
        f" proxy_pass = {big['ratio_to_nginx']['proxy_pass']:.2f} x nginx's file"
    )
    label = f"(b) {sizes['many']} x {sizes['many_size'] / MIB:.0f} MiB, cold"
    row(
        f"{label} vs (a) cold",
        _mbps(many["big_cold_bytes_per_s"]),
        _mbps(many["slipstream_bytes_per_s"]),
        f"{many['ratio_to_big_cold']:.2f}",
        f">= {many['target']}",
        result[verdicts["many_vs_big_cold"]],
    )
    row(
        "    floor: Trio pump, pipelined + CRC-32",
        _mbps(many["big_cold_bytes_per_s"]),
        _mbps(many["floor_bytes_per_s"]),
        f"{many['floor_ratio_to_big_cold']:.2f}",
        "reported",
        f"slipstream = {many['ratio_to_floor']:.2f} x floor",
    )
    row(
        "    design floor: back to back, C relay",
        _mbps(many["big_cold_bytes_per_s"]),
        _mbps(many["design_floor_bytes_per_s"]),
        f"{many['design_floor_ratio_to_big_cold']:.2f}",
        "reported",
        "-",
    )
    row(
        "    thread floor: the loop idle per member",
        _mbps(many["big_cold_bytes_per_s"]),
        _mbps(many["thread_floor_bytes_per_s"]),
        f"{many['thread_floor_ratio_to_big_cold']:.2f}",
        "reported",
        "-",
    )
    row(
        "    upstream pace: curl from nginx, no relay",
        _mbps(many["big_cold_bytes_per_s"]),
        _mbps(many["upstream_curl_bytes_per_s"]),
        f"{many['upstream_curl_ratio_to_big_cold']:.2f}",
        "reported",
        "-",
    )
    row(
        "    vs zipstream-ng (in-process)",
        _mbps(many["zipstream_ng_bytes_per_s"]),
        "",
        f"{many['ratio']:.2f}",
        "reported",
        "-",
    )
    row(
        f"    ... with the POST ({many['slipstream_create_s']:.2f} s) counted",
        "",
        "",
        f"{many['ratio_with_create']:.2f}",
        "reported",
        "-",
    )
    label = f"(c) first byte @90% vs @0, {sizes['cold_total'] / GIB:.0f} GiB cold"
    row(
        label,
        f"{res['first_byte_s_offset0'] * 1e3:.1f} ms",
        f"{res['first_byte_s_offset90'] * 1e3:.1f} ms",
        f"{res['ratio']:.2f}",
        f"<{TTFB_LIMIT_S * 1e3:.0f}ms, <={TTFB_FACTOR:g}x",
        result[verdicts["resume"]],
    )
    print(
        f"    resumed transfer: {res['resumed_total_s']:.2f} s "
        f"({res['resumed_bytes_per_s'] / 1e6:.1f} MB/s); POST of {sizes['cold_members']} URIs "
        f"{res['create_s']:.2f} s"
    )
    label = f"(d) {sizes['slow']} x {sizes['slow_size'] / 1024:.0f} KiB, +{sizes['delay_ms']} ms"
    row(
        f"{label}, POST + GET",
        f"{slow['limit_s']:.1f} s",
        f"{slow['whole_s']:.2f} s",
        f"{slow['ratio_to_limit']:.2f}",
        f"<= {slow['limit_s']:g} s",
        result[verdicts["slow"]],
    )
    print(
        f"    GET alone {slow['get_s']:.2f} s (first body byte {slow['first_body_s'] * 1e3:.0f}"
        f" ms), POST {slow['create_s']:.2f} s; one member straight from the delaying proxy:"
        f" first body byte {slow['proxy_first_body_s'] * 1e3:.1f} ms"
    )
    for case, rss in summary["rss"].items():
        limit = rss["limit_mib"]
        row(
            f"peak RSS during {case}" if limit else f"peak RSS during {case} (reported)",
            f"{limit:.0f} MiB" if limit else "",
            f"{rss['peak_mib']:.1f} MiB",
            f"{rss['peak_mib'] / limit:.2f}" if limit else "",
            f"< {limit:.0f} MiB" if limit else "",
            ("PASS" if rss["peak_mib"] < limit else "FAIL") if limit else "-",
        )
    print(
        "(MB = 10^6 bytes; medians of the rounds; RSS = VmHWM of a fresh slipstream per case, "
        "max of the rounds; (c) anchor column = offset 0; (d) anchor column = the limit)"
    )


def _margins(summary: dict[str, Any]) -> dict[str, float]:
    """Each judged figure as measured / required, so that >= 1 passes."""
    big, many, res, slow = (summary[k] for k in ("big", "many", "resume", "slow"))
    ttfb_limit = min(TTFB_LIMIT_S, TTFB_FACTOR * res["first_byte_s_offset0"])
    margins = {
        "(a) cold": big["ratio_to_proxy_pass"]["cold"] / COLD_TARGET,
        "(a) warm": big["ratio_to_proxy_pass"]["warm"] / WARM_TARGET,
        "(b) vs (a) cold": many["ratio_to_big_cold"] / MANY_TARGET,
        "(c) first byte": ttfb_limit / res["first_byte_s_offset90"],
        "(d) POST+GET": SLOW_LIMIT_S / slow["whole_s"],
    }
    for case in RSS_CASES:
        margins[f"RSS {case}"] = RSS_LIMIT_MIB / summary["rss"][case]["peak_mib"]
    return margins


def draw_chart(path: Path, sizes: dict[str, int], summary: dict[str, Any]) -> None:
    """Six panels: (a), (b) in MB/s, (c) first bytes, (d) seconds, RSS, every verdict."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    big, many, res, slow = (summary[k] for k in ("big", "many", "resume", "slow"))
    fig, grid = plt.subplots(2, 3, figsize=(17, 9.5))
    axes = list(grid.flat)
    gray, blue, light = "#999999", "#3b7dd8", "#b9cde8"

    def bars(
        ax: Any, labels: list[str], values: list[float], texts: list[str], colors: list[str]
    ) -> None:
        drawn = ax.bar(labels, values, color=colors)
        ax.bar_label(drawn, labels=texts, padding=2, fontsize=7)
        ax.tick_params(axis="x", labelrotation=25, labelsize=7)
        ax.set_ylim(0, max(values) * 1.25)

    ax = axes[0]
    sides = list(BIG_SIDES)
    bars(
        ax,
        [BIG_SIDES[s].replace(", ", "\n").replace(": ", ":\n") for s in sides],
        [big["bytes_per_s"][s] / 1e6 for s in sides],
        [
            f"{big['bytes_per_s'][s] / 1e6:,.0f}\n{big['ratio_to_proxy_pass'][s]:.2f}x"
            for s in sides
        ],
        [gray, gray, light, light, light, blue, blue],
    )
    ax.set_title(
        f"(a) zip of one {sizes['big'] / MIB:,.0f} MiB file, MB/s (x proxy_pass)\n"
        f"targets: cold >= {COLD_TARGET}, warm >= {WARM_TARGET}",
        fontsize=9,
    )
    ax.set_ylabel("MB/s")

    ax = axes[1]
    values = [
        many["zipstream_ng_bytes_per_s"],
        many["big_cold_bytes_per_s"],
        many["floor_bytes_per_s"],
        many["slipstream_bytes_per_s"],
    ]
    bars(
        ax,
        [
            "zipstream-ng\n(in-process)",
            "slipstream\n(a) cold",
            "floor: pump\npipelined + CRC",
            "slipstream\n(b) cold",
        ],
        [v / 1e6 for v in values],
        [f"{v / 1e6:,.0f}" for v in values[:2]]
        + [f"{v / 1e6:,.0f}\n{v / many['big_cold_bytes_per_s']:.2f}x (a) cold" for v in values[2:]],
        [gray, gray, light, blue],
    )
    ax.set_title(
        f"(b) zip of {sizes['many']} x {sizes['many_size'] / MIB:.0f} MiB, MB/s\n"
        f"target >= {MANY_TARGET} x (a) cold; {many['ratio']:.2f} x zipstream-ng",
        fontsize=9,
    )

    ax = axes[2]
    values = [res["first_byte_s_offset0"] * 1e3, res["first_byte_s_offset90"] * 1e3]
    bars(
        ax,
        ["bytes=0-", f"bytes={RESUME_AT:.0%}-"],
        values,
        [f"{v:.1f}" for v in values],
        [gray, blue],
    )
    ax.axhline(TTFB_LIMIT_S * 1e3, color="red", linestyle="dashed", label="50 ms limit")
    ax.set_ylim(0, max([*values, TTFB_LIMIT_S * 1000.0]) * 1.25)
    ax.legend(fontsize=7)
    ax.set_title(
        f"(c) first body byte, cold {sizes['cold_total'] / GIB:.0f} GiB zip, ms\n"
        f"ratio {res['ratio']:.2f}; resumed transfer {res['resumed_total_s']:.1f} s",
        fontsize=9,
    )

    ax = axes[3]
    values = [slow["whole_s"], slow["get_s"], slow["create_s"]]
    bars(
        ax,
        ["POST + GET", "GET alone", "POST alone"],
        values,
        [f"{v:.2f}" for v in values],
        [blue, light, light],
    )
    ax.axhline(SLOW_LIMIT_S, color="red", linestyle="dashed", label=f"{SLOW_LIMIT_S:g} s limit")
    ax.set_ylim(0, max([*values, SLOW_LIMIT_S]) * 1.25)
    ax.legend(fontsize=7)
    ax.set_title(
        f"(d) {sizes['slow']} x {sizes['slow_size'] / 1024:.0f} KiB, each response +"
        f"{sizes['delay_ms']} ms, s\nratio to the limit {slow['ratio_to_limit']:.2f}",
        fontsize=9,
    )

    ax = axes[4]
    cases = list(summary["rss"])
    values = [summary["rss"][c]["peak_mib"] for c in cases]
    bars(
        ax,
        [c if c in RSS_CASES else f"{c}\n(reported)" for c in cases],
        values,
        [f"{v:.0f}" for v in values],
        [blue if c in RSS_CASES else light for c in cases],
    )
    ax.axhline(RSS_LIMIT_MIB, color="red", linestyle="dashed", label=f"{RSS_LIMIT_MIB:.0f} MiB")
    ax.set_ylim(0, max([*values, RSS_LIMIT_MIB]) * 1.25)
    ax.legend(fontsize=7)
    ax.set_title("slipstream peak RSS (VmHWM, fresh process per case), MiB", fontsize=9)

    ax = axes[5]
    margins = _margins(summary)
    values = list(margins.values())
    bars(
        ax,
        list(margins),
        values,
        [f"{v:.2f}" for v in values],
        ["#4a9a4a" if v >= 1 else "#c0392b" for v in values],
    )
    ax.axhline(1.0, color="black", linestyle="dashed")
    ax.set_title("every target: measured / required (>= 1 passes)", fontsize=9)

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(out: Path, data: dict[str, Any]) -> None:
    """``zip.json`` and ``zip.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "zip.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    draw_chart(out / "zip.png", data["sizes"], data["summary"])
    print(f"wrote {out / 'zip.json'} and {out / 'zip.png'}")
