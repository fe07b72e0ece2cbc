"""The page in a real browser: headless Chromium (Debian's, never downloaded) via Playwright.

The app is served on 127.0.0.1 by werkzeug in a thread with the embedded worker, exactly
as ``sheets-sync serve`` runs it; Instantly and Google Sheets are the local fakes.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from tests.plugin_fakes import INSTANTLY_KEY, SERVICE_ACCOUNT_EMAIL
from tests.web_helpers import sheet_url, workspace_with_campaign

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "correct horse battery"
SCREENSHOT_COPY = os.environ.get("SHEETS_SYNC_SCREENSHOT_DIR")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: browser tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright is not installed; install it with: pip install playwright")
    if not CHROMIUM.exists():
        _unavailable(
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
    context = browser.new_context(base_url=live_server, viewport={"width": 1200, "height": 900})
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
    if SCREENSHOT_COPY:
        shutil.copy(path, Path(SCREENSHOT_COPY) / name)
    return path


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
