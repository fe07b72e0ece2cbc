"""Helpers shared by the web page tests: fill the connection form, run a queued sync."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sheets_sync import store
from sheets_sync.jobs.sync import execute_run
from sheets_sync.store.models import Connection, SyncRun
from tests.plugin_fakes import INSTANTLY_KEY
from tests.plugin_web import csrf_token

FETCH = {"Accept": "application/json", "X-Requested-With": "fetch"}


def sheet_url(spreadsheet_id: str, gid: int = 0) -> str:
    return f"https://docs.google.com/spreadsheets/d/{spreadsheet_id}/edit?gid={gid}#gid={gid}"


def token(client) -> str:
    return csrf_token(client.get("/connections/new").get_data(as_text=True))


def connection_form(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "Q1 outbound",
        "instantly_api_key": INSTANTLY_KEY,
        "spreadsheet_url": sheet_url("1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"),
        "worksheet_title": "Instantly steps",
        "campaign_ids": "",
        "date_preset": "all_time",
        "date_start": "",
        "date_end": "",
        "schedule": "off",
        "schedule_time": "",
        "schedule_weekday": "0",
        "timezone": "UTC",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def create_connection(client, **overrides: Any):
    data = connection_form(**overrides)
    data["csrf_token"] = token(client)
    return client.post("/connections/new", data=data)


def connection_ids(runtime) -> list[int]:
    with runtime.session_factory() as s:
        return [c.id for c in s.query(Connection).order_by(Connection.id)]


def only_connection(runtime) -> Connection:
    with runtime.session_factory() as s:
        connections = s.query(Connection).all()
        assert len(connections) == 1
        return connections[0]


def runs_of(runtime, connection_id: int) -> list[SyncRun]:
    with runtime.session_factory() as s:
        return list(
            s.query(SyncRun).filter(SyncRun.connection_id == connection_id).order_by(SyncRun.id)
        )


def run_queued(runtime, run_id: int):
    """What the worker does: claim the queued run and carry it out."""
    with runtime.session_factory() as s, s.begin():
        assert store.claim_run(s, run_id, "test-worker", lease_seconds=60) is not None
    return execute_run(runtime, run_id)


def workspace_for(fake_instantly, key: str = INSTANTLY_KEY):
    """The fake workspace behind ``key``, made on first use."""
    try:
        return fake_instantly.workspace(key)
    except KeyError:
        return fake_instantly.add_workspace(key)


def workspace_with_campaign(fake_instantly, name: str = "Q1 outbound", key: str = INSTANTLY_KEY):
    workspace = workspace_for(fake_instantly, key)
    campaign_id = workspace.add_campaign(name)
    day = dt.date(2026, 1, 5)
    workspace.record(campaign_id, day, step=0, variant=0, sent=100, opened=60, replies=5)
    workspace.record(campaign_id, day, step=0, variant=1, sent=90, opened=40, replies=9)
    workspace.record(campaign_id, day, step=1, variant=0, sent=70, opened=20, replies=2)
    return workspace, campaign_id
