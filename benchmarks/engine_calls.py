"""HTTP calls and engine CPU per refresh, against the local fakes, beside a naive baseline.

    python benchmarks/engine_calls.py [--runs 7]

For reports of 10, 100 and 1,000 rows it measures:
- sheets-sync: Sheets and Instantly HTTP calls on the first sync and in steady state, and
  the CPU time of the syncing thread per steady-state refresh (the fakes serve from other
  threads, so their work is not counted);
- the baseline a typical user writes with gspread: open_by_key → worksheet → clear →
  update → format header → freeze (values only, on the same fake).
Figures are medians over ``--runs`` refreshes. Nothing here is a pass/fail test.

Then, with every reader feature on (subjects, winner calls, notes, history, chart):
- Sheets reads and writes per refresh, first sync and steady state, for 10/100/1,000 rows;
- for 1,000 rows with ``--history-days`` (default 90) days of history already on the
  history tab: Sheets calls and the syncing thread's CPU per steady-state refresh, and the
  pure engine CPU (report + notes + history plan + every request) from an in-memory read.
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

from sheets_sync.pipeline import history as history_tab
from sheets_sync.pipeline.instantly import InstantlyClient  # noqa: E402
from sheets_sync.pipeline.refresh import Features, SyncSpec, plan_requests, run_sync  # noqa: E402
from sheets_sync.pipeline.render import render  # noqa: E402
from sheets_sync.pipeline.report import CampaignSection, build_report  # noqa: E402
from sheets_sync.pipeline.sheets_writer import (  # noqa: E402
    TabsRead,
    TabWanted,
    _RebasedSession,
    load_credentials,
    make_sheets_client,
)
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
    parser.add_argument("--history-days", type=int, default=90)
    parser.add_argument("--fake-history-days", type=int, default=5)
    parser.add_argument("--features-only", action="store_true")
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
    for rows in (() if args.features_only else (10, 100, 1000)):
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
              f"{statistics.median(steady_calls):>14.0f} | "
              f"{statistics.median(inst_calls):>17.0f} | "
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
    features_benchmark(args, sheets_fake, workspace, creds_file, instantly_fake.url)
    instantly_fake.stop()
    sheets_fake.stop()


def _reads_writes(fake: FakeSheetsServer) -> tuple[int, int]:
    writes = fake.count("batchUpdate")
    return fake.count() - fake.count("token") - writes, writes


def features_benchmark(args, sheets_fake, workspace, creds_file, instantly_url) -> None:
    print()
    print("Every reader feature on (subjects, winner calls, notes, history, chart, subsequences)")
    print(f"{'rows':>5} | {'first: reads+writes':>19} | {'steady: reads+writes':>20} | "
          f"{'CPU ms/refresh (median)':>23}")
    print("-" * 80)
    features = Features.all_on()
    start = dt.datetime(2026, 8, 1, 9, 0, tzinfo=dt.UTC)
    for rows in (10, 100, 1000):
        steps, variants = shape(rows)
        cid = workspace.add_campaign(f"Features {rows}")
        for s in range(steps):
            for v in range(variants):
                workspace.record(cid, DAY, s, v, sent=100 + s * 3 + v, unique_opened=40,
                                 opened=50, unique_replies=3 + v % 3, replies=4, clicks=2,
                                 unique_clicks=1)
        key = sheets_fake.create_spreadsheet(f"Features {rows}", shared_with=(EMAIL,))
        instantly = InstantlyClient(KEY, base_url=instantly_url)
        # The Python fake serves a 90k-row history read slowly; Google does not.
        sheets = make_sheets_client(creds_file, api_url=sheets_fake.url, timeout=(5, 600))
        spec = SyncSpec(spreadsheet_id=key, worksheet_title="Instantly steps",
                        campaign_ids=(cid,), features=features)
        sheets_fake.reset_calls()
        first = run_sync(spec, instantly=instantly, sheets=sheets, now=start)
        first_rw = _reads_writes(sheets_fake)
        # Days really written through the fake (which clones the whole spreadsheet on
        # every batchUpdate, so it slows down long before Google would); the 90-day CPU
        # figure below uses a synthetic history of --history-days days instead.
        days = args.fake_history_days
        steady = SyncSpec(
            spreadsheet_id=key, worksheet_title="Instantly steps", campaign_ids=(cid,),
            features=features, sheet_id=first.sheet_id, known_campaigns=first.campaigns,
            history_sheet_id=first.saved_options["history_sheet_id"],
            tab_titles=first.saved_options["tab_titles"],
        )
        # Fill the history tab with one snapshot a day, then measure refreshes on the last
        # day (each replaces that day's rows: the steady state of a scheduled sync).
        for day in range(1, days):
            run_sync(steady, instantly=instantly, sheets=sheets,
                     now=start + dt.timedelta(days=day))
            if day % 10 == 0:
                print(f"  … {rows} rows: {day} days of history", file=sys.stderr, flush=True)
        today = start + dt.timedelta(days=days - 1)
        cpu, calls = [], []
        for _ in range(args.runs):
            sheets_fake.reset_calls()
            t0 = time.thread_time()
            run_sync(steady, instantly=instantly, sheets=sheets, now=today)
            cpu.append((time.thread_time() - t0) * 1000)
            calls.append(_reads_writes(sheets_fake))
        reads = statistics.median(c[0] for c in calls)
        writes = statistics.median(c[1] for c in calls)
        history_rows = len(sheets_fake.values(key, "Instantly steps history")) - 1
        print(f"{rows:>5} | {first_rw[0]:>9} + {first_rw[1]:<9} | {reads:>10.0f} + {writes:<9.0f}"
              f"| {statistics.median(cpu):>23.1f}   (history rows: {history_rows:,})")
        if rows == 1000:
            pure_engine_cpu(args, instantly, cid, key, sheets, steady, today)


def pure_engine_cpu(args, instantly, cid, key, sheets, steady, today) -> None:
    """Report + notes + history plan + requests, from a read held in memory: the real
    main tab as read back, and a history of --history-days days × 1,000 keys."""
    read = sheets.read_tabs(key, [
        TabWanted("main", steady.tab_titles["main"], steady.sheet_id, ""),
        TabWanted("history", steady.tab_titles["history"],
                  steady.history_sheet_id, "A:B"),
    ])
    history = read.tabs["history"]
    real = history.rows[1:]
    todays_keys = [r[1] for r in real if history_tab.day_of(r[0]) == today.date()]
    synthetic = [history.rows[0]]
    for back in range(args.history_days - 1, -1, -1):
        serial = {"userEnteredValue": {"numberValue": history_tab.serial(
            today.date() - dt.timedelta(days=back))}}
        synthetic += [[serial, k] for k in todays_keys]
    history.rows = synthetic
    stats = instantly.step_analytics(cid)
    campaign = steady.known_campaigns[cid]
    cpu = []
    for _ in range(args.runs):
        t0 = time.thread_time()
        report = build_report([CampaignSection(cid, campaign.name, stats, campaign)],
                              include_opportunities=False, date_label="All time",
                              subjects=True, winner_calls=True)
        requests, _ = plan_requests(steady, report, TabsRead(read.tabs, read.taken_ids),
                                    now=today)
        json.dumps(requests)  # what gspread serialises for the one write
        cpu.append((time.thread_time() - t0) * 1000)
    history_rows = len(read.tabs["history"].rows) - 1
    print(f"pure engine CPU, 1,000 rows + {history_rows:,} history rows "
          f"({args.history_days} days): {statistics.median(cpu):.1f} ms (median of "
          f"{args.runs}); read parsed rows: main {len(read.tabs['main'].rows)}")



if __name__ == "__main__":
    main()
