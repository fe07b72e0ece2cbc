"""Click-to-sheet latency and dashboard response times, against the local fakes.

    python benchmarks/web_latency.py [--clicks 20] [--connections 50] [--clients 20]

1. Refresh: the app and embedded worker that ``sheets-sync serve`` runs (SQLite store),
   served in-process by Werkzeug's threaded server (``serve`` itself runs gunicorn; see
   serve_startup.py), both fakes adding 100 ms to every HTTP call.
   A signed-in browser session posts the Refresh button's request (with its CSRF token);
   the figure is the time from sending that POST to the moment the fake Sheets API applied
   the batchUpdate. Steady state: the tab id and campaign details are already known.
2. Dashboard: one user with ``--connections`` connections (each with a run in its
   history); ``--clients`` concurrent signed-in sessions each load the dashboard 10 times.

Medians and p95 are printed; nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from sheets_sync import store
from sheets_sync.config import Settings  # noqa: E402
from sheets_sync.jobs.runtime import build_runtime  # noqa: E402
from sheets_sync.jobs.worker import EmbeddedWorker  # noqa: E402
from sheets_sync.store.migrate import upgrade  # noqa: E402
from sheets_sync.store.models import SyncRun  # noqa: E402
from tests.fakes.instantly_api import FakeInstantlyServer  # noqa: E402
from tests.fakes.sheets_api import FakeSheetsServer, make_service_account_info  # noqa: E402
from web import create_app  # noqa: E402

EMAIL = "bench@bench-project.iam.gserviceaccount.com"
KEY = "bench-instantly-key-0001"
PASSWORD = "benchmark password 1"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def signed_in_session(base: str) -> tuple[requests.Session, str]:
    http = requests.Session()
    page = http.get(base + "/login").text
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    http.post(base + "/login", data={"email": "bench@example.com", "password": PASSWORD,
                                     "csrf_token": token})
    home = http.get(base + "/").text
    meta = re.search(r'<meta name="csrf-token" content="([^"]+)"', home).group(1)
    return http, meta


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.1)
    args = parser.parse_args()

    sheets_fake = FakeSheetsServer(reads_per_minute=10**6, writes_per_minute=10**6,
                                   project_reads_per_minute=10**6,
                                   project_writes_per_minute=10**6).start()
    instantly_fake = FakeInstantlyServer().start()
    info = make_service_account_info(sheets_fake.token_uri, EMAIL)
    sheets_fake.register_service_account(info)
    tmp = Path(tempfile.mkdtemp())
    (tmp / "sa.json").write_text(json.dumps(info))
    ws = instantly_fake.add_workspace(KEY)
    cid = ws.add_campaign("Bench campaign")
    for s in range(3):
        for v in range(2):
            ws.record(cid, dt.date(2026, 11, 1), s, v, sent=100, unique_replies=s + v)
    settings = Settings(data_dir=tmp / "instance", instantly_api_url=instantly_fake.url,
                        sheets_api_url=sheets_fake.url,
                        google_application_credentials=tmp / "sa.json")
    upgrade(settings.resolved_database_url)
    rt = build_runtime(settings)
    key = sheets_fake.create_spreadsheet("Bench", shared_with=(EMAIL,))
    with rt.session_factory() as s, s.begin():
        user = store.create_user(s, "bench@example.com", PASSWORD)
        ids = []
        for i in range(args.connections):
            conn = store.create_connection(
                s, user, fernet=rt.fernet, name=f"Connection {i}", instantly_api_key=KEY,
                spreadsheet_url=f"https://docs.google.com/spreadsheets/d/{key}/edit",
                worksheet_title=f"Tab {i}", campaign_ids=[cid],
                date_range={"preset": "all_time"}, include_opportunities=False,
                schedule="daily", schedule_time="09:00", schedule_weekday=None,
                timezone="Europe/Berlin", options={})
            ids.append(conn.id)

    app = create_app({"SETTINGS": settings, "RUNTIME": rt})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    worker = EmbeddedWorker(rt)
    worker.start()
    base = f"http://127.0.0.1:{server.port}"
    http, csrf = signed_in_session(base)
    target = ids[0]

    def click_and_wait() -> float:
        sheets_fake.reset_calls()
        t0 = time.monotonic()
        r = http.post(f"{base}/connections/{target}/refresh",
                      headers={"X-CSRFToken": csrf, "Accept": "application/json"})
        r.raise_for_status()
        while True:
            writes = [c for c in sheets_fake.calls if c.kind == "batchUpdate" and c.status == 200]
            if writes:
                return writes[0].at - t0
            time.sleep(0.002)

    # Warm-up: the first sync finds/creates the tab and caches the campaign.
    click_and_wait()
    time.sleep(0.3)
    sheets_fake.latency = instantly_fake.latency = args.latency
    samples = []
    for _ in range(args.clicks):
        samples.append(click_and_wait())
        time.sleep(0.25)  # let the run be recorded before the next click
    print(f"Refresh click → sheet updated, {args.latency * 1000:.0f} ms per HTTP call in the "
          f"fakes, n={len(samples)}: median {statistics.median(samples) * 1000:.0f} ms, "
          f"p95 {percentile(samples, 0.95) * 1000:.0f} ms")

    # Give every connection a run in its history, then load the dashboard concurrently.
    sheets_fake.latency = instantly_fake.latency = 0.0
    for cid_ in ids[1:]:
        http.post(f"{base}/connections/{cid_}/refresh",
                  headers={"X-CSRFToken": csrf, "Accept": "application/json"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with rt.session_factory() as s:
            active = s.scalar(select(func.count()).select_from(SyncRun).where(
                SyncRun.status.in_(("queued", "running"))))
        if not active:
            break
        time.sleep(0.2)
    sessions = [signed_in_session(base)[0] for _ in range(args.clients)]

    def load(session: requests.Session) -> list[float]:
        out = []
        for _ in range(10):
            t0 = time.monotonic()
            r = session.get(base + "/")
            r.raise_for_status()
            out.append(time.monotonic() - t0)
        return out

    with ThreadPoolExecutor(args.clients) as pool:
        times = [t for batch in pool.map(load, sessions) for t in batch]
    print(f"Dashboard with {args.connections} connections, {args.clients} concurrent clients, "
          f"n={len(times)}: median {statistics.median(times) * 1000:.0f} ms, "
          f"p95 {percentile(times, 0.95) * 1000:.0f} ms")
    worker.stop()
    server.shutdown()
    instantly_fake.stop()
    sheets_fake.stop()


if __name__ == "__main__":
    main()
