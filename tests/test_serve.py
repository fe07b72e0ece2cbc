"""``sheets-sync serve`` as a person runs it: gunicorn in front, the embedded worker in
the same process, migrations on start, a clean stop on Ctrl+C and SIGTERM."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.plugin_fakes import INSTANTLY_KEY
from tests.plugin_web import csrf_token
from tests.web_helpers import sheet_url, workspace_with_campaign
from tests.worker_helpers import ROOT, worker_env

RUNNING = re.compile(r"sheets-sync is running on (http://127\.0\.0\.1:\d+/)")


class Served:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path, url: str) -> None:
        self.proc, self.log, self.url = proc, log, url

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def start_serve(settings, tmp_path: Path) -> Served:
    log = tmp_path / "serve.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sheets_sync.cli.main", "serve", "--port", "0"],
        env=worker_env(settings), cwd=str(ROOT),
        stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        match = RUNNING.search(log.read_text(errors="replace"))
        if match:
            return Served(proc, log, match.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"serve did not start:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture
def served(settings, tmp_path):
    server = start_serve(settings, tmp_path)
    yield server
    if server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait(10)


def sign_up(base: str, email: str = "ann@example.com") -> requests.Session:
    browser = requests.Session()
    page = browser.get(base + "signup", timeout=10)
    response = browser.post(base + "signup", data={
        "email": email, "password": "correct horse battery", "confirm": "correct horse battery",
        "csrf_token": csrf_token(page.text)}, allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text[:500]
    return browser


def test_serve_runs_gunicorn_with_the_embedded_worker_and_stops_on_sigterm(
    served, settings, fake_instantly, spreadsheet_id, fake_sheets
):
    workspace_with_campaign(fake_instantly)
    health = requests.get(served.url + "healthz", timeout=10)
    assert health.status_code == 200
    assert health.headers["Server"].startswith("gunicorn")
    assert settings.resolved_database_url.endswith("sheets-sync.sqlite3")
    assert (settings.data_dir / "sheets-sync.sqlite3").exists(), "migrated on start"

    browser = sign_up(served.url)
    page = browser.get(served.url + "connections/new", timeout=10)
    saved = browser.post(served.url + "connections/new", data={
        "name": "Q1 outbound", "instantly_api_key": INSTANTLY_KEY,
        "spreadsheet_url": sheet_url(spreadsheet_id), "worksheet_title": "Instantly steps",
        "date_preset": "all_time", "schedule": "off", "timezone": "UTC",
        "csrf_token": csrf_token(page.text)}, allow_redirects=False, timeout=10)
    assert saved.status_code == 302, saved.text[:2000]
    fake_sheets.reset_calls()  # Save proved edit rights with a write of its own
    dashboard = browser.get(served.url, timeout=10).text
    connection_id = re.search(r"/connections/(\d+)/refresh", dashboard).group(1)
    queued = browser.post(
        f"{served.url}connections/{connection_id}/refresh",
        data={"csrf_token": csrf_token(dashboard)},
        headers={"Accept": "application/json", "X-Requested-With": "fetch"}, timeout=10,
    ).json()["run"]
    # The embedded worker in the gunicorn process picks the run up by itself.
    deadline = time.monotonic() + 60
    status = queued["status"]
    while time.monotonic() < deadline and status in ("queued", "running"):
        time.sleep(0.2)
        status = browser.get(served.url.rstrip("/") + queued["status_url"],
                             headers={"Accept": "application/json"}, timeout=10
                             ).json()["run"]["status"]
    assert status == "succeeded", served.text()[-3000:]
    assert fake_sheets.count("batchUpdate", spreadsheet_id, status=200) == 1
    assert fake_sheets.values(spreadsheet_id, "Instantly steps")[3][:2] == ["Step 1", "A"]

    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(60) == 0
    log = served.text()
    assert "run finished" in log, "the app's run lines are logged under gunicorn"
    assert "Traceback" not in log


def test_ctrl_c_stops_serve_cleanly_and_a_replayed_cookie_is_refused(served):
    browser = sign_up(served.url)
    raw_cookie = "session=" + browser.cookies["session"]
    fresh = requests.get(served.url + "api-keys", headers={"Cookie": raw_cookie},
                         allow_redirects=False, timeout=10)
    assert fresh.status_code == 200
    home = browser.get(served.url, timeout=10).text
    out = browser.post(served.url + "logout", data={"csrf_token": csrf_token(home)},
                       allow_redirects=False, timeout=10)
    assert out.status_code == 302
    replayed = requests.get(served.url + "api-keys", headers={"Cookie": raw_cookie},
                            allow_redirects=False, timeout=10)
    assert replayed.status_code == 302
    assert replayed.headers["Location"].startswith("/login")

    served.proc.send_signal(signal.SIGINT)
    assert served.proc.wait(60) == 0
    assert "Traceback" not in served.text()


def test_create_app_configures_logging_unless_the_host_did(settings):
    script = (
        "import logging, sys\n"
        "from web import create_app\n"
        "if sys.argv[1] == 'host': logging.basicConfig(level=logging.WARNING, stream=sys.stdout)\n"
        "create_app()\n"
        "logging.getLogger('sheets_sync.worker').info('run finished connection_id=1')\n"
        "print(len(logging.getLogger().handlers))\n"
    )
    env = worker_env(settings)
    alone = subprocess.run([sys.executable, "-c", script, "alone"], env=env, cwd=str(ROOT),
                           capture_output=True, text=True, timeout=60)
    assert alone.returncode == 0, alone.stderr
    assert "INFO sheets_sync.worker run finished connection_id=1" in alone.stderr
    hosted = subprocess.run([sys.executable, "-c", script, "host"], env=env, cwd=str(ROOT),
                            capture_output=True, text=True, timeout=60)
    assert hosted.returncode == 0, hosted.stderr
    # The host's own configuration stands: one handler, its level, nothing added.
    assert hosted.stdout.strip().splitlines()[-1] == "1"
    assert "run finished" not in hosted.stderr + hosted.stdout
