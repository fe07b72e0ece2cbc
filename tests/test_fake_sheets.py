"""Tests of the fake Sheets API itself, driven by real gspread + real google-auth.

If the fake drifts from Google, every test built on it lies, so these pin down the
behaviour production code relies on: the token exchange, metadata, batchUpdate
semantics and atomicity, Google-worded validation errors, sharing, quotas and the two
values methods (update, clear) that the benchmark's plain-gspread baseline uses.
"""

from __future__ import annotations

from typing import Any

import gspread
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth.exceptions import RefreshError
from google.auth.transport.requests import AuthorizedSession
from google.auth.transport.requests import Request as AuthRequest
from google.oauth2.service_account import Credentials

from tests.fakes import discovery
from tests.fakes.sheets_api import (
    SCOPE_SPREADSHEETS,
    FakeSheetsServer,
    make_service_account_info,
)

GOOGLE_SHEETS = "https://sheets.googleapis.com"
OTHER_EMAIL = "someone-else@other-project.iam.gserviceaccount.com"


class _FakeRoutedSession(AuthorizedSession):
    """An AuthorizedSession that sends Sheets calls to the fake instead of Google."""

    def __init__(self, credentials: Credentials, root: str) -> None:
        super().__init__(credentials)
        self._root = root

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if url.startswith(GOOGLE_SHEETS):
            url = self._root + url[len(GOOGLE_SHEETS):]
        return super().request(method, url, *args, **kwargs)


def credentials_for(info: dict[str, str]) -> Credentials:
    return Credentials.from_service_account_info(info, scopes=[SCOPE_SPREADSHEETS])


def gspread_client(server: FakeSheetsServer, info: dict[str, str]) -> gspread.Client:
    creds = credentials_for(info)
    return gspread.Client(auth=creds, session=_FakeRoutedSession(creds, server.url))


def api_error(exc_info: pytest.ExceptionInfo[gspread.exceptions.APIError]) -> dict[str, Any]:
    error: dict[str, Any] = exc_info.value.response.json()["error"]
    return error


class Clock:
    """A hand-wound clock for the quota window."""

    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server() -> Any:
    with FakeSheetsServer() as fake:
        yield fake


@pytest.fixture
def account(server: FakeSheetsServer) -> dict[str, str]:
    info = make_service_account_info(server.token_uri)
    server.register_service_account(info)
    return info


@pytest.fixture
def gc(server: FakeSheetsServer, account: dict[str, str]) -> gspread.Client:
    return gspread_client(server, account)


# --- auth ------------------------------------------------------------------------------


def test_token_exchange_then_bearer_reuse(server: FakeSheetsServer, account: dict[str, str],
                                          gc: gspread.Client) -> None:
    ssid = server.create_spreadsheet(shared_with=(account["client_email"],))
    gc.open_by_key(ssid)
    gc.open_by_key(ssid)

    token_calls = [c for c in server.calls if c.kind == "token"]
    assert len(token_calls) == 1, "one exchange, then the bearer token is reused"
    assert token_calls[0].status == 200
    assert token_calls[0].email == account["client_email"]
    assert token_calls[0].body["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert server.count("get", ssid) == 2
    assert {c.email for c in server.calls} == {account["client_email"]}


def test_token_exchange_rejects_unknown_account_and_wrong_key(server: FakeSheetsServer,
                                                              account: dict[str, str]) -> None:
    stranger = make_service_account_info(server.token_uri, "nobody@x.iam.gserviceaccount.com")
    with pytest.raises(RefreshError, match="account not found"):
        credentials_for(stranger).refresh(AuthRequest())

    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    forged = make_service_account_info(server.token_uri, account["client_email"],
                                       private_key_pem=other_key)
    with pytest.raises(RefreshError, match="Invalid JWT Signature"):
        credentials_for(forged).refresh(AuthRequest())
    assert server.count("token", status=400) == 2


def test_api_calls_need_a_valid_bearer_token() -> None:
    clock = Clock()
    with FakeSheetsServer(clock=clock) as server:
        info = make_service_account_info(server.token_uri)
        server.register_service_account(info)
        gc = gspread_client(server, info)
        ssid = server.create_spreadsheet()
        missing = requests.get(f"{server.url}/v4/spreadsheets/{ssid}", timeout=5)
        assert missing.status_code == 401
        assert missing.json()["error"]["status"] == "UNAUTHENTICATED"
        assert "missing required authentication credential" in missing.json()["error"]["message"]
        assert missing.headers["WWW-Authenticate"].startswith("Bearer")
        bogus = requests.get(f"{server.url}/v4/spreadsheets/{ssid}", timeout=5,
                             headers={"Authorization": "Bearer ya29.not-issued"})
        assert bogus.status_code == 401

        gc.open_by_key(ssid)
        clock.now += 3601  # expired at the fake while google-auth still trusts it
        gc.open_by_key(ssid)  # google-auth refreshes on the 401 and retries
        assert server.count("token", status=200) == 2
        assert server.count("get", status=401) == 3  # two raw requests + the expired token


# --- metadata ---------------------------------------------------------------------------


def test_open_by_key_metadata(server: FakeSheetsServer, gc: gspread.Client) -> None:
    ssid = server.create_spreadsheet("Q3 outreach", sheets=("Summary", "Step analytics"))
    sh = gc.open_by_key(ssid)

    assert sh.title == "Q3 outreach"
    assert [(w.title, w.index, w.row_count, w.col_count) for w in sh.worksheets()] == [
        ("Summary", 0, 1000, 26), ("Step analytics", 1, 1000, 26)]
    assert sh.worksheets()[0].id == 0
    meta = sh.fetch_sheet_metadata()
    assert meta["spreadsheetId"] == ssid
    assert meta["properties"]["locale"] == "en_US"
    assert meta["spreadsheetUrl"].endswith(f"/d/{ssid}/edit")
    assert meta["sheets"][1]["properties"]["sheetType"] == "GRID"
    assert "data" not in meta["sheets"][0]

    narrow = sh.fetch_sheet_metadata(params={"fields": "sheets(properties(sheetId,title))"})
    assert narrow == {"sheets": [{"properties": {"sheetId": 0, "title": "Summary"}},
                                 {"properties": {"sheetId": meta["sheets"][1]["properties"][
                                     "sheetId"], "title": "Step analytics"}}]}
    with pytest.raises(gspread.exceptions.APIError) as bad_mask:
        sh.fetch_sheet_metadata(params={"fields": "sheets.sheetProperties"})
    error = api_error(bad_mask)
    assert error["message"] == "Request contains an invalid argument."
    assert error["details"][0]["fieldViolations"][0]["description"] == (
        "Error expanding 'fields' parameter. Cannot find matching fields for path "
        "'sheets.sheetProperties'.")


# --- batchUpdate ------------------------------------------------------------------------


def test_batch_update_applies_requests_in_order(server: FakeSheetsServer,
                                                gc: gspread.Client) -> None:
    ssid = server.create_spreadsheet()
    sh = gc.open_by_key(ssid)
    bold = {"textFormat": {"bold": True}}
    percent = {"numberFormat": {"type": "PERCENT", "pattern": "0.0%"}}
    reply = sh.batch_update({"requests": [
        {"addSheet": {"properties": {"sheetId": 4242, "title": "Step analytics",
                                     "gridProperties": {"rowCount": 50, "columnCount": 8}}}},
        {"updateCells": {
            "start": {"sheetId": 4242, "rowIndex": 0, "columnIndex": 0},
            "rows": [
                {"values": [{"userEnteredValue": {"stringValue": h}, "userEnteredFormat": bold}
                            for h in ("Step", "Variant", "Reply rate")]},
                {"values": [{"userEnteredValue": {"numberValue": 1}},
                            {"userEnteredValue": {"stringValue": "A"}},
                            {"userEnteredValue": {"numberValue": 0.125},
                             "userEnteredFormat": percent}]},
            ],
            "fields": "userEnteredValue,userEnteredFormat",
        }},
        {"updateSheetProperties": {
            "properties": {"sheetId": 4242,
                           "gridProperties": {"frozenRowCount": 1, "columnCount": 6}},
            "fields": "gridProperties(frozenRowCount,columnCount)",
        }},
    ]})

    assert reply["replies"][0]["addSheet"]["properties"] == {
        "sheetId": 4242, "title": "Step analytics", "index": 1, "sheetType": "GRID",
        "gridProperties": {"rowCount": 50, "columnCount": 8}}
    assert reply["replies"][1:] == [{}, {}]
    props = server.sheet_properties(ssid, "Step analytics")
    assert props is not None
    assert props["gridProperties"] == {"rowCount": 50, "columnCount": 6, "frozenRowCount": 1}
    assert server.values(ssid, 4242) == [["Step", "Variant", "Reply rate"], [1, "A", 0.125]]
    assert server.cell(ssid, "Step analytics", "C2")["effectiveValue"] == {"numberValue": 0.125}

    cells = "rowData(values(userEnteredValue,userEnteredFormat,effectiveValue))"
    grid = sh.fetch_sheet_metadata(params={
        "fields": f"sheets(properties(title),data({cells},columnMetadata))",
        "ranges": "'Step analytics'!A1:C2"})
    assert [s["properties"]["title"] for s in grid["sheets"]] == ["Step analytics"]
    (data,) = grid["sheets"][0]["data"]
    header, row = data["rowData"]
    assert header["values"][0]["userEnteredFormat"]["textFormat"]["bold"] is True
    assert row["values"][2]["effectiveValue"] == {"numberValue": 0.125}
    assert len(data["columnMetadata"]) == 3


def test_cell_fields_the_fake_does_not_compute_are_refused(server: FakeSheetsServer,
                                                           gc: gspread.Client) -> None:
    sh = gc.open_by_key(server.create_spreadsheet())
    for params, field in (
        ({"includeGridData": "true"}, "*"),
        ({"fields": "sheets.data.rowData.values(userEnteredValue,formattedValue)"},
         "formattedValue"),
        ({"fields": "sheets.data"}, "*"),
    ):
        with pytest.raises(gspread.exceptions.APIError) as refused:
            sh.fetch_sheet_metadata(params=params)
        assert api_error(refused)["message"] == (
            f"fake: rendering CellData.{field} not implemented")


def test_batch_update_is_atomic(server: FakeSheetsServer, gc: gspread.Client) -> None:
    ssid = server.create_spreadsheet()
    server.set_cell(ssid, "Sheet1", "A1", "kept")
    before = server.snapshot(ssid)
    sh = gc.open_by_key(ssid)

    with pytest.raises(gspread.exceptions.APIError) as failed:
        sh.batch_update({"requests": [
            {"addSheet": {"properties": {"title": "Should not exist"}}},
            {"repeatCell": {"range": {"sheetId": 999}, "cell": {}, "fields": "note"}},
        ]})

    error = api_error(failed)
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert error["message"] == "Invalid requests[1].repeatCell: No grid with id: 999"
    assert server.snapshot(ssid) == before
    assert server.sheet_titles(ssid) == ["Sheet1"]


def test_typo_in_field_name_is_rejected_like_google(server: FakeSheetsServer,
                                                     gc: gspread.Client) -> None:
    ssid = server.create_spreadsheet()
    sh = gc.open_by_key(ssid)
    with pytest.raises(gspread.exceptions.APIError) as typo:
        sh.batch_update({"requests": [{"updateCells": {
            "start": {"sheetId": 0},
            "rows": [{"values": [{"userEnteredValu": {"stringValue": "x"}}]}],
            "fields": "userEnteredValue",
        }}]})

    error = api_error(typo)
    assert typo.value.code == 400
    assert error["message"] == (
        'Invalid JSON payload received. Unknown name "userEnteredValu" at '
        "'requests[0].update_cells.rows[0].values[0]': Cannot find field.")
    assert error["details"][0]["fieldViolations"][0]["field"] == (
        "requests[0].update_cells.rows[0].values[0]")
    assert server.values(ssid, "Sheet1") == []


def test_discovery_validator() -> None:
    body = {"requests": [{"repeatCell": {
        "range": {"sheetId": "12", "startRowIndex": 1.0},  # proto3 JSON accepts both
        "cell": {"user_entered_format": {"horizontalAlignment": "MIDDLE"}},
        "fields": "userEnteredFormat",
    }}, "addSheet"]}
    violations, _ = discovery.check("BatchUpdateSpreadsheetRequest", body)
    assert [v.description for v in violations] == [
        "Invalid value at 'requests[0].repeat_cell.cell.user_entered_format."
        "horizontal_alignment' (TYPE_ENUM), \"MIDDLE\"",
        "Invalid value at 'requests[1]' (type.googleapis.com/google.apps.sheets.v4.Request), "
        "\"addSheet\"",
    ]
    good = {"requests": [{"updateCells": {
        "start": {"sheetId": "7"}, "fields": "*",
        "rows": [{"values": [{"user_entered_value": {"numberValue": 2}}]}]}}]}
    violations, normalised = discovery.check("BatchUpdateSpreadsheetRequest", good)
    assert violations == []
    update = normalised["requests"][0]["updateCells"]
    assert update["start"] == {"sheetId": 7}
    assert update["rows"][0]["values"][0] == {"userEnteredValue": {"numberValue": 2}}
    violations, _ = discovery.check("ValueRange", {"values": ["x"]}, root="data")
    assert [v.description for v in violations] == [
        "Invalid value at 'data.values[0]' (type.googleapis.com/google.protobuf.ListValue), "
        "\"x\""]


def test_grid_limits(server: FakeSheetsServer, gc: gspread.Client) -> None:
    ssid = server.create_spreadsheet()
    sh = gc.open_by_key(ssid)
    with pytest.raises(gspread.exceptions.APIError) as outside:
        sh.batch_update({"requests": [{"updateCells": {
            "range": {"sheetId": 0, "startRowIndex": 0, "endRowIndex": 1001},
            "rows": [], "fields": "userEnteredValue"}}]})
    assert api_error(outside)["message"] == (
        "Invalid requests[0].updateCells: Range ('Sheet1'!A1:Z1001) exceeds grid limits. "
        "Max rows: 1000, max columns: 26")

    with pytest.raises(gspread.exceptions.APIError) as values_outside:
        sh.sheet1.update([["x"]], "A1001")
    assert api_error(values_outside)["message"] == (
        "Range ('Sheet1'!A1001) exceeds grid limits. Max rows: 1000, max columns: 26")

    with pytest.raises(gspread.exceptions.APIError) as too_many_cells:
        sh.batch_update({"requests": [{"addSheet": {"properties": {
            "title": "Huge", "gridProperties": {"rowCount": 400_000, "columnCount": 26}}}}]})
    assert api_error(too_many_cells)["message"] == (
        "Invalid requests[0].addSheet: This action would increase the number of cells in the "
        "workbook above the limit of 10000000 cells.")


def test_unimplemented_request_kind_is_loud(server: FakeSheetsServer,
                                            gc: gspread.Client) -> None:
    sh = gc.open_by_key(server.create_spreadsheet())
    with pytest.raises(gspread.exceptions.APIError) as unknown:
        sh.batch_update({"requests": [{"sortRange": {"range": {"sheetId": 0}}}]})
    assert api_error(unknown)["message"] == "fake: request kind sortRange not implemented"
    with pytest.raises(gspread.exceptions.APIError) as unrouted:
        sh.sheet1.get_all_values()
    assert api_error(unrouted)["message"] == (
        "fake: method spreadsheets.values.get not implemented")


def test_deleting_rows_moves_cells_charts_and_frozen_rows(server: FakeSheetsServer,
                                                          gc: gspread.Client) -> None:
    ssid = server.create_spreadsheet()
    for row in range(1, 6):
        server.set_cell(ssid, "Sheet1", f"A{row}", f"row {row}")
    sh = gc.open_by_key(ssid)
    source = {"sheetId": 0, "startRowIndex": 0, "endRowIndex": 5, "startColumnIndex": 0,
              "endColumnIndex": 1}
    chart = {
        "spec": {"basicChart": {"chartType": "BAR", "domains": [
            {"domain": {"sourceRange": {"sources": [source]}}}]}},
        "position": {"overlayPosition": {"anchorCell": {"sheetId": 0, "rowIndex": 4,
                                                        "columnIndex": 2}}},
    }
    sh.batch_update({"requests": [
        {"updateSheetProperties": {
            "properties": {"sheetId": 0, "gridProperties": {"frozenRowCount": 2}},
            "fields": "gridProperties.frozenRowCount"}},
        {"addChart": {"chart": chart}},
        {"deleteDimension": {"range": {"sheetId": 0, "dimension": "ROWS", "startIndex": 1,
                                       "endIndex": 3}}},
        {"updateDimensionProperties": {
            "range": {"sheetId": 0, "dimension": "COLUMNS", "startIndex": 0, "endIndex": 1},
            "properties": {"pixelSize": 240}, "fields": "pixelSize"}},
    ]})

    assert server.values(ssid, "Sheet1") == [["row 1"], ["row 4"], ["row 5"]]
    props = server.sheet_properties(ssid, "Sheet1")
    assert props is not None
    assert props["gridProperties"] == {"rowCount": 998, "columnCount": 26, "frozenRowCount": 1}
    (stored,) = server.charts(ssid, "Sheet1")
    assert stored["spec"]["basicChart"]["domains"][0]["domain"]["sourceRange"]["sources"] == [
        {**source, "endRowIndex": 3}]
    assert stored["position"]["overlayPosition"]["anchorCell"]["rowIndex"] == 2
    widths = sh.fetch_sheet_metadata(params={
        "fields": "sheets(data(columnMetadata(pixelSize)))", "ranges": "Sheet1!A1:B1"})
    assert widths["sheets"][0]["data"][0]["columnMetadata"] == [{"pixelSize": 240},
                                                               {"pixelSize": 100}]

    with pytest.raises(gspread.exceptions.APIError) as everything:
        sh.batch_update({"requests": [{"deleteDimension": {
            "range": {"sheetId": 0, "dimension": "ROWS", "startIndex": 1}}}]})
    assert api_error(everything)["message"] == (
        "Invalid requests[0].deleteDimension: Sorry, it is not possible to delete all "
        "non-frozen rows.")


# --- access, quota, faults ----------------------------------------------------------------


def test_unshared_spreadsheet_is_403(server: FakeSheetsServer, account: dict[str, str],
                                     gc: gspread.Client) -> None:
    ssid = server.create_spreadsheet(shared_with=(OTHER_EMAIL,))
    with pytest.raises(PermissionError):
        gc.open_by_key(ssid)  # gspread turns the 403 into PermissionError
    with pytest.raises(gspread.exceptions.APIError) as denied:
        gc.http_client.fetch_sheet_metadata(ssid)
    assert api_error(denied) == {"code": 403, "message": "The caller does not have permission",
                                 "status": "PERMISSION_DENIED"}

    shared = server.create_spreadsheet(shared_with=(account["client_email"],))
    assert gc.open_by_key(shared).id == shared
    server.unshare(shared, account["client_email"])  # the owner takes access back
    with pytest.raises(PermissionError):
        gc.open_by_key(shared)


def test_a_viewer_reads_but_every_write_is_403(server: FakeSheetsServer, account: dict[str, str],
                                               gc: gspread.Client) -> None:
    ssid = server.create_spreadsheet(shared_with=())
    server.share(ssid, account["client_email"], "reader")
    before = server.snapshot(ssid)
    add_tab = {"requests": [{"addSheet": {"properties": {"title": "X"}}}]}
    assert gc.http_client.fetch_sheet_metadata(ssid)["sheets"][0]["properties"]["title"] == "Sheet1"
    with pytest.raises(gspread.exceptions.APIError) as denied:
        gc.http_client.batch_update(ssid, add_tab)
    assert api_error(denied) == {"code": 403, "message": "The caller does not have permission",
                                 "status": "PERMISSION_DENIED"}
    after = server.snapshot(ssid)
    assert after == before
    assert after["shared_with"] == {account["client_email"]: "reader"}

    server.share(ssid, account["client_email"])  # changed to Editor
    gc.http_client.batch_update(ssid, add_tab)
    assert "X" in server.sheet_titles(ssid)
    with pytest.raises(ValueError, match="role must be one of"):
        server.share(ssid, account["client_email"], "owner")


def test_unknown_spreadsheet_is_404(server: FakeSheetsServer, gc: gspread.Client) -> None:
    with pytest.raises(gspread.exceptions.SpreadsheetNotFound):
        gc.open_by_key("1" + "x" * 43)
    with pytest.raises(gspread.exceptions.APIError) as missing:
        gc.http_client.fetch_sheet_metadata("1" + "x" * 43)
    assert api_error(missing) == {"code": 404, "message": "Requested entity was not found.",
                                  "status": "NOT_FOUND"}


def test_injected_429_leaves_state_alone(server: FakeSheetsServer, gc: gspread.Client) -> None:
    ssid = server.create_spreadsheet()
    ws = gc.open_by_key(ssid).sheet1
    server.fail_next("write", 429)

    with pytest.raises(gspread.exceptions.APIError) as limited:
        ws.update([["lost"]], "A1")
    error = api_error(limited)
    assert (error["code"], error["status"]) == (429, "RESOURCE_EXHAUSTED")
    assert "'Write requests per minute per user'" in error["message"]
    assert server.values(ssid, "Sheet1") == []

    ws.update([["kept"]], "A1")
    assert server.values(ssid, "Sheet1") == [["kept"]]
    assert server.status_counts()[429] == 1


def test_write_quota_is_a_rolling_window_per_user() -> None:
    clock = Clock()
    with FakeSheetsServer(writes_per_minute=2, clock=clock) as server:
        info = make_service_account_info(server.token_uri)
        server.register_service_account(info)
        ssid = server.create_spreadsheet()
        ws = gspread_client(server, info).open_by_key(ssid).sheet1
        ws.update([[1]], "A1")
        ws.update([[2]], "A1")
        with pytest.raises(gspread.exceptions.APIError) as limited:
            ws.update([[3]], "A1")
        assert api_error(limited)["message"] == (
            "Quota exceeded for quota metric 'Write requests' and limit 'Write requests per "
            "minute per user' of service 'sheets.googleapis.com' for consumer "
            "'project_number:0'.")
        ws.spreadsheet.fetch_sheet_metadata()  # reads have their own bucket

        clock.now += 61
        ws.update([[4]], "A1")
        assert server.values(ssid, "Sheet1") == [[4]]
        assert server.count("values_write", status=200) == 3
        assert server.count("values_write", status=429) == 1


# --- values API ---------------------------------------------------------------------------


def test_values_update_and_clear(server: FakeSheetsServer, gc: gspread.Client) -> None:
    """The two values methods a plain gspread script uses (the benchmark's baseline)."""
    ssid = server.create_spreadsheet(sheets=("Sheet1", "Step analytics"))
    sh = gc.open_by_key(ssid)
    ws = sh.worksheet("Step analytics")

    ws.update([["Step", "Sent", "Rate", "Total"], ["1", 120, "12.5%", "=SUM(B2:B3)"]], "A1",
              raw=False)
    assert server.values(ssid, "Step analytics") == [
        ["Step", "Sent", "Rate", "Total"], [1, 120, 0.125, "#FAKE_FORMULA"]]
    assert server.cell(ssid, "Step analytics", "C2")["userEnteredFormat"] == {
        "numberFormat": {"type": "PERCENT", "pattern": "0.0%"}}
    ws.update([["=raw text"]], "E1")  # RAW keeps the string
    assert server.cell(ssid, "Step analytics", "E1")["userEnteredValue"] == {
        "stringValue": "=raw text"}

    with pytest.raises(gspread.exceptions.APIError) as overflow:
        ws.update([["a", "b", "c"]], "A1:B1")
    assert api_error(overflow)["message"] == (
        "Requested writing within range ['Step analytics'!A1:B1], but tried writing to "
        "column [C]")
    with pytest.raises(gspread.exceptions.APIError) as unknown_tab:
        sh.values_update("'Nope'!A1", params={"valueInputOption": "RAW"},
                         body={"values": [["x"]]})
    assert api_error(unknown_tab)["message"] == "Unable to parse range: 'Nope'!A1"

    sh.batch_update({"requests": [{"repeatCell": {
        "range": {"sheetId": ws.id, "startRowIndex": 0, "endRowIndex": 1},
        "cell": {"userEnteredFormat": {"textFormat": {"bold": True}}},
        "fields": "userEnteredFormat.textFormat.bold"}}]})
    ws.clear()
    assert server.values(ssid, "Step analytics") == []
    # values:clear keeps formatting, as Google's does.
    assert server.cell(ssid, "Step analytics", "A1")["userEnteredFormat"] == {
        "textFormat": {"bold": True}}
    assert server.count("values_write", ssid) == 5


def test_developer_metadata_ids_are_unique_per_spreadsheet(
    server: FakeSheetsServer, gc: gspread.Client
) -> None:
    ssid = server.create_spreadsheet()
    sh = gc.open_by_key(ssid)
    create = {"createDeveloperMetadata": {"developerMetadata": {
        "metadataId": 77, "metadataKey": "k", "metadataValue": "1",
        "location": {"sheetId": 0}, "visibility": "DOCUMENT"}}}
    sh.batch_update({"requests": [create]})
    before = server.snapshot(ssid)
    with pytest.raises(gspread.exceptions.APIError) as again:
        sh.batch_update({"requests": [
            {"updateCells": {"start": {"sheetId": 0}, "rows": [{"values": [
                {"userEnteredValue": {"stringValue": "x"}}]}], "fields": "userEnteredValue"}},
            create,
        ]})
    assert "already exists" in api_error(again)["message"]
    assert server.snapshot(ssid) == before  # the whole batch was refused
    meta = sh.fetch_sheet_metadata({"fields": "sheets(developerMetadata)"})
    assert meta["sheets"][0]["developerMetadata"][0]["metadataId"] == 77
    sh.batch_update({"requests": [{"deleteDeveloperMetadata": {
        "dataFilter": {"developerMetadataLookup": {"metadataId": 77}}}}]})
    assert "developerMetadata" not in sh.fetch_sheet_metadata(
        {"fields": "sheets(developerMetadata)"})["sheets"][0]


def test_a_fault_after_apply_changes_the_sheet_and_still_fails(
    server: FakeSheetsServer, gc: gspread.Client
) -> None:
    ssid = server.create_spreadsheet()
    sh = gc.open_by_key(ssid)
    server.fail_next("write", 503, when="after")
    with pytest.raises(gspread.exceptions.APIError):
        sh.batch_update({"requests": [{"addSheet": {"properties": {"title": "Two"}}}]})
    assert server.sheet_titles(ssid) == ["Sheet1", "Two"]
