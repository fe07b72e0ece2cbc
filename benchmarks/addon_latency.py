"""The Sheets add-on's latency, against the local fakes with 100 ms added to every call to
Google (Sheets, Drive, the certs endpoint) and Instantly.

    python benchmarks/addon_latency.py [--samples 20] [--latency 0.1]

The app runs in the threaded server and embedded worker that ``sheets-sync serve`` runs
(SQLite store). Requests are signed like Google's (RS256 ID tokens, certs served by a
local signer) and posted over loopback, so the round trip is the server's time plus well
under a millisecond.

1. Sidebar open → card: the homepage trigger in a spreadsheet with 3 connections (the
   status card). The first request also fetches Google's certs (one 100 ms call); after
   that they are cached, and a card needs no outbound call at all.
2. Check key: one Instantly call (the campaign list) → the form with the picker.
3. Refresh now → tab written: from sending the button's request to the moment the Sheets
   fake applied the refresh's batchUpdate (steady state: tab id and campaign known).

Medians and p95 are printed; nothing here is a pass/fail test. Targets: card < 300 ms,
Refresh now → tab written < 1 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402
from werkzeug.serving import WSGIRequestHandler, make_server  # noqa: E402

from sheets_sync import store  # noqa: E402
from sheets_sync.config import Settings  # noqa: E402
from sheets_sync.jobs.runtime import build_runtime  # noqa: E402
from sheets_sync.jobs.worker import EmbeddedWorker  # noqa: E402
from sheets_sync.store.db import session_scope  # noqa: E402
from sheets_sync.store.migrate import upgrade  # noqa: E402
from sheets_sync.store.models import GoogleIdentity  # noqa: E402
from tests.addon_helpers import ADDON_ACCOUNT, CLIENT_ID, find_button  # noqa: E402
from tests.fakes.drive_api import FakeDriveServer  # noqa: E402
from tests.fakes.google_signer import GoogleSigner  # noqa: E402
from tests.fakes.instantly_api import FakeInstantlyServer  # noqa: E402
from tests.fakes.sheets_api import FakeSheetsServer, make_service_account_info  # noqa: E402
from web import create_app  # noqa: E402

EMAIL = "bench@bench-project.iam.gserviceaccount.com"
KEY = "bench-instantly-key-0001"


class _Quiet(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def report(label: str, samples: list[float]) -> None:
    print(f"{label}, n={len(samples)}: median {statistics.median(samples) * 1000:.0f} ms, "
          f"p95 {percentile(samples, 0.95) * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.1)
    args = parser.parse_args()

    sheets_fake = FakeSheetsServer(reads_per_minute=10**6, writes_per_minute=10**6,
                                   project_reads_per_minute=10**6,
                                   project_writes_per_minute=10**6).start()
    instantly_fake = FakeInstantlyServer().start()
    signer = GoogleSigner().start()
    drive = FakeDriveServer(sheets_fake).start()
    info = make_service_account_info(sheets_fake.token_uri, EMAIL)
    sheets_fake.register_service_account(info)
    tmp = Path(tempfile.mkdtemp())
    (tmp / "sa.json").write_text(json.dumps(info))
    ws = instantly_fake.add_workspace(KEY)
    cid = ws.add_campaign("Bench campaign")
    for s in range(3):
        for v in range(2):
            ws.record(cid, dt.date(2026, 11, 1), s, v, sent=100, unique_replies=s + v)
    ssid = sheets_fake.create_spreadsheet("Bench", shared_with=(EMAIL,))
    settings = Settings(data_dir=tmp / "instance", instantly_api_url=instantly_fake.url,
                        sheets_api_url=sheets_fake.url,
                        google_application_credentials=tmp / "sa.json",
                        addon_service_account=ADDON_ACCOUNT, addon_oauth_client_id=CLIENT_ID,
                        google_certs_url=signer.certs_url, drive_api_url=drive.url)
    upgrade(settings.resolved_database_url)
    rt = build_runtime(settings)
    app = create_app({"SETTINGS": settings, "RUNTIME": rt})
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_Quiet)
    base = f"http://127.0.0.1:{server.port}"
    # Google calls the public address; here that is the local server itself.
    rt.settings = settings.model_copy(update={"public_url": base})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    worker = EmbeddedWorker(rt)
    worker.start()

    http = requests.Session()
    user_token = signer.user_token(CLIENT_ID, "sub-bench", "bench@example.com")

    def event(params: dict[str, str] | None = None,
              form: dict[str, list[str]] | None = None) -> dict:
        common: dict = {"hostApp": "SHEETS", "timeZone": {"id": "UTC", "offset": 0}}
        if params:
            common["parameters"] = params
        if form:
            common["formInputs"] = {k: {"stringInputs": {"value": v}} for k, v in form.items()}
        return {"commonEventObject": common,
                "authorizationEventObject": {"userIdToken": user_token,
                                             "userOAuthToken": "ya29.bench"},
                "sheets": {"id": ssid, "title": "Bench", "addonHasFileScopePermission": True}}

    def post(path: str, body: dict) -> tuple[float, dict]:
        url = base + path
        token = signer.system_token(url, ADDON_ACCOUNT)  # minted by "Google", not timed
        t0 = time.monotonic()
        r = http.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
        elapsed = time.monotonic() - t0
        r.raise_for_status()
        return elapsed, r.json()

    # Three connections of this spreadsheet, made by the same person in the sidebar.
    post("/addon/homepage", event())
    with session_scope(rt.session_factory, write=True) as s:
        owner = s.query(GoogleIdentity).one().user  # the account the first visit made
        ids = [
            store.create_connection(
                s, owner, fernet=rt.fernet, name=f"Connection {i}", instantly_api_key=KEY,
                spreadsheet_url=f"https://docs.google.com/spreadsheets/d/{ssid}/edit",
                worksheet_title=f"Tab {i}", campaign_ids=[cid], schedule="daily",
                schedule_time="09:00").id
            for i in range(3)
        ]
    for i in ids:  # warm-up: each tab created, campaign cached
        with session_scope(rt.session_factory, write=True) as s:
            store.enqueue_run(s, s.get(store.Connection, i), "addon")
        rt.notify_enqueued()
    time.sleep(2.0)

    sheets_fake.latency = instantly_fake.latency = args.latency
    drive.latency = signer.latency = args.latency
    # A new process: the first card pays for fetching the certs once.
    app.extensions["addon_tokens"].request.forget()
    cold, _ = post("/addon/homepage", event())
    print(f"First card of a process (fetches Google's certs once): {cold * 1000:.0f} ms")

    cards = [post("/addon/homepage", event())[0] for _ in range(args.samples)]
    report("Sidebar open → status card (3 connections), round trip on loopback", cards)

    _t, form = post("/addon/connect/start", event())
    checks = [post("/addon/connect/check-key", event(form={"instantly_api_key": [KEY]}))[0]
              for _ in range(args.samples)]
    report("Check key → form with the campaign picker (1 Instantly call)", checks)

    _t, body = post("/addon/homepage", event())
    card = body["action"]["navigations"][0]["pushCard"]
    button = find_button(card, "Refresh now")
    assert button is not None
    act = button["onClick"]["action"]
    params = {p["key"]: p["value"] for p in act["parameters"]}
    path = act["function"][len(base):]

    def refresh_and_wait() -> float:
        sheets_fake.reset_calls()
        t0 = time.monotonic()
        post(path, event(params))
        while True:
            writes = [c for c in sheets_fake.calls if c.kind == "batchUpdate" and c.status == 200]
            if writes:
                return writes[0].at - t0
            time.sleep(0.002)

    refreshes = []
    for _ in range(args.samples):
        refreshes.append(refresh_and_wait())
        time.sleep(0.4)  # let the run be recorded before the next press
    report(f"Refresh now → tab written ({args.latency * 1000:.0f} ms per call in the fakes)",
           refreshes)

    worker.stop()
    server.shutdown()
    for fake in (instantly_fake, sheets_fake, signer, drive):
        fake.stop()


if __name__ == "__main__":
    main()
