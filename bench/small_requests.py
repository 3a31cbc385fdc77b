"""Where a small reply's time goes: 1 KiB requests/s, slipstream against its floors.

Side by side in one run, ``wrk -t1 -c32`` against:

* nginx serving the file (the anchor of ``throughput.py``);
* a bare Trio loop with a canned reply (``_floor_server.py raw``): what Trio costs;
* a bare Trio + h11 loop (``_floor_server.py h11``): what the required HTTP layer costs;
* slipstream ``/healthz`` (connection loop, routing, JSON reply, no file);
* slipstream ``/api/download`` of the 1 KiB file (auth, storage, ranges, digests).

Each ratio is against nginx.  The h11 floor bounds what any h11-based server can reach
here; ``throughput.py``'s 1 KiB target (>= 0.20 of nginx) is judged against it.
Writes ``results/small_requests.json`` and a PNG.  ``--quick`` for 2 s runs, 1 round.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import bar_chart, median, write_results
from _servers import (
    WRK_DONE_LUA,
    BenchServer,
    Case,
    Nginx,
    ScriptServer,
    Slipstream,
    machine_info,
    run_wrk,
)


class Floor(ScriptServer):
    """One of the minimal servers in ``_floor_server.py``."""

    def __init__(self, mode: str) -> None:
        super().__init__("_floor_server.py", [mode])
        self.name = f"trio+{mode}" if mode == "h11" else "trio"


class Health(Slipstream):
    """The same slipstream process, asked for ``/healthz``."""

    name = "slipstream /healthz"

    def __init__(self, main: Slipstream) -> None:
        super().__init__()
        self.main = main

    def start(self, root: Path, tmp: Path) -> None:
        """Nothing to start: ``main`` is the process."""

    def url(self, file: str) -> str:
        return f"http://127.0.0.1:{self.main.port}/healthz"

    def worker_pid(self) -> int:
        return self.main.worker_pid()

    def stop(self) -> None:
        """The process belongs to ``main``."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 s runs, 1 round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    rounds, seconds = (1, 2.0) if args.quick else (args.rounds, args.seconds)
    slip = Slipstream()
    servers: list[BenchServer] = [Nginx(), Floor("raw"), Floor("h11"), Health(slip), slip]
    samples: dict[str, list[float]] = {s.name: [] for s in servers}
    case = Case(
        "small32",
        "1 KiB x 32 keep-alive",
        "file-1k.bin",
        32,
        seconds,
        seconds,
        "requests_per_s",
        None,
    )
    with tempfile.TemporaryDirectory(prefix="slipstream-small-") as name:
        tmp = Path(name)
        tmp.chmod(0o755)
        root = tmp / "data"
        root.mkdir(mode=0o755)
        (root / "file-1k.bin").write_bytes(os.urandom(1024))
        script = tmp / "done.lua"
        script.write_text(WRK_DONE_LUA)
        try:
            servers[0].start(root, tmp / "nginx")  # type: ignore[attr-defined]
            for server in servers[1:]:
                server.start(root, tmp)  # type: ignore[attr-defined]
            for server in servers:
                run_wrk(server, case, 1, script, 60)  # warm-up
            for rnd in range(rounds):
                order = servers if rnd % 2 == 0 else servers[::-1]
                for server in order:
                    rps = run_wrk(server, case, seconds, script, 60)["requests_per_s"]
                    samples[server.name].append(rps)
                    print(
                        f"round {rnd + 1}/{rounds} {server.name:<22} {rps:>9.0f} req/s",
                        file=sys.stderr,
                        flush=True,
                    )
                    time.sleep(0.3)
        finally:
            for server in servers:
                server.stop()
    medians = {name: median(values) for name, values in samples.items()}
    anchor = medians["nginx"]
    print(f"{'server':<24}{'req/s':>10}{'vs nginx':>10}")
    for name, value in medians.items():
        print(f"{name:<24}{value:>10.0f}{value / anchor:>10.3f}")
    data: dict[str, Any] = {
        "benchmark": "small_requests",
        "method": f"wrk -t1 -c32 -d{seconds:g}s, {rounds} interleaved rounds, medians",
        "machine": machine_info(),
        "samples_rps": samples,
        "median_rps": medians,
        "ratio_vs_nginx": {name: value / anchor for name, value in medians.items()},
    }
    if not args.quick:
        write_results("small_requests", data)
        labels = [re.sub(r"^slipstream ", "slip ", n) for n in medians]
        bar_chart(
            "small_requests",
            "1 KiB requests/s vs nginx (ratio)",
            labels,
            [v / anchor for v in medians.values()],
            "ratio to nginx",
        )
    return 0  # informational: the gate is throughput.py's small32 target


if __name__ == "__main__":
    sys.exit(main())
