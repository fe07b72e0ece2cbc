"""Proxy and CA settings from the environment still apply, read once per client."""

from __future__ import annotations

import datetime as dt

import requests

from sheets_sync.pipeline.instantly import InstantlyClient
from sheets_sync.pipeline.sheets_writer import make_sheets_client
from tests.plugin_fakes import INSTANTLY_KEY

PROXY = "http://127.0.0.1:9"  # the discard port: nothing answers there


def test_a_client_uses_the_proxy_the_environment_names_for_its_api(monkeypatch, tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not used: no request is sent\n")
    monkeypatch.setenv("HTTPS_PROXY", PROXY)
    monkeypatch.setenv("NO_PROXY", "internal.example")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    client = InstantlyClient(INSTANTLY_KEY, base_url="https://api.instantly.ai/api/v2")
    session = client._session
    assert session.proxies.get("https") == PROXY
    assert session.verify == str(bundle)


def test_no_proxy_still_sends_both_apis_direct(
    monkeypatch, fake_instantly, workspace, fake_sheets, service_account_file,
    spreadsheet_id, fast_retry,
):
    # With the proxy used, every call would fail: nothing listens on it.
    monkeypatch.setenv("HTTP_PROXY", PROXY)
    monkeypatch.setenv("HTTPS_PROXY", PROXY)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    cid = workspace.add_campaign("Direct")
    workspace.record(cid, dt.date(2026, 11, 20), 0, 0, sent=5)
    instantly = InstantlyClient(INSTANTLY_KEY, base_url=fake_instantly.url, retry=fast_retry)
    assert [row.sent for row in instantly.step_analytics(cid)] == [5]
    sheets = make_sheets_client(service_account_file, api_url=fake_sheets.url,
                                retry=fast_retry)
    assert "Sheet1" in sheets.check_access(spreadsheet_id)


def test_what_one_workspace_is_answered_never_reaches_another_workspaces_calls(
    runtime, fake_instantly, workspace
):
    other_key = "test-instantly-key-other-7c1e"
    fake_instantly.add_workspace(other_key)
    fake_instantly.set_cookies = True
    # A plain session sends the cookie back: the fake sets one that a client would keep.
    plain = requests.Session()
    for _ in range(2):
        plain.get(f"{fake_instantly.url}/campaigns",
                  headers={"Authorization": f"Bearer {INSTANTLY_KEY}"})
    assert fake_instantly.calls[-1].cookie == f"workspace={INSTANTLY_KEY[-4:]}"
    fake_instantly.reset_calls()
    # A worker thread's clients share one session across workspaces.
    first, second = runtime.instantly(INSTANTLY_KEY), runtime.instantly(other_key)
    assert first._session is second._session
    first.list_campaigns()
    second.list_campaigns()
    first.list_campaigns()
    assert [(c.api_key_hint, c.cookie) for c in fake_instantly.calls] == [
        (INSTANTLY_KEY[-4:], None), (other_key[-4:], None), (INSTANTLY_KEY[-4:], None)
    ]
