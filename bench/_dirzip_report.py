"""The results of ``dirzip.py``: medians, ratios and verdicts against its targets, as a
table, a chart and ``dirzip.json``."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from _common import median
from _servers import RSS_LIMIT_MIB

MIB = 1024**2

# Upper limits: every measured figure must be at most (RSS: below) its limit.
TARGETS = {
    "a_cold_first_byte_s": 0.100,  # (a) first body byte of a cold 2 GB directory
    "a_cold_over_warm": 1.3,  # (a) whole cold zip time / whole warm zip time
    "b_cold_first_byte_s": 0.5,  # (b) first body byte, 20,000 cold one-byte files
    "b_warm_first_byte_s": 0.3,  # (b) ... warm
    "b_cold_over_zipfile": 1.0,  # (b) whole cold zip time / Python zipfile's time
    "c_peak_rss_mib": RSS_LIMIT_MIB,  # (c) server VmHWM zipping 200,000 files
}
TARGET_TEXT = {
    "a_cold_first_byte_s": "<= 100 ms",
    "a_cold_over_warm": "<= 1.3 x",
    "b_cold_first_byte_s": "<= 0.5 s",
    "b_warm_first_byte_s": "<= 0.3 s",
    "b_cold_over_zipfile": "<= 1.0 x",
    "c_peak_rss_mib": f"< {RSS_LIMIT_MIB:.0f} MiB",
}
LABELS = {
    "a_cold_first_byte_s": "(a) cold first byte",
    "a_cold_over_warm": "(a) whole cold / warm",
    "b_cold_first_byte_s": "(b) cold first byte",
    "b_warm_first_byte_s": "(b) warm first byte",
    "b_cold_over_zipfile": "(b) whole cold / zipfile",
    "c_peak_rss_mib": "(c) peak RSS",
}


# (a)'s floor figures kept in ``measured`` (as ``a_<name>``), with no target.
FLOOR_MEASURED = (
    "floor_s",
    "warm_in_floor_s",
    "crc_alone_s",
    "cold_over_floor",
    "floor_over_warm",
)


def size_text(size: int) -> str:
    """``64 MiB`` for whole MiB, else ``700 MB``."""
    return f"{size // MIB:,} MiB" if size % MIB == 0 else f"{size / 1e6:,.0f} MB"


def _case(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of one case's cold/warm pairs (peak RSS: the max of the rounds)."""

    def med(temp: str, key: str) -> float:
        return median([s[temp][key] for s in samples])

    out: dict[str, Any] = {}
    for temp in ("cold", "warm"):
        out[f"{temp}_first_byte_s"] = med(temp, "first_body_s")
        out[f"{temp}_head_s"] = med(temp, "head_s")
        out[f"{temp}_total_s"] = med(temp, "total_s")
        out[f"{temp}_bytes_per_s"] = med(temp, "bytes_per_s")
        out[f"{temp}_server_cpu_s"] = med(temp, "server_cpu_s")
    out["cold_over_warm"] = out["cold_total_s"] / out["warm_total_s"]
    out["zip_bytes"] = samples[0]["cold"]["bytes"]
    out["idle_rss_mib"] = max(s["idle_rss_mib"] for s in samples)
    out["peak_rss_after_cold_mib"] = max(s["hwm_after_cold_mib"] for s in samples)
    out["peak_rss_mib"] = max(s["hwm_mib"] for s in samples)
    return out


FLOOR_NOTE = (
    "floor = the lower bound of the zero-copy sendfile + CRC-from-page-cache design on this "
    "machine; a cold / warm target below floor / warm ({ratio:.2f}) cannot be met by any "
    "design that must read every byte once more to checksum it"
)


def _floor(samples: list[dict[str, Any]], floors: list[dict[str, Any]]) -> dict[str, Any]:
    """(a)'s floor: per round and medians, with cold / floor (the cold of the same round's
    ``slipstream`` side) and floor / warm (its warm)."""
    rounds = [
        {
            "floor_s": f["floor_s"],
            "warm_in_floor_s": f["warm"]["total_s"],
            "crc_in_floor_s": f["crc_s"],
            "crc_alone_s": f["crc_alone_s"],
            "crc_alone_cpu_s": f["crc_alone_cpu_s"],
            "cold_over_floor": s["cold"]["total_s"] / f["floor_s"],
            "floor_over_warm": f["floor_s"] / s["warm"]["total_s"],
        }
        for s, f in zip(samples, floors, strict=True)
    ]
    out: dict[str, Any] = {key: median([r[key] for r in rounds]) for key in rounds[0]}
    cold = median([s["cold"]["total_s"] for s in samples])
    warm = median([s["warm"]["total_s"] for s in samples])
    # As cold_over_warm: ratios of the medians (the per-round ratios are in "rounds").
    out["cold_over_floor"] = cold / out["floor_s"]
    out["floor_over_warm"] = out["floor_s"] / warm
    out["floor_cold_s"] = median([f["cold"]["total_s"] for f in floors])
    out["rounds"] = rounds
    return out


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    """Per case medians and ratios; ``passed``: each target of the cases run -> bool."""
    summary: dict[str, Any] = {}
    passed: dict[str, bool] = {}
    extra: dict[str, float] = {}  # (a)'s floor: measured, judged by no target
    if "a" in raw:
        a = _case(raw["a"]["slipstream"])
        check = raw["a"]["check"]
        a["check"] = {
            temp: {k: check[temp][k] for k in ("first_body_s", "total_s", "sha256")}
            for temp in ("cold", "warm")
        }
        if raw["a"].get("floor"):
            a["floor"] = _floor(raw["a"]["slipstream"], raw["a"]["floor"])
            extra = {f"a_{key}": a["floor"][key] for key in FLOOR_MEASURED}
        summary["a"] = a
        passed["a_cold_first_byte_s"] = a["cold_first_byte_s"] <= TARGETS["a_cold_first_byte_s"]
        passed["a_cold_over_warm"] = a["cold_over_warm"] <= TARGETS["a_cold_over_warm"]
    if "b" in raw:
        b = _case(raw["b"]["slipstream"])
        b["zipfile_s"] = median([s["total_s"] for s in raw["b"]["zipfile"]])
        b["list_floor_s"] = median([s["list_floor_s"] for s in raw["b"]["zipfile"]])
        b["cold_over_zipfile"] = b["cold_total_s"] / b["zipfile_s"]
        b["warm_over_zipfile"] = b["warm_total_s"] / b["zipfile_s"]
        b["sha256"] = raw["b"]["slipstream"][0]["cold"]["sha256"]
        summary["b"] = b
        passed["b_cold_first_byte_s"] = b["cold_first_byte_s"] <= TARGETS["b_cold_first_byte_s"]
        passed["b_warm_first_byte_s"] = b["warm_first_byte_s"] <= TARGETS["b_warm_first_byte_s"]
        passed["b_cold_over_zipfile"] = b["cold_over_zipfile"] <= TARGETS["b_cold_over_zipfile"]
    if "c" in raw:
        c = _case(raw["c"]["slipstream"])
        c["sha256"] = raw["c"]["slipstream"][0]["cold"]["sha256"]
        summary["c"] = c
        passed["c_peak_rss_mib"] = c["peak_rss_mib"] < TARGETS["c_peak_rss_mib"]
    summary["measured"] = {key: measured(summary, key) for key in passed}
    summary["measured"].update(extra)
    summary["passed"] = passed
    return summary


def measured(summary: dict[str, Any], key: str) -> float:
    """The figure a target judges, from the summary."""
    case, _, name = key.partition("_")
    figure = {"c_peak_rss_mib": "peak_rss_mib"}.get(key, name)
    return float(summary[case][figure])


def print_table(sizes: dict[str, int], summary: dict[str, Any]) -> None:
    """The results as a table on stdout (``sizes`` as in the run's JSON data)."""
    result = {True: "PASS", False: "FAIL"}
    head = f"{'case':<40}{'cold':>12}{'warm':>12}{'anchor':>12}{'ratio':>8}  {'target':<12}result"
    print(head)
    print("-" * len(head))

    def row(
        label: str, cold: str, warm: str, anchor: str, ratio: str, key: str = "", note: str = ""
    ) -> None:
        target = TARGET_TEXT.get(key, note)
        ok = result[summary["passed"][key]] if key else ""
        print(f"{label:<40}{cold:>12}{warm:>12}{anchor:>12}{ratio:>8}  {target:<12}{ok}")

    def ms(seconds: float) -> str:
        return f"{seconds * 1e3:,.1f} ms"

    def sec(seconds: float) -> str:
        return f"{seconds:,.2f} s"

    for case, title in (
        ("a", f"(a) {sizes['big_files']} x {size_text(sizes['big_size'])}"),
        ("b", f"(b) {sizes['small_files']:,} one-byte files in {sizes['small_dirs']} dirs"),
        ("c", f"(c) {sizes['rss_files']:,} one-byte files in {sizes['rss_dirs']} dirs"),
    ):
        if case not in summary:
            continue
        s = summary[case]
        print(f"{title}: zip of {s['zip_bytes']:,} bytes")
        first = f"{case}_cold_first_byte_s" if case in "ab" else ""
        row(
            "    first body byte",
            ms(s["cold_first_byte_s"]),
            ms(s["warm_first_byte_s"]),
            "",
            "",
            first,
        )
        if case == "b":
            row(
                "    (warm first body byte)",
                "",
                ms(s["warm_first_byte_s"]),
                "",
                "",
                "b_warm_first_byte_s",
            )
        row("    response head", ms(s["cold_head_s"]), ms(s["warm_head_s"]), "", "")
        if case == "a":
            row(
                "    whole zip (anchor: warm)",
                sec(s["cold_total_s"]),
                sec(s["warm_total_s"]),
                sec(s["warm_total_s"]),
                f"{s['cold_over_warm']:.2f}",
                "a_cold_over_warm",
            )
            rates = f"{s['cold_bytes_per_s'] / 1e6:,.0f} / {s['warm_bytes_per_s'] / 1e6:,.0f}"
            print(f"    MB/s cold / warm: {rates}")
            if "floor" in s:
                _floor_rows(s, row, sec)
        elif case == "b":
            row(
                "    whole zip (anchor: Python zipfile)",
                sec(s["cold_total_s"]),
                sec(s["warm_total_s"]),
                sec(s["zipfile_s"]),
                f"{s['cold_over_zipfile']:.2f}",
                "b_cold_over_zipfile",
            )
            print(
                f"    first-byte floor: scandir + lstat of every file {ms(s['list_floor_s'])}"
                " (in this process; the ETag and length need every file's version and size)"
            )
        else:
            row("    whole zip", sec(s["cold_total_s"]), sec(s["warm_total_s"]), "", "")
        row(
            "    server CPU during the request",
            sec(s["cold_server_cpu_s"]),
            sec(s["warm_server_cpu_s"]),
            "",
            "",
        )
        rss = f"{s['peak_rss_mib']:.1f} MiB"
        rss_row = f"    peak RSS (idle {s['idle_rss_mib']:.0f} MiB)"
        if case == "c":
            row(rss_row, f"{s['peak_rss_after_cold_mib']:.1f} MiB", rss, "", "", "c_peak_rss_mib")
        else:
            row(rss_row, f"{s['peak_rss_after_cold_mib']:.1f} MiB", rss, "", "")
    print(
        "(medians of the rounds; cold = fresh server and state dir; first byte and whole time "
        "from just before the request; peak RSS = VmHWM after the cold / after the warm "
        "download, max of the rounds)"
    )


def _floor_rows(s: dict[str, Any], row: Any, sec: Any) -> None:
    """(a)'s floor in the table: the floor (anchor column) beside the warm download inside
    it, ratio floor / warm; cold / floor; the CRC pass; the rounds; what the floor means."""
    f = s["floor"]
    row(
        "    floor: warm + CRC pass at once",
        "",
        sec(f["warm_in_floor_s"]),
        sec(f["floor_s"]),
        f"{f['floor_over_warm']:.2f}",
        note="floor / warm",
    )
    row(
        "    cold / floor",
        sec(s["cold_total_s"]),
        "",
        sec(f["floor_s"]),
        f"{f['cold_over_floor']:.2f}",
        note="no target",
    )
    crc = f"{f['crc_alone_s']:.2f} s alone ({f['crc_alone_cpu_s']:.2f} s CPU)"
    print(f"    CRC pass: {crc}, {f['crc_in_floor_s']:.2f} s inside the floor")
    per_round = "; ".join(
        f"{r['floor_s']:.2f} s (warm {r['warm_in_floor_s']:.2f} s, cold / floor "
        f"{r['cold_over_floor']:.2f})"
        for r in f["rounds"]
    )
    print(f"    floor per round: {per_round}")
    note = FLOOR_NOTE.format(ratio=f["floor_over_warm"])
    print("    (" + textwrap.fill(note + ")", width=96, subsequent_indent="     "))


def _margins(summary: dict[str, Any]) -> dict[str, float]:
    """Each judged figure as limit / measured, so that >= 1 passes (RSS: > 1)."""
    return {
        LABELS[key]: TARGETS[key] / max(summary["measured"][key], 1e-9) for key in summary["passed"]
    }


def draw_chart(path: Path, sizes: dict[str, int], summary: dict[str, Any]) -> None:
    """Six panels: (a) first byte, (a) whole, (b) first byte, (b) whole, RSS, margins."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, grid = plt.subplots(2, 3, figsize=(16, 9))
    axes = list(grid.flat)
    gray, blue, light = "#999999", "#3b7dd8", "#b9cde8"

    def bars(ax: Any, labels: list[str], values: list[float], unit: str, colors: list[str]) -> None:
        drawn = ax.bar(labels, values, color=colors)
        ax.bar_label(drawn, labels=[f"{v:,.3g} {unit}" for v in values], padding=2, fontsize=8)
        ax.set_ylabel(unit)

    def limit(ax: Any, value: float, text: str, values: list[float], color: str = "red") -> None:
        ax.axhline(value, color=color, linestyle="dashed", label=text)
        ax.set_ylim(0, max([*values, value]) * 1.25)
        ax.legend(fontsize=7)

    def missing(ax: Any, case: str) -> bool:
        if case in summary:
            return False
        ax.text(0.5, 0.5, f"({case}) not run", ha="center", va="center")
        ax.set_axis_off()
        return True

    ax = axes[0]
    if not missing(ax, "a"):
        a = summary["a"]
        values = [a["cold_first_byte_s"] * 1e3, a["warm_first_byte_s"] * 1e3]
        bars(ax, ["cold", "warm"], values, "ms", [blue, light])
        limit(ax, TARGETS["a_cold_first_byte_s"] * 1e3, "cold limit 100 ms", values)
        ax.set_title(
            f"(a) {sizes['big_files']} x {size_text(sizes['big_size'])}: first body byte",
            fontsize=9,
        )
    ax = axes[1]
    if not missing(ax, "a"):
        a = summary["a"]
        values = [a["cold_total_s"], a["warm_total_s"]]
        labels, colors = ["cold", "warm"], [blue, gray]
        title = f"(a) whole zip: cold / warm = {a['cold_over_warm']:.2f}"
        if "floor" in a:
            values.append(a["floor"]["floor_s"])
            labels.append("floor (warm + CRC)")
            colors.append("#e0a030")
            title += f", cold / floor = {a['floor']['cold_over_floor']:.2f}"
        bars(ax, labels, values, "s", colors)
        factor = TARGETS["a_cold_over_warm"]
        limit(ax, factor * a["warm_total_s"], f"cold limit {factor:g} x warm", values)
        ax.set_title(title, fontsize=9)
    ax = axes[2]
    if not missing(ax, "b"):
        b = summary["b"]
        values = [b["cold_first_byte_s"], b["warm_first_byte_s"]]
        bars(ax, ["cold", "warm"], values, "s", [blue, light])
        limit(ax, TARGETS["b_cold_first_byte_s"], "cold limit 0.5 s", values)
        ax.axhline(
            TARGETS["b_warm_first_byte_s"],
            color="orange",
            linestyle="dashed",
            label="warm limit 0.3 s",
        )
        ax.legend(fontsize=7)
        ax.set_title(f"(b) {sizes['small_files']:,} one-byte files: first body byte", fontsize=9)
    ax = axes[3]
    if not missing(ax, "b"):
        b = summary["b"]
        values = [b["zipfile_s"], b["cold_total_s"], b["warm_total_s"]]
        bars(
            ax,
            ["Python zipfile", "slipstream cold", "slipstream warm"],
            values,
            "s",
            [gray, blue, light],
        )
        limit(ax, b["zipfile_s"], "cold limit 1.0 x zipfile", values)
        ax.set_title(f"(b) whole zip: cold / zipfile = {b['cold_over_zipfile']:.2f}", fontsize=9)
    ax = axes[4]
    cases = [c for c in ("a", "b", "c") if c in summary]
    values = [summary[c]["peak_rss_mib"] for c in cases]
    bars(
        ax,
        [f"({c})" if c == "c" else f"({c}) reported" for c in cases],
        values,
        "MiB",
        [blue if c == "c" else light for c in cases],
    )
    limit(ax, RSS_LIMIT_MIB, f"(c) limit {RSS_LIMIT_MIB:.0f} MiB", values)
    ax.set_title(f"server peak RSS (VmHWM); (c) = {sizes['rss_files']:,} files", fontsize=9)
    ax = axes[5]
    margins = _margins(summary)
    values = list(margins.values())
    drawn = ax.bar(
        list(margins), values, color=["#4a9a4a" if v >= 1 else "#c0392b" for v in values]
    )
    ax.bar_label(drawn, labels=[f"{v:.2f}" for v in values], padding=2, fontsize=8)
    ax.axhline(1.0, color="black", linestyle="dashed")
    ax.tick_params(axis="x", labelrotation=25, labelsize=7)
    ax.set_title("every target: limit / measured (>= 1 passes)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(out: Path, data: dict[str, Any]) -> None:
    """``dirzip.json`` and ``dirzip.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "dirzip.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    draw_chart(out / "dirzip.png", data["sizes"], data["summary"])
    print(f"wrote {out / 'dirzip.json'} and {out / 'dirzip.png'}")
