"""Seconds from ``sheets-sync serve`` to a first answer, and a sign-in's round trip.

    python benchmarks/serve_startup.py [--runs 5] [--signins 20] [--root PATH]

Each run starts ``python -m sheets_sync.cli.main serve --port 0`` on a fresh data dir
(so the figure includes creating and migrating the SQLite store), polls ``/healthz``
until it answers 200, then times ``--signins`` failed sign-ins (GET /login + POST, each
for another unknown e-mail, limits raised for the run) and stops the server with
SIGTERM. ``--root`` runs another checkout's code (e.g. the previous release) for a
baseline. Medians over the runs are printed; nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

RUNNING = re.compile(r"running on (http://127\.0\.0\.1:\d+/)")
TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def one_run(root: Path, signins: int) -> tuple[float, float]:
    data = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    log = data / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHEETS_SYNC_")}
    env.update({"SHEETS_SYNC_DATA_DIR": str(data / "instance"), "PYTHONPATH": str(root),
                "SHEETS_SYNC_LOGIN_MAX_FAILURES": "10000",
                "SHEETS_SYNC_LOGIN_ADDRESS_MAX_FAILURES": "10000"})
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sheets_sync.cli.main", "serve", "--port", "0"],
        env=env, cwd=str(root), stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )
    try:
        base = None
        while base is None:
            match = RUNNING.search(log.read_text(errors="replace"))
            base = match.group(1) if match else None
            if proc.poll() is not None:
                raise SystemExit(log.read_text())
            time.sleep(0.02)
        while True:
            try:
                if requests.get(base + "healthz", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.02)
        to_first_answer = time.monotonic() - started
        browser = requests.Session()
        times = []
        for n in range(signins):
            t0 = time.monotonic()
            page = browser.get(base + "login", timeout=10).text
            answer = browser.post(base + "login", timeout=10, data={
                "email": f"nobody{n}@example.com", "password": "wrong password!!",
                "csrf_token": TOKEN.search(page).group(1)})
            assert answer.status_code == 401, answer.status_code
            times.append(time.monotonic() - t0)
        return to_first_answer, statistics.median(times)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--signins", type=int, default=20)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args()
    results = [one_run(args.root.resolve(), args.signins) for _ in range(args.runs)]
    print(f"code: {args.root}")
    print(f"start to first answer: median {statistics.median(r[0] for r in results):.2f} s")
    signin_ms = statistics.median(r[1] for r in results) * 1000
    print(f"failed sign-in round trip: median {signin_ms:.0f} ms")


if __name__ == "__main__":
    main()
