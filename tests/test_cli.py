"""The sheets-sync command as a person runs it (in-process, real fakes behind it)."""

from __future__ import annotations

import datetime as dt
import io

import pytest

from sheets_sync.cli.main import main
from sheets_sync.pipeline.render import FIRST_DATA_ROW
from sheets_sync.store.db import take_write_lock
from tests.plugin_fakes import INSTANTLY_KEY, SERVICE_ACCOUNT_EMAIL


@pytest.fixture
def env(monkeypatch, settings):
    monkeypatch.setenv("SHEETS_SYNC_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SHEETS_SYNC_INSTANTLY_API_URL", settings.instantly_api_url)
    monkeypatch.setenv("SHEETS_SYNC_SHEETS_API_URL", settings.sheets_api_url)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS",
                       str(settings.google_application_credentials))
    monkeypatch.setenv("SHEETS_SYNC_RETRY_MAX_WAIT", "1")
    monkeypatch.setenv("INSTANTLY_API_KEY", INSTANTLY_KEY)
    return monkeypatch


@pytest.fixture
def campaign(fake_instantly):
    ws = fake_instantly.add_workspace(INSTANTLY_KEY)
    cid = ws.add_campaign("CLI campaign")
    ws.record(cid, dt.date(2026, 1, 10), 0, 0, sent=30, unique_replies=3)
    ws.record(cid, dt.date(2026, 1, 10), 0, 1, sent=20, unique_replies=1)
    ws.record(cid, dt.date(2026, 3, 1), 1, 0, sent=99)
    return cid


def link(key):
    return f"https://docs.google.com/spreadsheets/d/{key}/edit#gid=0"


def test_adhoc_sync_prints_rows_tab_and_link(env, capsys, fake_sheets, spreadsheet_id, campaign):
    code = main(["sync", "--spreadsheet", link(spreadsheet_id), "--campaign", campaign,
                 "--start", "2026-01-01", "--end", "2026-01-31", "--worksheet", "January"])
    out = capsys.readouterr().out
    assert code == 0
    assert "Wrote 3 rows to tab 'January' (created)" in out
    assert f"https://docs.google.com/spreadsheets/d/{spreadsheet_id}/edit#gid=" in out
    grid = fake_sheets.values(spreadsheet_id, "January")
    assert [r[:2] for r in grid[FIRST_DATA_ROW:]] == [["Step 1", "A"], ["Step 1", "B"],
                                                      ["Total", None]]
    assert INSTANTLY_KEY not in out


def test_adhoc_sync_unshared_sheet_exits_nonzero_with_the_fix(env, capsys, fake_sheets, campaign):
    private = fake_sheets.create_spreadsheet("Private", shared_with=())
    code = main(["sync", "--spreadsheet", link(private)])
    err = capsys.readouterr().err
    assert code == 1
    assert SERVICE_ACCOUNT_EMAIL in err and "Editor" in err
    assert "Traceback" not in err


def test_wrong_instantly_key_is_reported(env, capsys, spreadsheet_id, campaign):
    env.setenv("INSTANTLY_API_KEY", "not-the-right-key")
    assert main(["sync", "--spreadsheet", link(spreadsheet_id)]) == 1
    err = capsys.readouterr().err
    assert "Instantly API key was rejected" in err
    assert "not-the-right-key" not in err


def test_malformed_link_is_refused(env, capsys):
    assert main(["sync", "--spreadsheet", "https://example.com/sheet"]) == 2
    assert "not a Google Sheets link" in capsys.readouterr().err


def test_bad_setting_names_the_variable(env, capsys, spreadsheet_id):
    env.setenv("SHEETS_SYNC_HTTP_READ_TIMEOUT", "soon")
    assert main(["sync", "--spreadsheet", link(spreadsheet_id)]) == 2
    assert "SHEETS_SYNC_HTTP_READ_TIMEOUT" in capsys.readouterr().err


def test_missing_google_credentials_say_how_to_set_them(env, capsys, spreadsheet_id, campaign):
    env.delenv("GOOGLE_APPLICATION_CREDENTIALS")
    assert main(["sync", "--spreadsheet", link(spreadsheet_id)]) == 2
    assert "GOOGLE_APPLICATION_CREDENTIALS" in capsys.readouterr().err


def test_users_api_keys_and_stored_sync(env, capsys, monkeypatch, fake_sheets, spreadsheet_id,
                                        campaign, runtime):
    from sheets_sync import store

    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    assert main(["db", "upgrade"]) == 0
    assert main(["users", "create", "Ops@Example.com", "--password-stdin"]) == 0
    assert main(["api-keys", "create", "ops@example.com"]) == 0
    api_key = capsys.readouterr().out.strip().splitlines()[-1]
    assert api_key.startswith("ssk_")
    with runtime.session_factory() as s, s.begin():
        take_write_lock(s)
        user = store.user_for_api_key(s, api_key)
        assert user is not None and user.email == "ops@example.com"
        conn = store.create_connection(
            s, user, fernet=runtime.fernet, name="Ops", instantly_api_key=INSTANTLY_KEY,
            spreadsheet_url=link(spreadsheet_id), worksheet_title="Ops tab", campaign_ids=[],
            date_range={"preset": "all_time"}, include_opportunities=False, schedule="off",
            schedule_time=None, schedule_weekday=None, timezone="UTC", options={},
        )
        conn_id = conn.id
    assert main(["sync", str(conn_id)]) == 0
    out = capsys.readouterr().out
    assert "succeeded: wrote 4 rows" in out
    assert fake_sheets.values(spreadsheet_id, "Ops tab")[FIRST_DATA_ROW][0] == "Step 1"
    with runtime.session_factory() as s:
        runs = store.list_runs(s, store.get_user_by_email(s, "ops@example.com"), conn_id)
        assert [(r.status, r.trigger, r.rows_written) for r in runs] == [("succeeded", "cli", 4)]
        # Campaign-less: steps, today's history steps and the overview at Instantly,
        # metadata + batchUpdate at Google.
        assert runs[0].http_calls == 5


def test_keys_rotate_lets_the_old_key_be_dropped(env, capsys, runtime, settings):
    from cryptography.fernet import Fernet

    from sheets_sync import store
    from sheets_sync.config import load_settings
    from sheets_sync.jobs.runtime import build_runtime

    old = (settings.data_dir / "encryption.key").read_text().strip()
    new = Fernet.generate_key().decode()
    with runtime.session_factory() as s, s.begin():
        user = store.create_user(s, "rot@example.com", "a long enough password")
        conn = store.create_connection(
            s, user, fernet=runtime.fernet, name="R", instantly_api_key=INSTANTLY_KEY,
            spreadsheet_url=link("k" * 44), worksheet_title="T", campaign_ids=[],
            date_range={"preset": "all_time"}, include_opportunities=False, schedule="off",
            schedule_time=None, schedule_weekday=None, timezone="UTC", options={},
        )
        conn_id = conn.id
    env.setenv("SHEETS_SYNC_ENCRYPTION_KEYS", f"{new},{old}")
    assert main(["keys", "rotate"]) == 0
    assert "Re-encrypted 1 stored Instantly key" in capsys.readouterr().out
    env.setenv("SHEETS_SYNC_ENCRYPTION_KEYS", new)  # the old key is gone now
    rt = build_runtime(load_settings())
    with rt.session_factory() as s:
        from sheets_sync.store.models import Connection

        assert store.decrypted_api_key(rt.fernet, s.get(Connection, conn_id)) == INSTANTLY_KEY
    rt.engine.dispose()
