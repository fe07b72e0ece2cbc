"""The pages: dashboard, connection form, Test key, Check access, Refresh, history,
delete, API keys."""

from __future__ import annotations

import re
import threading

import pytest

from sheets_sync import store
from sheets_sync.config import Settings
from sheets_sync.links import NOT_A_SHEETS_LINK
from tests.plugin_fakes import INSTANTLY_KEY, SERVICE_ACCOUNT_EMAIL
from tests.plugin_web import csrf_token
from tests.web_helpers import (
    FETCH,
    connection_form,
    create_connection,
    only_connection,
    run_queued,
    runs_of,
    sheet_url,
    token,
    workspace_for,
    workspace_with_campaign,
)
from web import create_app


@pytest.fixture
def signed_in(client, auth, fake_instantly):
    # Save asks Instantly about the key: the test key is a workspace's.
    workspace_for(fake_instantly)
    auth.signup()
    return client


def text(response) -> str:
    return response.get_data(as_text=True)


# --- dashboard --------------------------------------------------------------------------


def test_dashboard_shows_service_account_email_with_copy_button(signed_in):
    page = text(signed_in.get("/"))
    assert SERVICE_ACCOUNT_EMAIL in page
    assert "Share your sheet with this address as Editor" in page
    assert 'data-copy="#sa-email"' in page
    assert "No connections yet" in page


def test_dashboard_explains_missing_google_credentials(tmp_path, fake_instantly, runtime):
    settings = Settings(data_dir=runtime.settings.data_dir, instantly_api_url=fake_instantly.url)
    runtime.settings = settings
    app = create_app({"TESTING": True, "SETTINGS": settings, "RUNTIME": runtime})
    client = app.test_client()
    page = client.get("/signup")
    client.post("/signup", data={
        "email": "ann@example.com", "password": "correct horse battery",
        "confirm": "correct horse battery", "csrf_token": csrf_token(text(page)),
    })
    page = text(client.get("/"))
    assert "Google access is not set up yet" in page
    assert "GOOGLE_APPLICATION_CREDENTIALS" in page
    assert "Share your sheet with this address" not in page


def test_create_connection_and_see_it_on_the_dashboard(signed_in, runtime, spreadsheet_id):
    response = create_connection(
        signed_in, spreadsheet_url=sheet_url(spreadsheet_id), schedule="weekly",
        schedule_time="07:30", schedule_weekday="2", timezone="Europe/Berlin",
        date_preset="last_30_days",
    )
    assert response.status_code == 302, text(response)
    page = text(signed_in.get("/"))
    assert "Q1 outbound" in page
    assert "Weekly on Wednesday at 07:30 (Europe/Berlin)" in page
    assert "Last 30 days" in page
    assert "All campaigns combined" in page
    assert f"https://docs.google.com/spreadsheets/d/{spreadsheet_id}/edit" in page
    assert "Never refreshed" in page
    assert "Refresh</button>" in page

    connection = only_connection(runtime)
    assert connection.schedule == "weekly"
    assert connection.schedule_weekday == 2
    assert connection.date_range == {"preset": "last_30_days"}
    assert connection.instantly_api_key_hint == "…3f9a"


def test_form_refuses_a_link_that_is_not_google_sheets(signed_in, runtime):
    response = create_connection(signed_in, spreadsheet_url="https://evil.example/spreadsheets/d/x")
    assert response.status_code == 400
    assert NOT_A_SHEETS_LINK in text(response)
    assert INSTANTLY_KEY not in text(response)
    with runtime.session_factory() as s:
        assert store.list_connections(s, store.get_user_by_email(s, "ann@example.com")) == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": ""}, "This field is required."),
        ({"instantly_api_key": ""}, "Enter the Instantly API key"),
        ({"worksheet_title": "a/b"}, "A tab title cannot contain"),
        ({"campaign_ids": "Q1 outbound"},
         "“Q1 outbound” is not a campaign id. Paste campaign ids, not names"),
        ({"date_preset": "custom", "date_start": "2026-02-01", "date_end": ""},
         "Pick a start and an end date"),
        ({"date_preset": "custom", "date_start": "2026-02-01", "date_end": "2026-01-01"},
         "The end date is before the start date."),
        ({"schedule": "daily", "schedule_time": "25:00"}, "The time must look like 09:00"),
        ({"timezone": "Mars/Base"}, "Not a valid choice"),
    ],
)
def test_form_field_errors(signed_in, overrides, message):
    response = create_connection(signed_in, **overrides)
    assert response.status_code == 400
    assert message in text(response)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": "n" * 121}, "cannot be longer than 120 characters"),
        ({"name": "n" * 200}, "cannot be longer than 120 characters"),
        ({"instantly_api_key": "has spaces in the middle"}, "does not look like an Instantly"),
        ({"worksheet_title": "two\x01lines"}, "at most 100 characters, on one line"),
        ({"date_preset": "custom", "date_start": "20260101", "date_end": "2026-01-31"},
         "must look like 2026-01-31"),
    ],
)
def test_form_applies_the_connection_rules(signed_in, runtime, overrides, message):
    response = create_connection(signed_in, **overrides)
    assert response.status_code == 400
    assert message in text(response)
    with runtime.session_factory() as s:
        assert store.list_connections(s, store.get_user_by_email(s, "ann@example.com")) == []


def test_form_takes_a_name_of_120_characters(signed_in, runtime):
    assert create_connection(signed_in, name="n" * 120).status_code == 302
    assert only_connection(runtime).name == "n" * 120


def test_custom_dates_campaign_ids_and_checkboxes(signed_in, runtime, fake_instantly):
    c1, c2, c3 = (workspace_for(fake_instantly).add_campaign(n) for n in ("One", "Two", "Three"))
    data = connection_form(
        date_preset="custom", date_start="2026-01-01", date_end="2026-01-31",
        campaign_ids=f"{c1}, {c2}", include_opportunities="y", schedule="daily",
    )
    data["csrf_token"] = token(signed_in)
    data["campaign"] = [c3, c1]
    assert signed_in.post("/connections/new", data=data).status_code == 302
    connection = only_connection(runtime)
    assert connection.date_range == {"start": "2026-01-01", "end": "2026-01-31"}
    assert connection.campaign_ids == [c1, c2, c3]
    assert connection.include_opportunities is True
    assert connection.schedule == "daily" and connection.schedule_time == "09:00"
    page = text(signed_in.get("/"))
    assert "2026-01-01 to 2026-01-31 (UTC)" in page
    assert "Daily at 09:00 (UTC)" in page


def test_edit_keeps_the_saved_key_when_left_empty(signed_in, runtime, fake_instantly):
    create_connection(signed_in)
    connection = only_connection(runtime)
    page = text(signed_in.get(f"/connections/{connection.id}/edit"))
    assert "…3f9a" in page
    assert "leave empty to keep the saved key" in page
    assert INSTANTLY_KEY not in page
    assert re.search(r'<input[^>]*name="instantly_api_key"[^>]*type="password" value=""', page)

    data = connection_form(name="Renamed", instantly_api_key="")
    data["csrf_token"] = csrf_token(page)
    response = signed_in.post(f"/connections/{connection.id}/edit", data=data)
    assert response.status_code == 302, text(response)
    connection = only_connection(runtime)
    assert connection.name == "Renamed"
    assert store.decrypted_api_key(runtime.fernet, connection) == INSTANTLY_KEY

    data["instantly_api_key"] = "a-brand-new-instantly-key-77aa"
    workspace_for(fake_instantly, "a-brand-new-instantly-key-77aa")
    signed_in.post(f"/connections/{connection.id}/edit", data=data)
    connection = only_connection(runtime)
    assert store.decrypted_api_key(runtime.fernet, connection) == "a-brand-new-instantly-key-77aa"
    assert connection.instantly_api_key_hint == "…77aa"


def test_edit_form_shows_saved_values_and_errors(signed_in, runtime, fake_instantly):
    c1, c2 = (workspace_for(fake_instantly).add_campaign(n) for n in ("One", "Two"))
    create_connection(signed_in, campaign_ids=f"{c1}, {c2}", date_preset="this_month")
    connection = only_connection(runtime)
    page = text(signed_in.get(f"/connections/{connection.id}/edit"))
    assert f'value="{c1}, {c2}"' in page
    assert '<option selected value="this_month">' in page
    data = connection_form(spreadsheet_url="http://docs.google.com/spreadsheets/d/x")
    data["csrf_token"] = csrf_token(page)
    response = signed_in.post(f"/connections/{connection.id}/edit", data=data)
    assert response.status_code == 400
    assert NOT_A_SHEETS_LINK in text(response)


# --- Test key and Check access ------------------------------------------------------------


def test_test_key_lists_campaigns(signed_in, fake_instantly):
    workspace, campaign_id = workspace_with_campaign(fake_instantly)
    workspace.add_campaign("Another one")
    response = signed_in.post(
        "/connections/test-key",
        data={"instantly_api_key": INSTANTLY_KEY, "csrf_token": token(signed_in)},
        headers=FETCH,
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["ok"] is True
    assert {"id": campaign_id, "name": "Q1 outbound"} in body["campaigns"]
    assert "2 campaigns" in body["message"]


def test_test_key_without_javascript_renders_the_picker(signed_in, fake_instantly):
    _, campaign_id = workspace_with_campaign(fake_instantly)
    data = connection_form(campaign_ids=campaign_id)
    data["csrf_token"] = token(signed_in)
    response = signed_in.post("/connections/test-key", data=data)
    page = text(response)
    assert response.status_code == 200
    assert "The key works: 1 campaign in this workspace." in page
    assert f'value="{campaign_id}" checked' in page
    assert INSTANTLY_KEY not in page  # the typed key is not echoed back


def test_test_key_shows_the_sync_error_message(signed_in, fake_instantly):
    response = signed_in.post(
        "/connections/test-key",
        data={"instantly_api_key": "not-the-right-key-0000", "csrf_token": token(signed_in)},
        headers=FETCH,
    )
    assert response.status_code == 200 and response.get_json()["ok"] is False
    error = response.get_json()["error"]
    assert error["code"] == "instantly_key_rejected"
    assert "Instantly" in error["message"]

    empty = signed_in.post(
        "/connections/test-key", data={"csrf_token": token(signed_in)}, headers=FETCH
    )
    assert empty.get_json()["error"]["message"] == "Type the Instantly API key first."


def test_test_key_uses_the_saved_key_when_editing(signed_in, fake_instantly, runtime):
    workspace_with_campaign(fake_instantly)
    create_connection(signed_in)
    connection = only_connection(runtime)
    response = signed_in.post(
        "/connections/test-key",
        data={"instantly_api_key": "", "connection_id": str(connection.id),
              "csrf_token": token(signed_in)},
        headers=FETCH,
    )
    assert response.get_json()["ok"] is True
    assert response.get_json()["campaigns"][0]["name"] == "Q1 outbound"


def test_check_access_ok_lists_tabs(signed_in, runtime, spreadsheet_id):
    create_connection(signed_in, spreadsheet_url=sheet_url(spreadsheet_id))
    connection = only_connection(runtime)
    response = signed_in.post(
        f"/connections/{connection.id}/check-access",
        data={"csrf_token": token(signed_in)}, headers=FETCH,
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["ok"] is True and "Sheet1" in body["tabs"]
    assert "Sheet1" in body["message"]


def test_check_access_of_unshared_sheet_says_whom_to_share_with(signed_in, runtime, fake_sheets):
    unshared = fake_sheets.create_spreadsheet("Private", sheets=("Sheet1",), shared_with=())
    create_connection(signed_in, spreadsheet_url=sheet_url(unshared))
    connection = only_connection(runtime)
    response = signed_in.post(
        f"/connections/{connection.id}/check-access",
        data={"csrf_token": token(signed_in)}, headers=FETCH,
    )
    assert response.status_code == 200 and response.get_json()["ok"] is False
    message = response.get_json()["error"]["message"]
    assert f"Share the sheet with {SERVICE_ACCOUNT_EMAIL} as Editor" in message

    # Without JavaScript, from the dashboard: a flash message on the dashboard.
    response = signed_in.post(
        f"/connections/{connection.id}/check-access", data={"csrf_token": token(signed_in)}
    )
    assert response.status_code == 302
    assert SERVICE_ACCOUNT_EMAIL in text(signed_in.get("/"))

    # Before saving: the typed link.
    response = signed_in.post(
        "/connections/check-access",
        data={"csrf_token": token(signed_in), "spreadsheet_url": sheet_url(unshared)},
        headers=FETCH,
    )
    assert SERVICE_ACCOUNT_EMAIL in response.get_json()["error"]["message"]
    response = signed_in.post(
        "/connections/check-access",
        data={"csrf_token": token(signed_in), "spreadsheet_url": "https://example.com/"},
    )
    assert NOT_A_SHEETS_LINK in text(response)


# --- Refresh ----------------------------------------------------------------------------------


def test_refresh_enqueues_one_run_even_on_double_click(signed_in, runtime, spreadsheet_id):
    create_connection(signed_in, spreadsheet_url=sheet_url(spreadsheet_id))
    connection = only_connection(runtime)
    woken = []
    runtime.on_enqueue.append(lambda: woken.append(1))
    csrf = token(signed_in)
    first = signed_in.post(
        f"/connections/{connection.id}/refresh", data={"csrf_token": csrf}, headers=FETCH
    )
    second = signed_in.post(
        f"/connections/{connection.id}/refresh", data={"csrf_token": csrf}, headers=FETCH
    )
    assert first.status_code == second.status_code == 202
    run = first.get_json()["run"]
    assert run["status"] == "queued" and run["trigger"] == "manual"
    assert first.get_json()["created"] is True
    assert second.get_json()["created"] is False
    assert second.get_json()["run"]["id"] == run["id"]
    assert len(runs_of(runtime, connection.id)) == 1
    assert woken  # the embedded worker is told at once


def test_simultaneous_refresh_clicks_enqueue_one_run(app, signed_in, runtime):
    create_connection(signed_in)
    connection = only_connection(runtime)
    csrf = token(signed_in)
    cookie = signed_in.get_cookie("session").value
    barrier = threading.Barrier(4)
    answers: list[int] = []

    def click() -> None:
        client = app.test_client()
        client.set_cookie("session", cookie)
        barrier.wait()
        response = client.post(
            f"/connections/{connection.id}/refresh", data={"csrf_token": csrf}, headers=FETCH
        )
        answers.append(response.get_json()["run"]["id"])

    threads = [threading.Thread(target=click) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(answers) == 4 and len(set(answers)) == 1
    assert len(runs_of(runtime, connection.id)) == 1


def test_refresh_then_poll_until_succeeded(signed_in, runtime, fake_instantly, fake_sheets,
                                           spreadsheet_id):
    workspace_with_campaign(fake_instantly)
    create_connection(signed_in, spreadsheet_url=sheet_url(spreadsheet_id))
    connection = only_connection(runtime)
    response = signed_in.post(
        f"/connections/{connection.id}/refresh", data={"csrf_token": token(signed_in)},
        headers=FETCH,
    )
    run = response.get_json()["run"]
    status = signed_in.get(run["status_url"], headers=FETCH).get_json()["run"]
    assert status["status"] == "queued" and status["active"] is True

    result = run_queued(runtime, run["id"])
    assert result.ok, result

    status = signed_in.get(run["status_url"], headers=FETCH).get_json()["run"]
    assert status["status"] == "succeeded" and status["active"] is False
    assert status["rows_written"] == result.rows_written > 0
    assert status["sheet_url"].startswith(f"https://docs.google.com/spreadsheets/d/{spreadsheet_id}")
    assert status["when_utc"].endswith(" UTC")
    assert status["when_relative"] == "just now"
    assert status["error"] is None
    assert fake_sheets.values(spreadsheet_id, "Instantly steps")

    page = text(signed_in.get("/"))
    assert "Succeeded" in page
    assert f"{result.rows_written} rows written" in page
    assert "#gid=" in page  # the sheet link now opens the managed tab

    history = text(signed_in.get(f"/connections/{connection.id}/runs"))
    assert "Succeeded" in history and "Refresh button" in history


def test_failed_run_shows_the_error_message(signed_in, runtime, fake_instantly, fake_sheets):
    workspace_with_campaign(fake_instantly)
    unshared = fake_sheets.create_spreadsheet("Private", sheets=("Sheet1",), shared_with=())
    create_connection(signed_in, spreadsheet_url=sheet_url(unshared))
    connection = only_connection(runtime)
    run = signed_in.post(
        f"/connections/{connection.id}/refresh", data={"csrf_token": token(signed_in)},
        headers=FETCH,
    ).get_json()["run"]
    assert not run_queued(runtime, run["id"]).ok
    status = signed_in.get(run["status_url"], headers=FETCH).get_json()["run"]
    assert status["status"] == "failed"
    assert status["error"]["code"] == "sheet_not_shared"
    page = text(signed_in.get("/"))
    assert "Failed" in page
    assert f"Share the sheet with {SERVICE_ACCOUNT_EMAIL} as Editor" in page


def test_refresh_without_javascript_redirects_back(signed_in, runtime):
    create_connection(signed_in)
    connection = only_connection(runtime)
    response = signed_in.post(
        f"/connections/{connection.id}/refresh", data={"csrf_token": token(signed_in)}
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    page = text(signed_in.get("/"))
    assert "Refresh of “Q1 outbound” started." in page
    assert 'data-active="true"' in page
    assert "Refreshing…" in page


def test_run_status_of_another_connection_is_404(signed_in, runtime):
    create_connection(signed_in, name="One")
    create_connection(signed_in, name="Two")
    with runtime.session_factory() as s:
        one, two = (c.id for c in store.list_connections(
            s, store.get_user_by_email(s, "ann@example.com")))
    run = signed_in.post(
        f"/connections/{one}/refresh", data={"csrf_token": token(signed_in)}, headers=FETCH
    ).get_json()["run"]
    assert signed_in.get(f"/connections/{one}/runs/{run['id']}.json").status_code == 200
    assert signed_in.get(f"/connections/{two}/runs/{run['id']}.json").status_code == 404


# --- history, delete ---------------------------------------------------------------------------


def test_history_page_lists_runs(signed_in, runtime):
    create_connection(signed_in)
    connection = only_connection(runtime)
    assert "No refreshes yet" in text(signed_in.get(f"/connections/{connection.id}/runs"))
    signed_in.post(f"/connections/{connection.id}/refresh", data={"csrf_token": token(signed_in)})
    page = text(signed_in.get(f"/connections/{connection.id}/runs"))
    assert "Queued" in page and "Refresh button" in page


def test_delete_asks_for_confirmation(signed_in, runtime):
    create_connection(signed_in)
    connection = only_connection(runtime)
    page = signed_in.get(f"/connections/{connection.id}/delete")
    assert page.status_code == 200
    assert "Delete “Q1 outbound”?" in text(page)
    assert only_connection(runtime).id == connection.id  # GET changes nothing
    response = signed_in.post(
        f"/connections/{connection.id}/delete", data={"csrf_token": csrf_token(text(page))}
    )
    assert response.status_code == 302
    assert "Deleted “Q1 outbound”" in text(signed_in.get("/"))
    assert signed_in.get(f"/connections/{connection.id}/edit").status_code == 404


# --- API keys ------------------------------------------------------------------------------------


def test_api_keys_create_once_list_and_revoke(signed_in, runtime):
    page = signed_in.get("/api-keys")
    assert page.status_code == 200 and "No keys yet" in text(page)
    created = signed_in.post(
        "/api-keys", data={"name": "Reporting", "csrf_token": csrf_token(text(page))}
    )
    assert created.status_code == 201
    body = text(created)
    assert "it is shown only this once" in body
    plaintext = body.split('id="new-key" class="secret">')[1].split("<")[0]
    assert plaintext.startswith("ssk_") and len(plaintext) > 30

    listing = text(signed_in.get("/api-keys"))
    assert plaintext not in listing  # only once
    assert "Reporting" in listing and plaintext[:8] in listing and "Active" in listing
    assert "never" in listing

    with runtime.session_factory() as s:
        assert store.user_for_api_key(s, plaintext) is not None
        s.commit()
        key_id = store.list_api_keys(s, store.get_user_by_email(s, "ann@example.com"))[0].id
    response = signed_in.post(
        f"/api-keys/{key_id}/revoke", data={"csrf_token": csrf_token(listing)}
    )
    assert response.status_code == 302
    listing = text(signed_in.get("/api-keys"))
    assert "Revoked" in listing
    with runtime.session_factory() as s:
        assert store.user_for_api_key(s, plaintext) is None
