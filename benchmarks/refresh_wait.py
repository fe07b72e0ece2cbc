"""How long a person waits for one refresh, when every API call takes a while to answer.

    python benchmarks/refresh_wait.py [--latency 0.3] [--runs 5] [--campaigns 1,3]

One steady-state refresh (the second and later of a connection: campaign names known)
with every feature on (subjects, winner calls, notes, history, chart, opportunities) and
two subsequences per campaign, against the Instantly and Sheets fakes of ``tests/fakes``,
each adding ``--latency`` seconds to every HTTP call (Instantly answers in 0.2–1 s in
practice). It prints the wall time of the refresh (median of ``--runs``), its Instantly
and Sheets calls, and what one after another would cost: the calls times the latency;
once as a connection whose last refresh worked (its first Instantly call sent with the
rest) and once after a failed refresh (that call alone first). The fakes keep their
connections open, as Google's and Instantly's servers do.
Nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sheets_sync.pipeline.instantly import InstantlyClient  # noqa: E402
from sheets_sync.pipeline.refresh import Features, SyncSpec, run_sync  # noqa: E402
from sheets_sync.pipeline.retry import RetryPolicy  # noqa: E402
from sheets_sync.pipeline.sheets_writer import make_sheets_client  # noqa: E402
from tests.fakes.instantly_api import FakeInstantlyServer  # noqa: E402
from tests.fakes.sheets_api import FakeSheetsServer, make_service_account_info  # noqa: E402

API_KEY = "bench-instantly-key-wait-0001"
ACCOUNT = "sheets-sync@bench.iam.gserviceaccount.com"


def seed(instantly: FakeInstantlyServer, campaigns: int, today: dt.date) -> list[str]:
    ws = instantly.add_workspace(API_KEY)
    ids = []
    for c in range(campaigns):
        cid = ws.add_campaign(f"Campaign {c + 1}", steps=[
            [{"subject": f"S{s} V{v}", "body": "b"} for v in range(2)] for s in range(5)
        ])
        for back in range(3):
            for s in range(5):
                for v in range(2):
                    ws.record(cid, today - dt.timedelta(days=back), s, v, sent=120 + s + v,
                              unique_replies=(s + v) % 7, replies=(s + v) % 7,
                              opportunities=1, unique_opportunities=1)
        for k in range(2):
            sub = ws.add_subsequence(cid, f"Sub {k + 1}", steps=[[{"subject": "x", "body": "y"}]])
            ws.record_subsequence(sub, today, 0, 0, sent=40, unique_replies=2, replies=2)
        ids.append(cid)
    return ids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--campaigns", default="1,3")
    args = parser.parse_args()
    now = dt.datetime.now(dt.UTC)
    for campaigns in (int(n) for n in args.campaigns.split(",")):
        sheets_fake = FakeSheetsServer(keep_alive=True).start()
        instantly_fake = FakeInstantlyServer(keep_alive=True).start()
        try:
            with tempfile.TemporaryDirectory() as tmp:
                info = make_service_account_info(sheets_fake.token_uri, ACCOUNT)
                sheets_fake.register_service_account(info)
                key_file = Path(tmp) / "sa.json"
                key_file.write_text(json.dumps(info))
                book = sheets_fake.create_spreadsheet("Wait bench", shared_with=(ACCOUNT,))
                ids = seed(instantly_fake, campaigns, now.date())
                retry = RetryPolicy()
                instantly = InstantlyClient(API_KEY, base_url=instantly_fake.url, retry=retry)
                sheets = make_sheets_client(key_file, api_url=sheets_fake.url, retry=retry)
                spec = SyncSpec(
                    spreadsheet_id=book, worksheet_title="Instantly steps",
                    campaign_ids=tuple(ids), date_range={"preset": "last_30_days"},
                    include_opportunities=True, features=Features.all_on(),
                )
                first = run_sync(spec, instantly=instantly, sheets=sheets, now=now)
                spec = SyncSpec(
                    **{**spec.__dict__, "sheet_id": first.sheet_id,
                       "known_campaigns": dict(first.campaigns),
                       "history_sheet_id": first.history_sheet_id,
                       "tab_titles": first.saved_options.get("tab_titles", {}),
                       "history_last_day": now.date()},
                )
                instantly_fake.latency = sheets_fake.latency = args.latency
                # A stored connection whose last refresh worked sends its first Instantly
                # call with the rest; after a failed one, that call goes alone first.
                for alone in (False, True):
                    probing = replace(spec, first_call_alone=alone)
                    seconds, out = [], first
                    for _ in range(args.runs):
                        started = time.perf_counter()
                        out = run_sync(probing, instantly=instantly, sheets=sheets, now=now)
                        seconds.append(time.perf_counter() - started)
                    calls = out.instantly_calls + out.sheets_calls
                    print(json.dumps({
                        "campaigns": campaigns, "latency_s": args.latency,
                        "first_call_alone": alone,
                        "instantly_calls": out.instantly_calls,
                        "sheets_calls": out.sheets_calls,
                        "refresh_s": round(statistics.median(seconds), 2),
                        "one_after_another_s": round(calls * args.latency, 2),
                    }), flush=True)
        finally:
            sheets_fake.stop()
            instantly_fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
