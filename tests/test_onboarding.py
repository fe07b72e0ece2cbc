"""The first ten minutes, through the HTTP client: Check access proves edit rights, Save
refuses what will certainly fail (a rejected key, campaign names, unknown campaigns) and
saves what can be fixed later (a sheet not shared yet, Instantly unreachable) with a
notice, a failed Save shows every error at once, run numbers per connection.

Real gspread/google-auth against the Sheets fake (which models Editor and Viewer shares),
real requests against the Instantly fake, real SQLite.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import text as sql

from sheets_sync import store
from sheets_sync.errors import SheetNotShared
from sheets_sync.jobs.save_checks import SHEET_ACCESS_OPTION
from sheets_sync.pipeline.sheet_access import check_edit_access
from sheets_sync.store import migrate
from sheets_sync.store.db import make_engine
from sheets_sync.store.models import Connection
from tests.plugin_fakes import INSTANTLY_KEY, SERVICE_ACCOUNT_EMAIL
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
)

OTHER_KEY = "another-workspace-key-5e5e"
NOT_IN_WORKSPACE = "5b6f0d4e-1c2a-4d3b-9e8f-0a1b2c3d4e5f"


@pytest.fixture
def signed_in(client, auth):
    auth.signup()
    return client


def text(response) -> str:
    return response.get_data(as_text=True)


def dashboard(client) -> str:
    return text(client.get("/"))


def flashes(page: str) -> list[str]:
    return re.findall(r'<p class="flash[^"]*"[^>]*>([^<]*)</p>', page)


def check_access(client, connection_id: int):
    return client.post(
        f"/connections/{connection_id}/check-access",
        data={"csrf_token": token(client)}, headers=FETCH,
    ).get_json()


# --- Check access: edit rights, proven without a change --------------------------------------


def test_edit_check_tells_editor_viewer_and_no_share_apart(sheets, fake_sheets):
    book = fake_sheets.create_spreadsheet("Shares", shared_with=())
    assert check_edit_access(sheets, book).status == "not_shared"

    fake_sheets.share(book, SERVICE_ACCOUNT_EMAIL, "reader")
    before = fake_sheets.snapshot(book)
    viewer = check_edit_access(sheets, book)
    assert viewer.status == "viewer" and not viewer.ok
    assert f"shared with {SERVICE_ACCOUNT_EMAIL} as Viewer: change it to Editor" in viewer.message

    fake_sheets.share(book, SERVICE_ACCOUNT_EMAIL, "writer")
    fake_sheets.reset_calls()
    editor = check_edit_access(sheets, book)
    assert editor.ok and editor.tabs == ["Sheet1"]
    # One read and one write of the quota, and the write left nothing behind, even twice.
    assert (fake_sheets.count("get", book), fake_sheets.count("batchUpdate", book)) == (1, 1)
    assert check_edit_access(sheets, book).ok
    after = fake_sheets.snapshot(book)
    assert after["sheets"] == before["sheets"] and after["properties"] == before["properties"]

    assert check_edit_access(sheets, "1" + "x" * 43).status == "not_found"


def test_check_access_button_says_change_viewer_to_editor(signed_in, runtime, fake_sheets):
    book = fake_sheets.create_spreadsheet("Viewer only", shared_with=())
    fake_sheets.share(book, SERVICE_ACCOUNT_EMAIL, "reader")
    create_connection(signed_in, spreadsheet_url=sheet_url(book))
    connection = only_connection(runtime)

    reply = check_access(signed_in, connection.id)
    assert reply["ok"] is False
    assert reply["error"]["code"] == "sheet_viewer"
    assert f"{SERVICE_ACCOUNT_EMAIL} as Viewer: change it to Editor" in reply["error"]["message"]
    assert "Shared as Viewer: change it to Editor" in dashboard(signed_in)

    fake_sheets.share(book, SERVICE_ACCOUNT_EMAIL, "writer")
    reply = check_access(signed_in, connection.id)
    assert reply["ok"] is True and "can edit" in reply["message"]
    # The latest check is what the dashboard says.
    page = dashboard(signed_in)
    assert "Shared as Viewer" not in page and "Not shared yet" not in page


# --- Save: refused when it will certainly fail ------------------------------------------------


def test_a_key_instantly_rejects_is_not_saved(signed_in, runtime):
    response = create_connection(signed_in, instantly_api_key="rejected-by-instantly-0000")
    assert response.status_code == 400
    page = text(response)
    assert "The Instantly API key was rejected." in page
    assert 'class="error-summary"' in page
    assert "rejected-by-instantly-0000" not in page
    assert "paste it again" not in page  # the key itself is what is wrong, said once
    with runtime.session_factory() as s:
        assert s.query(Connection).count() == 0


def test_campaign_names_and_unknown_ids_are_field_errors(signed_in, runtime, fake_instantly):
    response = create_connection(signed_in, campaign_ids="Q1 outbound, Q2 follow-up")
    assert response.status_code == 400
    assert "“Q1 outbound”, “Q2 follow-up” are not campaign ids" in text(response)
    assert "Paste campaign ids, not names" in text(response)

    response = create_connection(signed_in, campaign_ids=NOT_IN_WORKSPACE)
    assert response.status_code == 400
    assert f"has no campaign with this campaign id: {NOT_IN_WORKSPACE}" in text(response)
    with runtime.session_factory() as s:
        assert s.query(Connection).count() == 0


def test_campaign_names_show_on_the_dashboard_before_any_refresh(
    signed_in, runtime, fake_instantly, spreadsheet_id
):
    workspace = workspace_for(fake_instantly)
    first, second = workspace.add_campaign("Q1 outbound"), workspace.add_campaign("Q2 nurture")
    for n in range(150):  # two pages of campaigns: the check follows the cursor
        workspace.add_campaign(f"Filler {n}")
    third = workspace.add_campaign("Q3 late")
    response = create_connection(
        signed_in, campaign_ids=f"{first}\n{third}, {second}",
        spreadsheet_url=sheet_url(spreadsheet_id),
    )
    assert response.status_code == 302, text(response)
    page = dashboard(signed_in)
    assert "<dt>Campaigns</dt><dd>Q1 outbound, Q3 late, Q2 nurture</dd>" in page
    assert runs_of(runtime, only_connection(runtime).id) == []


def test_instantly_down_saves_with_a_visible_warning(signed_in, runtime, fake_instantly):
    fake_instantly.fail_next(503, count=5)
    response = create_connection(signed_in)
    assert response.status_code == 302
    page = dashboard(signed_in)
    assert any("Instantly could not be asked" in f for f in flashes(page))
    assert only_connection(runtime).name == "Q1 outbound"


def test_instantly_timeout_saves_with_a_visible_warning(signed_in, runtime, fake_instantly):
    runtime.settings = runtime.settings.model_copy(update={"http_read_timeout": 0.3})
    fake_instantly.delay_next(2.0, count=2)
    response = create_connection(signed_in)
    assert response.status_code == 302
    assert any("Instantly could not be asked" in f for f in flashes(dashboard(signed_in)))


def test_a_sheet_not_shared_yet_saves_and_the_dashboard_says_so(
    signed_in, runtime, fake_sheets, fake_instantly
):
    workspace = workspace_for(fake_instantly)
    workspace.record(workspace.add_campaign("Q1"), dt.date(2026, 1, 5),
                     step=0, variant=0, sent=10)
    book = fake_sheets.create_spreadsheet("Not yet", shared_with=())
    assert create_connection(signed_in, spreadsheet_url=sheet_url(book)).status_code == 302
    connection = only_connection(runtime)
    assert connection.options[SHEET_ACCESS_OPTION]["status"] == "not_shared"
    notice = f"Not shared yet: share with {SERVICE_ACCOUNT_EMAIL} as Editor."
    assert notice in dashboard(signed_in)

    # Shared afterwards and refreshed: the notice has done its job.
    fake_sheets.share(book, SERVICE_ACCOUNT_EMAIL)
    response = signed_in.post(
        f"/connections/{connection.id}/refresh", data={"csrf_token": token(signed_in)},
        headers=FETCH,
    )
    assert run_queued(runtime, response.get_json()["run"]["id"]).ok
    assert notice not in dashboard(signed_in)


# --- a failed Save ---------------------------------------------------------------------------


def test_every_field_error_in_one_round_with_a_summary(signed_in):
    response = create_connection(
        signed_in, name="", instantly_api_key="", spreadsheet_url="https://example.com/x",
        campaign_ids="not an id",
    )
    assert response.status_code == 400
    page = text(response)
    summary = page.split('class="error-summary"', 1)[1].split("</div>", 1)[0]
    assert "4 fields need your attention" in summary
    for label in ("Name", "Instantly API key", "Google Sheet link", "Campaign ids"):
        assert f">{label}</a>" in summary, label
    assert "Enter the Instantly API key" in summary


def test_a_typed_key_must_be_typed_again_and_the_rest_is_kept(signed_in):
    response = create_connection(
        signed_in, name="Kept name", spreadsheet_url="https://example.com/x",
        worksheet_title="Kept tab",
    )
    assert response.status_code == 400
    page = text(response)
    assert "paste it again before saving" in page
    assert INSTANTLY_KEY not in page
    assert 'value="Kept name"' in page and 'value="Kept tab"' in page


# --- the JSON API: the same rules -------------------------------------------------------------


@pytest.fixture
def api_headers(runtime):
    with runtime.session_factory() as s, s.begin():
        user = store.create_user(s, "api@example.com", "correct horse battery")
        s.flush()
        _, key = store.create_api_key(s, user, "tests")
    return {"Authorization": f"Bearer {key}"}


def test_api_refuses_a_rejected_key_and_bad_campaigns_with_field_names(
    client, api_headers, fake_instantly, spreadsheet_id
):
    body = {"name": "API", "instantly_api_key": "rejected-by-instantly-0000",
            "spreadsheet_url": sheet_url(spreadsheet_id)}
    response = client.post("/api/v1/connections", json=body, headers=api_headers)
    assert response.status_code == 422
    assert response.get_json()["error"]["message"].startswith("instantly_api_key: ")
    assert "rejected-by-instantly-0000" not in text(response)

    body["instantly_api_key"] = INSTANTLY_KEY
    body["campaign_ids"] = ["Q1 outbound"]
    response = client.post("/api/v1/connections", json=body, headers=api_headers)
    assert response.status_code == 422
    assert "campaign_ids" in response.get_json()["error"]["message"]
    assert "not names" in response.get_json()["error"]["message"]

    body["campaign_ids"] = [NOT_IN_WORKSPACE]
    response = client.post("/api/v1/connections", json=body, headers=api_headers)
    assert response.status_code == 422
    assert response.get_json()["error"]["message"].startswith("campaign_ids: ")

    known = workspace_for(fake_instantly).add_campaign("Known")
    body["campaign_ids"] = [known]
    created = client.post("/api/v1/connections", json=body, headers=api_headers)
    assert created.status_code == 201
    cid = created.get_json()["id"]

    patched = client.patch(f"/api/v1/connections/{cid}",
                           json={"campaign_ids": [known, NOT_IN_WORKSPACE]}, headers=api_headers)
    assert patched.status_code == 422
    assert NOT_IN_WORKSPACE in patched.get_json()["error"]["message"]
    fetched = client.get(f"/api/v1/connections/{cid}", headers=api_headers).get_json()
    assert fetched["campaign_ids"] == [known]  # nothing changed

    patched = client.patch(f"/api/v1/connections/{cid}",
                           json={"instantly_api_key": "rejected-by-instantly-0000"},
                           headers=api_headers)
    assert patched.status_code == 422
    assert patched.get_json()["error"]["message"].startswith("instantly_api_key: ")


# --- the dashboard and the history ------------------------------------------------------------


def test_never_synced_failures_do_not_mention_older_numbers(
    signed_in, runtime, fake_sheets
):
    book = fake_sheets.create_spreadsheet("Private", shared_with=())
    create_connection(signed_in, spreadsheet_url=sheet_url(book))
    connection = only_connection(runtime)
    for _ in range(2):
        response = signed_in.post(
            f"/connections/{connection.id}/refresh", data={"csrf_token": token(signed_in)},
            headers=FETCH,
        )
        assert not run_queued(runtime, response.get_json()["run"]["id"]).ok
    page = dashboard(signed_in)
    assert "The last 2 refreshes failed; nothing has been written to the sheet yet." in page
    assert "older numbers" not in page


def test_history_numbers_runs_per_connection_and_lists_them_first(
    signed_in, runtime, spreadsheet_id, fake_instantly
):
    workspace = workspace_for(fake_instantly)
    workspace.record(workspace.add_campaign("Q1"), dt.date(2026, 1, 5),
                     step=0, variant=0, sent=10)
    create_connection(signed_in, name="First", spreadsheet_url=sheet_url(spreadsheet_id))
    create_connection(signed_in, name="Second", spreadsheet_url=sheet_url(spreadsheet_id),
                      worksheet_title="Other tab")
    with runtime.session_factory() as s:
        first, second = (c.id for c in s.query(Connection).order_by(Connection.id))
    run_ids = []
    for cid in (first, second, second):
        response = signed_in.post(f"/connections/{cid}/refresh",
                                  data={"csrf_token": token(signed_in)}, headers=FETCH)
        run_ids.append(response.get_json()["run"]["id"])
        assert run_queued(runtime, run_ids[-1]).ok

    page = text(signed_in.get(f"/connections/{second}/runs"))
    numbers = re.findall(r'data-label="Run">#(\d+)<', page)
    assert numbers == ["2", "1"]  # newest first, counted within this connection
    assert page.index("data-runs") < page.index("data-last-table")
    assert 'class="table-scroll"' in page
    # The JSON API keeps the global ids.
    assert run_ids[1] == 2 and runs_of(runtime, second)[0].id == 2


def test_migration_numbers_existing_runs_per_connection(db_url: str) -> None:
    """Runs stored before numbers existed get them in id order, per connection."""
    migrate.upgrade(db_url, "0004")
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(sql(
                "INSERT INTO users (id, email, password_hash, created_at) "
                "VALUES (1, 'old@example.com', 'x', '2026-01-01 00:00:00')"
            ))
            conn.execute(sql(
                "INSERT INTO connections (id, user_id, name, instantly_api_key_encrypted, "
                "instantly_api_key_hint, spreadsheet_id, spreadsheet_url, campaign_ids, "
                "date_range, options, consecutive_failures, version, created_at, updated_at) "
                "VALUES (:id, 1, 'c', 'x', 'x', 's', 'u', '[]', '{}', '{}', 0, 1, "
                "'2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            ), [{"id": 1}, {"id": 2}])
            conn.execute(sql(
                "INSERT INTO sync_runs (id, connection_id, status, trigger, queued_at, attempt) "
                "VALUES (:id, :cid, 'succeeded', 'manual', '2026-01-01 00:00:00', 1)"
            ), [{"id": i, "cid": c} for i, c in ((1, 1), (2, 2), (3, 1), (4, 2), (5, 2))])
        migrate.upgrade(db_url)
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT id, number FROM sync_runs ORDER BY id"
            ).all()
        assert [tuple(r) for r in rows] == [(1, 1), (2, 1), (3, 2), (4, 2), (5, 3)]
    finally:
        engine.dispose()


def test_an_edit_asks_instantly_only_about_what_changed(
    signed_in, runtime, fake_instantly, spreadsheet_id
):
    workspace = workspace_for(fake_instantly)
    first, second = workspace.add_campaign("First"), workspace.add_campaign("Second")
    create_connection(signed_in, campaign_ids=first, spreadsheet_url=sheet_url(spreadsheet_id))
    connection = only_connection(runtime)
    edit = f"/connections/{connection.id}/edit"

    def post(**overrides):
        fields = {"spreadsheet_url": sheet_url(spreadsheet_id), "instantly_api_key": "",
                  "campaign_ids": first, **overrides}
        data = connection_form(**fields)
        data["csrf_token"] = token(signed_in)
        return signed_in.post(edit, data=data)

    fake_instantly.reset_calls()
    assert post(name="Renamed").status_code == 302
    assert fake_instantly.count() == 0  # same key, same campaigns: nothing to ask

    response = post(campaign_ids=f"{first}, {NOT_IN_WORKSPACE}")
    assert response.status_code == 400
    assert f"has no campaign with this campaign id: {NOT_IN_WORKSPACE}" in text(response)
    assert only_connection(runtime).campaign_ids == [first]

    assert post(campaign_ids=f"{first}, {second}").status_code == 302
    assert "<dd>First, Second</dd>" in dashboard(signed_in)

    # The saved key stopped working: adding a campaign says a new key is needed.
    fake_instantly.fail_next(401)
    third = workspace.add_campaign("Third")
    response = post(campaign_ids=f"{first}, {third}")
    assert response.status_code == 400
    assert "The saved key no longer works: The Instantly API key was rejected." in text(response)


def test_a_refused_write_says_viewer_only_when_the_sheet_is_readable(sheets, fake_sheets):
    add_tab = [{"addSheet": {"properties": {"title": "New"}}}]
    book = fake_sheets.create_spreadsheet("Viewer", shared_with=())
    fake_sheets.share(book, SERVICE_ACCOUNT_EMAIL, "reader")
    with pytest.raises(SheetNotShared, match="as Viewer: change it to Editor"):
        sheets.batch_update(book, add_tab)
    fake_sheets.unshare(book, SERVICE_ACCOUNT_EMAIL)
    with pytest.raises(SheetNotShared, match="cannot open this spreadsheet"):
        sheets.batch_update(book, add_tab)
    assert fake_sheets.sheet_titles(book) == ["Sheet1"]


def test_refresh_of_a_viewer_share_says_change_it_to_editor(signed_in, runtime, fake_sheets):
    book = fake_sheets.create_spreadsheet("Viewer", shared_with=())
    fake_sheets.share(book, SERVICE_ACCOUNT_EMAIL, "reader")
    create_connection(signed_in, spreadsheet_url=sheet_url(book))
    connection = only_connection(runtime)
    response = signed_in.post(
        f"/connections/{connection.id}/refresh", data={"csrf_token": token(signed_in)},
        headers=FETCH,
    )
    result = run_queued(runtime, response.get_json()["run"]["id"])
    assert result.error_code == "sheet_not_shared"
    assert f"shared with {SERVICE_ACCOUNT_EMAIL} as Viewer: change it to Editor" in (
        result.error_message or ""
    )
