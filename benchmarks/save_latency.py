"""What Save and Check access cost: seconds a person waits, and outbound calls made.

    python benchmarks/save_latency.py [--saves 15] [--latency 0.1] [--campaigns 250]

The app is served by the threaded server ``sheets-sync serve`` uses (SQLite store), both
fakes adding ``--latency`` seconds to every HTTP call, with a workspace of
``--campaigns`` campaigns. A signed-in session posts the new-connection form (a) with no
campaign selected, (b) with two campaigns (the first and the last made), (c) for a sheet
not shared yet; then presses Check access on a saved connection.
Printed per case: the median and p95 seconds from POST to answer, and the Instantly and
Sheets calls (reads, writes) one Save made. Nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from sheets_sync import store  # noqa: E402
from sheets_sync.config import Settings  # noqa: E402
from sheets_sync.jobs.runtime import build_runtime  # noqa: E402
from sheets_sync.store.migrate import upgrade  # noqa: E402
from tests.fakes.instantly_api import FakeInstantlyServer  # noqa: E402
from tests.fakes.sheets_api import FakeSheetsServer, make_service_account_info  # noqa: E402
from web import create_app  # noqa: E402

EMAIL = "bench@bench-project.iam.gserviceaccount.com"
KEY = "bench-instantly-key-0001"
PASSWORD = "benchmark password 1"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def csrf(http: requests.Session, url: str) -> str:
    page = http.get(url).text
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--saves", type=int, default=15)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--campaigns", type=int, default=250)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    sheets_fake = FakeSheetsServer(reads_per_minute=10**6, writes_per_minute=10**6,
                                   project_reads_per_minute=10**6,
                                   project_writes_per_minute=10**6).start()
    instantly_fake = FakeInstantlyServer().start()
    info = make_service_account_info(sheets_fake.token_uri, EMAIL)
    sheets_fake.register_service_account(info)
    tmp = Path(tempfile.mkdtemp())
    (tmp / "sa.json").write_text(json.dumps(info))
    ws = instantly_fake.add_workspace(KEY)
    first = ws.add_campaign("First")
    for n in range(args.campaigns - 2):
        ws.add_campaign(f"Filler {n}")
    last = ws.add_campaign("Last")
    settings = Settings(data_dir=tmp / "instance", instantly_api_url=instantly_fake.url,
                        sheets_api_url=sheets_fake.url,
                        google_application_credentials=tmp / "sa.json")
    upgrade(settings.resolved_database_url)
    rt = build_runtime(settings)
    shared = sheets_fake.create_spreadsheet("Bench", shared_with=(EMAIL,))
    unshared = sheets_fake.create_spreadsheet("Not yet", shared_with=())
    with rt.session_factory() as s, s.begin():
        store.create_user(s, "bench@example.com", PASSWORD)

    app = create_app({"SETTINGS": settings, "RUNTIME": rt})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.port}"
    http = requests.Session()
    http.post(base + "/login", data={"email": "bench@example.com", "password": PASSWORD,
                                     "csrf_token": csrf(http, base + "/login")})
    token = csrf(http, base + "/connections/new")
    # Warm-up: Google's token, the TLS-free sessions, the templates.
    sheets_fake.latency = instantly_fake.latency = 0.0

    def form(sheet: str, campaigns: str) -> dict[str, str]:
        return {
            "csrf_token": token, "name": "Bench", "instantly_api_key": KEY,
            "spreadsheet_url": f"https://docs.google.com/spreadsheets/d/{sheet}/edit",
            "worksheet_title": "Instantly steps", "campaign_ids": campaigns,
            "date_preset": "all_time", "schedule": "off", "timezone": "UTC",
        }

    def timed(post: dict[str, str], url: str = "/connections/new",
              accept: str = "text/html") -> tuple[float, int, int, int]:
        sheets_fake.reset_calls()
        instantly_fake.reset_calls()
        t0 = time.monotonic()
        r = http.post(base + url, data=post, allow_redirects=False,
                      headers={"Accept": accept, "X-CSRFToken": token})
        seconds = time.monotonic() - t0
        assert r.status_code in (200, 302), r.status_code
        return (seconds, instantly_fake.count(),
                sheets_fake.count("get"), sheets_fake.count("batchUpdate"))

    timed(form(shared, ""))
    sheets_fake.latency = instantly_fake.latency = args.latency
    cases = {
        "(a) all campaigns, sheet shared": form(shared, ""),
        f"(b) 2 of {args.campaigns} campaigns": form(shared, f"{first}, {last}"),
        "(c) sheet not shared yet": form(unshared, ""),
    }
    print(f"{args.latency * 1000:.0f} ms per HTTP call in the fakes, n={args.saves} each")
    for label, post in cases.items():
        samples = [timed(post) for _ in range(args.saves)]
        seconds = [s[0] for s in samples]
        _, inst, reads, writes = samples[-1]
        print(f"Save {label}: median {statistics.median(seconds) * 1000:.0f} ms, "
              f"p95 {percentile(seconds, 0.95) * 1000:.0f} ms; Instantly calls {inst}, "
              f"Sheets reads {reads}, writes {writes}")
    samples = [timed({"csrf_token": token}, "/connections/1/check-access",
                     "application/json") for _ in range(args.saves)]
    seconds = [s[0] for s in samples]
    _, inst, reads, writes = samples[-1]
    print(f"Check access: median {statistics.median(seconds) * 1000:.0f} ms, "
          f"p95 {percentile(seconds, 0.95) * 1000:.0f} ms; Instantly calls {inst}, "
          f"Sheets reads {reads}, writes {writes}")
    server.shutdown()
    instantly_fake.stop()
    sheets_fake.stop()


if __name__ == "__main__":
    main()
