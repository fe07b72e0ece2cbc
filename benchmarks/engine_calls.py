"""HTTP calls and engine CPU per refresh, against the local fakes, beside a naive baseline.

    python benchmarks/engine_calls.py [--runs 7]

For reports of 10, 100 and 1,000 rows it measures:
- sheets-sync: Sheets and Instantly HTTP calls on the first sync and in steady state, and
  the CPU time of the syncing thread per steady-state refresh (the fakes serve from other
  threads, so their work is not counted);
- the baseline a typical user writes with gspread: open_by_key → worksheet → clear →
  update → format header → freeze (values only, on the same fake).
Figures are medians over ``--runs`` refreshes. Nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gspread  # noqa: E402

from sheets_sync.engine import SyncSpec, run_sync  # noqa: E402
from sheets_sync.instantly import InstantlyClient  # noqa: E402
from sheets_sync.report import CampaignSection, build_report  # noqa: E402
from sheets_sync.render import render  # noqa: E402
from sheets_sync.sheets import _RebasedSession, load_credentials, make_sheets_client  # noqa: E402
from tests.fakes.instantly_api import FakeInstantlyServer  # noqa: E402
from tests.fakes.sheets_api import FakeSheetsServer, make_service_account_info  # noqa: E402

EMAIL = "bench@bench-project.iam.gserviceaccount.com"
KEY = "bench-instantly-key-0001"
DAY = dt.date(2026, 11, 20)


def shape(rows: int) -> tuple[int, int]:
    """Steps × variants giving about ``rows`` rows."""
    variants = {10: 2, 100: 4, 1000: 10}[rows]
    return rows // variants, variants


def baseline_refresh(client: gspread.Client, key: str, values: list[list]) -> None:
    sh = client.open_by_key(key)
    try:
        ws = sh.worksheet("Baseline")
    except gspread.WorksheetNotFound:
        ws = sh.add_worksheet("Baseline", rows=len(values) + 10, cols=len(values[0]))
    ws.clear()
    ws.update(values, "A1")
    ws.format(f"A1:{gspread.utils.rowcol_to_a1(1, len(values[0]))}", {"textFormat": {"bold": True}})
    ws.freeze(rows=1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    sheets_fake = FakeSheetsServer(
        reads_per_minute=10**6, writes_per_minute=10**6,
        project_reads_per_minute=10**6, project_writes_per_minute=10**6,
    ).start()
    instantly_fake = FakeInstantlyServer().start()
    info = make_service_account_info(sheets_fake.token_uri, EMAIL)
    sheets_fake.register_service_account(info)
    creds_file = Path(tempfile.mkdtemp()) / "sa.json"
    creds_file.write_text(json.dumps(info))
    workspace = instantly_fake.add_workspace(KEY)

    print(f"{'rows':>5} | {'who':<11} | {'first: Sheets':>13} | {'steady: Sheets':>14} | "
          f"{'Instantly/refresh':>17} | {'CPU ms/refresh (median)':>23}")
    print("-" * 100)
    for rows in (10, 100, 1000):
        steps, variants = shape(rows)
        cid = workspace.add_campaign(f"Campaign {rows}")
        for s in range(steps):
            for v in range(variants):
                workspace.record(cid, DAY, s, v, sent=100 + s, unique_opened=40, opened=50,
                                 unique_replies=3, replies=4, clicks=2, unique_clicks=1)
        key = sheets_fake.create_spreadsheet(f"Bench {rows}", shared_with=(EMAIL,))
        instantly = InstantlyClient(KEY, base_url=instantly_fake.url)
        sheets = make_sheets_client(creds_file, api_url=sheets_fake.url)

        spec = SyncSpec(spreadsheet_id=key, worksheet_title="Instantly steps",
                        campaign_ids=(cid,))
        sheets_fake.reset_calls()
        first = run_sync(spec, instantly=instantly, sheets=sheets)
        first_sheets = sheets_fake.count() - sheets_fake.count("token")
        steady = SyncSpec(spreadsheet_id=key, worksheet_title="Instantly steps",
                          campaign_ids=(cid,), sheet_id=first.sheet_id,
                          known_campaigns=first.campaigns)
        cpu, steady_calls, inst_calls = [], [], []
        for _ in range(args.runs):
            sheets_fake.reset_calls()
            t0 = time.thread_time()
            out = run_sync(steady, instantly=instantly, sheets=sheets)
            cpu.append((time.thread_time() - t0) * 1000)
            steady_calls.append(out.sheets_calls)
            inst_calls.append(out.instantly_calls)
        print(f"{rows:>5} | {'sheets-sync':<11} | {first_sheets:>13} | "
              f"{statistics.median(steady_calls):>14.0f} | {statistics.median(inst_calls):>17.0f} | "
              f"{statistics.median(cpu):>23.1f}")

        # Pure steps alone (report + renderer), for the "engine CPU" target.
        stats = instantly.step_analytics(cid)
        pure = []
        for _ in range(args.runs):
            t0 = time.thread_time()
            report = build_report([CampaignSection(cid, "x", stats)], include_opportunities=False,
                                  date_label="All time")
            render(report, sheet_id=1, synced_at=dt.datetime.now(dt.UTC))
            pure.append((time.thread_time() - t0) * 1000)

        session = _RebasedSession(load_credentials(creds_file), sheets_fake.url, lambda: None)
        client = gspread.Client(auth=load_credentials(creds_file), session=session)
        values = [[c.header for c in report.columns]] + [
            ["" if v is None else v for v in r.values] for r in report.all_rows
        ]
        sheets_fake.reset_calls()
        baseline_refresh(client, key, values)
        base_first = sheets_fake.count() - sheets_fake.count("token")
        base_calls, base_cpu = [], []
        for _ in range(args.runs):
            sheets_fake.reset_calls()
            t0 = time.thread_time()
            baseline_refresh(client, key, values)
            base_cpu.append((time.thread_time() - t0) * 1000)
            base_calls.append(sheets_fake.count() - sheets_fake.count("token"))
        print(f"{rows:>5} | {'baseline':<11} | {base_first:>13} | "
              f"{statistics.median(base_calls):>14.0f} | {'(values only)':>17} | "
              f"{statistics.median(base_cpu):>23.1f}")
        print(f"{rows:>5} | {'pure steps':<11} | {'':>13} | {'':>14} | {'':>17} | "
              f"{statistics.median(pure):>23.1f}")
    instantly_fake.stop()
    sheets_fake.stop()


if __name__ == "__main__":
    main()
