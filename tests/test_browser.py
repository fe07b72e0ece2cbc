"""The page in a real browser: headless Chromium (Debian's, never downloaded) via Playwright.

The app is served on 127.0.0.1 by werkzeug in a thread with the embedded worker, exactly
as ``sheets-sync serve`` runs it; Instantly and Google Sheets are the local fakes.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from tests.plugin_fakes import INSTANTLY_KEY, SERVICE_ACCOUNT_EMAIL
from tests.unavailable import unavailable
from tests.web_helpers import sheet_url, workspace_with_campaign

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "correct horse battery"
# Full-page screenshots for people to look at (git-ignored); another folder if set.
SCREENSHOTS = Path(
    os.environ.get("SHEETS_SYNC_SCREENSHOT_DIR")
    or Path(__file__).resolve().parent.parent / "screenshots"
)
WIDE, PHONE = {"width": 1280, "height": 900}, {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright is not installed; install it with: pip install playwright")
    if not CHROMIUM.exists():
        unavailable(
            "Chromium not found at /usr/bin/chromium; install it with: "
            "apt-get install chromium chromium-driver"
        )
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture
def live_server(app, runtime) -> Iterator[str]:
    from sheets_sync.jobs.worker import EmbeddedWorker

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    worker = EmbeddedWorker(runtime)
    worker.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        worker.stop()
        server.shutdown()
        thread.join(10)


@pytest.fixture
def page(browser, live_server):
    # A browser in Berlin: a new connection's schedule must start in its time zone.
    context = browser.new_context(base_url=live_server, viewport=WIDE, timezone_id="Europe/Berlin")
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems: list[str] = []
    # A CSP violation (inline script/style) or a JS error shows up here.
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.problems = problems  # type: ignore[attr-defined]
    yield page
    context.close()


def sign_up(page) -> None:
    page.goto("/signup")
    page.fill("input[name=email]", "ann@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=confirm]", PASSWORD)
    page.click("button:has-text('Sign up')")
    page.wait_for_url("**/")
    assert page.locator("h1").inner_text() == "Your connections"


def add_connection(page, name: str, link: str) -> None:
    page.click("text=Add a connection >> nth=0")
    page.wait_for_url("**/connections/new")
    page.fill("input[name=name]", name)
    page.fill("input[name=instantly_api_key]", INSTANTLY_KEY)
    page.fill("input[name=spreadsheet_url]", link)
    page.click("button[data-test-key]")
    page.locator("[data-test-result] .ok").wait_for()


def save(page) -> None:
    page.click("button:has-text('Save')")
    page.wait_for_url("**/")


def save_screenshot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SCREENSHOTS / name)
    return path


def fits(page) -> bool:
    """Nothing sticks out sideways: the page scrolls only down."""
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def screenshots_wide_and_phone(page, tmp_path: Path, name: str) -> None:
    """``name``-1280.png and ``name``-390.png; the page must fit the phone's width."""
    page.set_viewport_size(WIDE)
    save_screenshot(page, tmp_path, f"{name}-1280.png")
    page.set_viewport_size(PHONE)
    save_screenshot(page, tmp_path, f"{name}-390.png")
    assert fits(page), name
    page.set_viewport_size(WIDE)


def test_refresh_updates_the_page_without_a_reload(page, fake_instantly, fake_sheets,
                                                   spreadsheet_id, tmp_path):
    _, campaign_id = workspace_with_campaign(fake_instantly, name="Q1 outbound <b>bold</b>")
    sign_up(page)
    assert SERVICE_ACCOUNT_EMAIL in page.locator("#sa-email").inner_text()

    add_connection(page, "Team metrics", sheet_url(spreadsheet_id))
    assert "The key works: 1 campaign" in page.locator("[data-test-result]").inner_text()
    # The picker was filled by app.js; ticking a campaign fills the text field.
    box = page.locator(f"[data-campaign-picker] input[value='{campaign_id}']")
    assert "Q1 outbound <b>bold</b>" in page.locator("[data-campaign-picker]").inner_text()
    box.check()
    assert page.input_value("input[name=campaign_ids]") == campaign_id
    page.click("button[data-check-access]")
    page.locator("[data-access-result] .ok").wait_for()
    assert "Sheet1" in page.locator("[data-access-result]").inner_text()
    save_screenshot(page, tmp_path, "connection-form.png")
    save(page)

    card = page.locator("article.connection").first
    assert "Team metrics" in card.inner_text()
    assert "Never refreshed" in card.inner_text()

    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    page.evaluate("window.__noReload = 'still here'")
    card.locator("button[data-refresh-button]").click()
    status = card.locator("[data-field=status]")
    status.filter(has_text="Succeeded").wait_for(timeout=30_000)

    assert page.evaluate("window.__noReload") == "still here"
    assert navigations == []
    assert "rows written" in card.locator("[data-field=rows]").inner_text()
    tab_link = card.locator("[data-field=tab-link]")
    assert tab_link.is_visible()
    assert tab_link.get_attribute("href").startswith(
        f"https://docs.google.com/spreadsheets/d/{spreadsheet_id}/edit#gid="
    )
    assert card.locator("button[data-refresh-button]").inner_text() == "Refresh"
    assert "just now" in card.locator("[data-field=when]").inner_text()

    rows = fake_sheets.values(spreadsheet_id, "Instantly steps")
    assert len(rows) > 3
    flat = [str(cell) for row in rows for cell in row]
    assert "Step 1" in flat and "Step 2" in flat and "A" in flat and "B" in flat

    shot = save_screenshot(page, tmp_path, "dashboard.png")
    assert shot.stat().st_size > 10_000
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    save_screenshot(page, tmp_path, "dashboard-phone.png")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert page.problems == []  # type: ignore[attr-defined]


def test_unshared_sheet_says_to_share_with_the_service_account(page, fake_instantly,
                                                               fake_sheets, tmp_path):
    workspace_with_campaign(fake_instantly)
    unshared = fake_sheets.create_spreadsheet("Private", sheets=("Sheet1",), shared_with=())
    sign_up(page)
    add_connection(page, "Private sheet", sheet_url(unshared))
    page.click("button[data-check-access]")
    page.locator("[data-access-result] .bad").wait_for()
    message = page.locator("[data-access-result]").inner_text()
    assert f"Share the sheet with {SERVICE_ACCOUNT_EMAIL} as Editor" in message
    save(page)

    card = page.locator("article.connection").first
    page.evaluate("window.__noReload = 'still here'")
    card.locator("button[data-refresh-button]").click()
    card.locator("[data-field=status]").filter(has_text="Failed").wait_for(timeout=30_000)
    assert page.evaluate("window.__noReload") == "still here"
    error = card.locator("[data-field=error]")
    assert error.is_visible()
    assert f"Share the sheet with {SERVICE_ACCOUNT_EMAIL} as Editor" in error.inner_text()
    assert not card.locator("[data-field=tab-link]").is_visible()
    save_screenshot(page, tmp_path, "dashboard-failed.png")
    assert page.problems == []  # type: ignore[attr-defined]


# --- the first ten minutes -------------------------------------------------------------------


def test_landing_page_says_what_the_product_does(page, tmp_path):
    page.goto("/")
    landing = page.locator("[data-landing]")
    assert "Google Sheet" in landing.inner_text() and "Instantly" in landing.inner_text()
    screenshots_wide_and_phone(page, tmp_path, "landing")
    landing.locator("a:has-text('Sign up')").click()
    page.wait_for_url("**/signup")
    page.go_back()
    landing.locator("a:has-text('Sign in')").click()
    page.wait_for_url("**/login")
    assert page.problems == []  # type: ignore[attr-defined]


def test_form_defaults_and_a_failed_save_in_one_round(page, fake_instantly, tmp_path):
    sign_up(page)
    page.click("text=Add a connection >> nth=0")
    page.wait_for_url("**/connections/new")
    # The browser's time zone, and the time a daily schedule runs at, shown as saved.
    assert page.input_value("select[name=timezone]") == "Europe/Berlin"
    page.select_option("select[name=schedule]", "daily")
    assert page.input_value("input[name=schedule_time]") == "09:00"
    number = page.locator("input[name=feature_min_sample]")
    text_input = page.locator("input[name=name]")
    style = "el => [getComputedStyle(el).borderTopColor, getComputedStyle(el).borderRadius]"
    assert number.evaluate(style) == text_input.evaluate(style)
    screenshots_wide_and_phone(page, tmp_path, "connection-form-new")

    # Campaign names typed into the ids field, a bad link, no name: all said at once.
    page.fill("input[name=instantly_api_key]", INSTANTLY_KEY)
    page.fill("input[name=spreadsheet_url]", "https://example.com/my-sheet")
    page.fill("input[name=campaign_ids]", "Q1 outbound")
    page.click("button:has-text('Save')")
    summary = page.locator("[data-error-summary]")
    summary.wait_for()
    words = summary.inner_text()
    assert "4 fields need your attention" in words
    for label in ("Name", "Instantly API key", "Google Sheet link", "Campaign ids"):
        assert label in words, label
    assert "paste it again before saving" in words
    assert "Paste campaign ids, not names" in words
    # What was typed is kept, but the key; the chosen schedule too.
    assert page.input_value("input[name=campaign_ids]") == "Q1 outbound"
    assert page.input_value("input[name=instantly_api_key]") == ""
    assert page.input_value("select[name=schedule]") == "daily"
    assert page.input_value("select[name=timezone]") == "Europe/Berlin"
    screenshots_wide_and_phone(page, tmp_path, "connection-form-errors")
    # The refused Save answers 400, which Chromium reports; nothing else went wrong.
    refused = "Failed to load resource: the server responded with a status of 400 (BAD REQUEST)"
    assert [p for p in page.problems if p != refused] == []  # type: ignore[attr-defined]


def test_viewer_share_not_shared_notice_and_live_refresh(page, fake_instantly, fake_sheets,
                                                         tmp_path):
    _, campaign_id = workspace_with_campaign(fake_instantly, name="Q1 outbound")
    viewer_book = fake_sheets.create_spreadsheet("Viewer", sheets=("Sheet1",), shared_with=())
    fake_sheets.share(viewer_book, SERVICE_ACCOUNT_EMAIL, "reader")
    sign_up(page)

    add_connection(page, "Team metrics", sheet_url(viewer_book))
    page.click("button[data-check-access]")
    page.locator("[data-access-result] .bad").wait_for()
    message = page.locator("[data-access-result]").inner_text()
    assert f"{SERVICE_ACCOUNT_EMAIL} as Viewer: change it to Editor" in message
    screenshots_wide_and_phone(page, tmp_path, "check-access-viewer")

    # Another sheet, not shared at all yet: it saves, and the dashboard says what to do.
    unshared = fake_sheets.create_spreadsheet("Later", sheets=("Sheet1",), shared_with=())
    page.fill("input[name=spreadsheet_url]", sheet_url(unshared))
    page.locator(f"[data-campaign-picker] input[value='{campaign_id}']").check()
    save(page)
    card = page.locator("article.connection").first
    notice = card.locator("[data-sharing-notice]")
    assert notice.inner_text() == f"Not shared yet: share with {SERVICE_ACCOUNT_EMAIL} as Editor."
    assert "Q1 outbound" in card.locator(".facts").inner_text()
    assert campaign_id not in card.locator(".facts").inner_text()
    fill_hint = page.locator("[data-until-refresh]", has_text="Press Refresh to fill the sheet")
    assert fill_hint.is_visible()
    screenshots_wide_and_phone(page, tmp_path, "dashboard-not-shared")

    fake_sheets.share(unshared, SERVICE_ACCOUNT_EMAIL)
    card.locator("button[data-refresh-button]").click()
    card.locator("[data-field=status]").filter(has_text="Succeeded").wait_for(timeout=30_000)
    # Both go once the refresh worked, without a reload.
    fill_hint.wait_for(state="detached")
    notice.wait_for(state="detached")
    assert page.locator("[data-until-refresh]").count() == 0
    assert page.problems == []  # type: ignore[attr-defined]


def test_history_lists_runs_first_numbered_per_connection(page, fake_instantly, fake_sheets,
                                                          spreadsheet_id, tmp_path):
    workspace, campaign_id = workspace_with_campaign(fake_instantly)
    for n in range(14):  # a wide table: many variants, many columns
        workspace.record(campaign_id, dt.date(2026, 1, 6), step=2,
                         variant=n, sent=50 + n, opened=20, replies=n)
    sign_up(page)
    for name, tab in (("Older one", "Old tab"), ("Team metrics", "Instantly steps")):
        add_connection(page, name, sheet_url(spreadsheet_id))
        page.fill("input[name=worksheet_title]", tab)
        save(page)
    card = page.locator("article.connection", has_text="Team metrics")
    for _ in range(2):
        card.locator("button[data-refresh-button]").click()
        card.locator("[data-field=status]").filter(has_text="Succeeded").wait_for(timeout=30_000)
        page.reload()
        card = page.locator("article.connection", has_text="Team metrics")
    older = page.locator("article.connection", has_text="Older one")
    older.locator("button[data-refresh-button]").click()
    older.locator("[data-field=status]").filter(has_text="Succeeded").wait_for(timeout=30_000)

    card.locator("a:has-text('History')").click()
    page.wait_for_url("**/runs")
    runs = page.locator("[data-runs]")
    table = page.locator("[data-last-table]")
    assert runs.bounding_box()["y"] < table.bounding_box()["y"]
    assert runs.locator("td[data-label=Run]").all_inner_texts() == ["#2", "#1"]
    # The runs are on the first screen; the wide table scrolls inside its own box.
    assert runs.bounding_box()["y"] < 900
    scroller = table.locator(".table-scroll")
    assert scroller.evaluate("el => el.scrollWidth > el.clientWidth")
    screenshots_wide_and_phone(page, tmp_path, "history")
    page.set_viewport_size(PHONE)
    first_run = runs.locator("tr[data-run-id]").first
    box = first_run.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    assert page.problems == []  # type: ignore[attr-defined]
