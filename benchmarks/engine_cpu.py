"""Engine CPU per refresh: the pure steps alone, every feature on, no HTTP.

    python benchmarks/engine_cpu.py [--runs 9] [--history-days 30] [--rows 100,1000]

For a report of 100 and of 1,000 rows (one campaign with two subsequences, opportunities,
subjects, winner calls, notes, chart, and a history tab already holding
``--history-days`` days of rows) it times, with ``time.process_time``, what a refresh
computes between "Instantly answered and the sheet was read" and "the body leaves for
Google": the report (and the two history days' reports), the notes, the history plan,
every request, and the JSON bytes requests encodes for gspread's ``batchUpdate`` (the
two tabs' cells are written as JSON text while the requests are built, so "every request"
holds most of the encoding and "JSON encoding" the splicing of the rest). The
inputs are the golden test's scenarios (``tests/engine_scenarios.py``), so what is timed
is exactly what the goldens pin. Figures are medians of ``--runs`` runs, after one
warm-up; the per-step lines time each step on its own. Nothing here is a pass/fail test.

The whole refresh is timed twice: with the interpreter's default garbage-collector
settings, and as it runs in a ``sheets-sync worker`` or ``serve`` process, after
``settle_garbage_collector()`` (startup objects frozen, collections every 50,000 new
objects; see ``sheets_sync/cli/process.py``). ``--gc default`` or ``--gc worker`` keeps
one of them for the per-step lines too (default: both, per-step lines as a worker).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sheets_sync.cli.process import settle_garbage_collector  # noqa: E402
from sheets_sync.pipeline import history as history_tab  # noqa: E402
from sheets_sync.pipeline.notes import plan_notes, read_notes, row_key  # noqa: E402
from sheets_sync.pipeline.refresh import plan_requests  # noqa: E402
from sheets_sync.pipeline.request_body import batch_update_body  # noqa: E402
from tests import engine_scenarios as sc  # noqa: E402


def median_ms(fn: Callable[[], Any], runs: int) -> float:
    fn()  # warm-up: imports, caches
    samples = []
    for _ in range(runs):
        t0 = time.process_time()
        fn()
        samples.append((time.process_time() - t0) * 1000)
    return statistics.median(samples)


def measure(rows: int, runs: int, history_days: int, modes: list[str]) -> None:
    scenario = sc.every_feature(rows, history_days=history_days)
    report = sc.report_of(scenario)
    read = sc.sheet_read(scenario, report)
    spec = scenario.spec()
    history = sc.history_rows(scenario, report)
    requests_, _ = plan_requests(spec, report, read, now=sc.NOW, history_rows=history)
    body = batch_update_body(requests_)
    main, hist = read.tabs["main"], read.tabs["history"]
    assert main is not None and hist is not None
    keys = [row_key(r) for r in report.all_rows]

    def history_plan() -> None:
        edit = history_tab.plan_days(history_tab.existing_rows(hist.rows), sc.TODAY,
                                     history or {})
        history_tab.requests(edit, sc.HISTORY_ID)

    def whole() -> bytes:
        return sc.refresh_body(scenario, read)

    print(f"\n{rows:,} rows ({len(report.rows)} report rows, {len(hist.rows) - 1:,} history "
          f"rows read, body {len(body) / 1024:,.0f} KiB), median of {runs}:")
    for mode in modes:
        if mode == "worker":
            settle_garbage_collector()
        label = "whole refresh, GC " + ("as in a worker" if mode == "worker" else "defaults")
        print(f"  {label:<40} {median_ms(whole, runs):8.1f} ms")
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("  report", lambda: sc.report_of(scenario)),
        ("  history days' reports", lambda: sc.history_rows(scenario, report)),
        ("  notes (read + plan)", lambda: plan_notes(read_notes(main.rows), keys)),
        ("  history plan + requests", history_plan),
        ("  every request (plan_requests)",
         lambda: plan_requests(spec, report, read, now=sc.NOW, history_rows=history)),
        ("  JSON encoding", lambda: batch_update_body(requests_)),
    ]
    for label, fn in steps:
        print(f"  {label:<40} {median_ms(fn, runs):8.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--history-days", type=int, default=30)
    parser.add_argument("--rows", default="100,1000")
    parser.add_argument("--gc", choices=("both", "default", "worker"), default="both")
    args = parser.parse_args()
    modes = ["default", "worker"] if args.gc == "both" else [args.gc]
    for rows in (int(r) for r in args.rows.split(",")):
        gc.unfreeze()
        gc.set_threshold(700, 10, 10)  # the interpreter's defaults, for each size afresh
        measure(rows, args.runs, args.history_days, modes)


if __name__ == "__main__":
    main()
