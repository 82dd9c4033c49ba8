"""Served setups compared back to back: `make bench-compare` (bench/README.md, "Server and
JSON, measured").

Each round runs bench/run.py in quick mode (one round of each read) once per setup, in
turn, the order reversed every other round so a drift of the machine's load falls on both
sides alike. A setup is `server` or `server+orjson` (BENCH_SERVER, BENCH_JSON of run.py).
Printed per setup and read: the median server CPU per request and req/s, and the median of
the per-round ratios against the first setup (each pair measured within a minute); the
open-loop latency of the profile read. On a shared machine read the CPU column first.

Environment: BENCH_COMPARE (gunicorn,granian), BENCH_COMPARE_ROUNDS (3), BENCH_READS
(healthz,profile,signin), and any knob of run.py (BENCH_SECONDS, BENCH_GRANIAN_ARGS, …).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SETUPS = os.environ.get("BENCH_COMPARE", "gunicorn,granian").split(",")
ROUNDS = int(os.environ.get("BENCH_COMPARE_ROUNDS", "3"))
READS = os.environ.get("BENCH_READS", "healthz,profile,signin")


def _run(setup: str, out: Path) -> dict[str, Any]:
    server, _, json_variant = setup.partition("+")
    env = {
        **os.environ,
        "BENCH_QUICK": "1",
        "BENCH_ROUNDS": "1",
        "BENCH_READS": READS,
        "BENCH_SERVER": server,
        "BENCH_JSON": json_variant,
        "BENCH_QUICK_OUT": str(out),
    }
    print(f"-- {setup}", flush=True)
    subprocess.run([sys.executable, str(HERE / "run.py")], env=env, check=True)
    return json.loads(out.read_text())


def _ratio(values: list[float], base: list[float]) -> float:
    return round(statistics.median(v / b for v, b in zip(values, base, strict=True)), 3)


def main() -> None:
    results: dict[str, list[dict[str, Any]]] = {setup: [] for setup in SETUPS}
    with tempfile.TemporaryDirectory(prefix="gatehouse-compare-") as folder:
        for round_no in range(ROUNDS):
            order = SETUPS if round_no % 2 == 0 else SETUPS[::-1]
            for setup in order:
                results[setup].append(_run(setup, Path(folder) / f"{setup}-{round_no}.json"))
    base = SETUPS[0]
    lines = [
        "",
        f"{ROUNDS} rounds, order reversed every other round; ratios are medians of per-round "
        f"ratios against {base}; load averages {[r['load'] for r in results[base]]}.",
        "",
        "| setup | read | CPU ms/request (rounds) | CPU ÷ base | req/s (rounds) | req/s ÷ base |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for setup, runs in results.items():
        for read in runs[0]["reads"]:
            cpu = [run["reads"][read]["cpu_ms_per_request"] for run in runs]
            rps = [run["reads"][read]["rps"] for run in runs]
            base_cpu = [run["reads"][read]["cpu_ms_per_request"] for run in results[base]]
            base_rps = [run["reads"][read]["rps"] for run in results[base]]
            lines.append(
                f"| {setup} | {read} | {statistics.median(cpu):.3f} "
                f"({', '.join(f'{v:.3f}' for v in cpu)}) | {_ratio(cpu, base_cpu)} | "
                f"{statistics.median(rps):.0f} ({', '.join(f'{v:.0f}' for v in rps)}) | "
                f"{_ratio(rps, base_rps)} |"
            )
    lines += [
        "",
        "| setup | open-loop read | target req/s | achieved req/s | p50 ms (rounds) | "
        "p99 ms (rounds) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for setup, runs in results.items():
        for read in runs[0]["open_loop"]:
            rows = [run["open_loop"][read] for run in runs]

            def rounds(key: str, rows: list[dict[str, Any]] = rows) -> str:
                values = [row[key] for row in rows]
                return f"{statistics.median(values):.1f} ({', '.join(f'{v:.1f}' for v in values)})"

            lines.append(
                f"| {setup} | {read} | {rounds('target_rps')} | {rounds('achieved_rps')} | "
                f"{rounds('p50_ms')} | {rounds('p99_ms')} |"
            )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
