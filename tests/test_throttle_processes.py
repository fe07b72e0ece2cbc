"""The sign-in limit holds across web processes: two real gunicorn servers (one worker
process each, as two instances behind a load balancer would be) on one PostgreSQL
schema, with the attempts alternating between them."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet

from sheets_sync.config import Settings
from sheets_sync.jobs.runtime import build_runtime
from sheets_sync.store.migrate import upgrade
from sheets_sync.store.users import create_user
from tests.plugin_web import csrf_token
from tests.worker_helpers import ROOT, worker_env

pytestmark = pytest.mark.postgres

LISTENING = re.compile(r"Listening at: (http://127\.0\.0\.1:\d+)")
LIMIT = 4
PASSWORD = "correct horse battery"


def start_gunicorn(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:0", "--workers", "1",
         "--threads", "2", "--no-control-socket", "web:create_app()"],
        env=env, cwd=str(ROOT), stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        match = LISTENING.search(text)
        if match and "Booting worker" in text:
            base = match.group(1)
            try:
                if requests.get(base + "/healthz", timeout=5).status_code == 200:
                    return proc, base
            except requests.ConnectionError:
                pass
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"gunicorn did not start:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture
def two_servers(postgres_url: str, tmp_path: Path) -> Iterator[list[str]]:
    settings = Settings(data_dir=tmp_path / "instance", database_url=postgres_url)
    upgrade(postgres_url)
    rt = build_runtime(settings)
    with rt.session_factory() as s, s.begin():
        create_user(s, "ann@example.com", PASSWORD)
    rt.engine.dispose()
    env = worker_env(settings) | {
        # Shared by both, as in any multi-instance deploy (no generated per-instance keys).
        "SHEETS_SYNC_SECRET_KEY": "test-secret-" + "x" * 40,
        "SHEETS_SYNC_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "SHEETS_SYNC_LOGIN_MAX_FAILURES": str(LIMIT),
    }
    procs, bases = [], []
    try:
        for n in range(2):
            proc, base = start_gunicorn(env, tmp_path / f"gunicorn-{n}.log")
            procs.append(proc)
            bases.append(base)
        yield bases
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def sign_in(base: str, password: str) -> requests.Response:
    browser = requests.Session()
    page = browser.get(base + "/login", timeout=10)
    return browser.post(base + "/login", data={
        "email": "ann@example.com", "password": password,
        "csrf_token": csrf_token(page.text)}, allow_redirects=False, timeout=30)


def test_the_sign_in_limit_holds_across_two_gunicorn_processes(two_servers):
    statuses = [sign_in(two_servers[n % 2], "wrong password!!").status_code
                for n in range(LIMIT)]
    assert statuses == [401] * LIMIT
    for base in two_servers:
        blocked = sign_in(base, PASSWORD)
        assert blocked.status_code == 429, base
        assert int(blocked.headers["Retry-After"]) > 0
        assert "Too many sign-in attempts" in blocked.text
