"""The Instantly client fed recorded payloads through requests-mock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from sheets_sync import USER_AGENT
from sheets_sync.errors import (
    InstantlyKeyRejected,
    InstantlyMalformedResponse,
    InstantlyNotFound,
    InstantlyPaymentRequired,
    InstantlyRateLimited,
    InstantlyUnavailable,
)
from sheets_sync.pipeline.instantly import InstantlyClient
from sheets_sync.pipeline.retry import RetryPolicy

FIXTURES = Path(__file__).parent / "fixtures" / "instantly"
BASE = "https://api.example.test/api/v2"
STEPS = BASE + "/campaigns/analytics/steps"
KEY = "secret-instantly-key-7c2e"


def load(name):
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def client(sleeps):
    return InstantlyClient(KEY, base_url=BASE, retry=RetryPolicy(attempts=3, sleep=sleeps.append))


def test_parses_string_indices_and_null_rows(requests_mock, client):
    requests_mock.get(STEPS, json=load("steps_basic.json"))
    rows = client.step_analytics("c1")
    assert {(r.step, r.variant) for r in rows} >= {(0, 0), (0, 1), (1, 0), (None, None)}
    assert all(isinstance(r.sent, int) for r in rows)


def test_sends_every_query_parameter_with_auth_and_user_agent(requests_mock, client):
    import datetime as dt

    requests_mock.get(STEPS, json=load("steps_opportunities.json"))
    client.step_analytics(
        "c1", start=dt.date(2026, 1, 1),
        end=dt.datetime(2026, 1, 31, 23, 59, 59, 999000, tzinfo=dt.UTC),
        include_opportunities=True,
    )
    req = requests_mock.last_request
    assert req.qs == {
        "campaign_id": ["c1"], "start_date": ["2026-01-01"],
        "end_date": ["2026-01-31t23:59:59.999000z"], "include_opportunities_count": ["true"],
    }
    assert req.headers["Authorization"] == f"Bearer {KEY}"
    assert req.headers["User-Agent"] == USER_AGENT
    assert req.headers["Accept"] == "application/json"
    # The session's own headers still go along: compressed answers cost less to fetch.
    assert "gzip" in req.headers["Accept-Encoding"]


def test_opportunity_fields_are_read(requests_mock, client):
    requests_mock.get(STEPS, json=load("steps_opportunities.json"))
    rows = client.step_analytics("c1", include_opportunities=True)
    assert all(r.opportunities is not None and r.won is not None for r in rows)


def test_thirty_variants_and_unknown_fields(requests_mock, client):
    requests_mock.get(STEPS, json=load("steps_30_variants.json"))
    assert sorted(r.variant for r in client.step_analytics()) == list(range(30))
    requests_mock.get(STEPS, json=load("steps_unknown_fields.json"))
    assert client.step_analytics()


@pytest.mark.parametrize("fixture", ["steps_missing_field.json", "steps_wrong_type.json"])
def test_missing_or_mistyped_fields_are_a_clear_error(requests_mock, client, fixture):
    requests_mock.get(STEPS, json=load(fixture))
    with pytest.raises(InstantlyMalformedResponse) as err:
        client.step_analytics()
    assert "sent" in err.value.message
    assert KEY not in err.value.message


def test_truncated_json_is_malformed(requests_mock, client):
    requests_mock.get(STEPS, text='[{"step": "0", "vari')
    with pytest.raises(InstantlyMalformedResponse):
        client.step_analytics()


def test_a_body_that_is_not_json_is_asked_again_and_then_named(requests_mock, client, sleeps):
    requests_mock.get(STEPS, [{"text": "<html>Bad gateway</html>"}] * 3)
    with pytest.raises(InstantlyMalformedResponse) as err:
        client.step_analytics()
    assert "not valid JSON" in err.value.message
    assert requests_mock.call_count == 3  # a body cut short in transit may come whole


def test_json_of_the_wrong_shape_is_not_asked_again(requests_mock, client):
    requests_mock.get(STEPS, json={"items": []})
    with pytest.raises(InstantlyMalformedResponse):
        client.step_analytics()
    assert requests_mock.call_count == 1


def test_a_name_cut_inside_an_emoji_or_not_utf8_is_read_as_it_always_was(requests_mock, client):
    # A lone surrogate escape, which a text cut in the middle of an emoji leaves, is valid
    # JSON to Python's parser but not to pydantic's; bytes that are not UTF-8 are replaced.
    detail = load("campaign_detail.json")
    body = json.dumps({**detail, "name": "Launch \ud83d"})  # written as the escape
    assert "\\ud83d" in body
    requests_mock.get(f"{BASE}/campaigns/{detail['id']}", text=body)
    assert client.campaign(detail["id"]).name == "Launch \ud83d"
    raw = json.dumps({**detail, "name": "Caf\u00e9"}).encode().replace(b"\\u00e9", b"\xe9")
    requests_mock.get(
        f"{BASE}/campaigns/{detail['id']}", content=raw,
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert client.campaign(detail["id"]).name == "Caf\ufffd"


def test_campaign_list_follows_the_cursor_to_the_end(requests_mock, client):
    page1, page2 = load("campaigns_page1.json"), load("campaigns_page2.json")
    requests_mock.get(BASE + "/campaigns", [{"json": page1}, {"json": page2}])
    campaigns = client.list_campaigns()
    assert len(campaigns) == len(page1["items"]) + len(page2["items"])
    second = requests_mock.request_history[1]
    assert second.qs["starting_after"] == [page1["next_starting_after"].lower()]
    assert second.qs["limit"] == ["100"]


def test_campaign_detail_has_sequence_subjects(requests_mock, client):
    detail = load("campaign_detail.json")
    requests_mock.get(f"{BASE}/campaigns/{detail['id']}", json=detail)
    campaign = client.campaign(detail["id"])
    assert campaign.name == detail["name"]
    assert campaign.main_steps[0].variants[0].subject


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, InstantlyKeyRejected), (403, InstantlyKeyRejected), (402, InstantlyPaymentRequired)],
)
def test_permanent_errors_are_not_retried(requests_mock, client, sleeps, status, error):
    requests_mock.get(STEPS, status_code=status, json={"message": "nope"})
    with pytest.raises(error) as err:
        client.step_analytics()
    assert requests_mock.call_count == 1
    assert KEY not in err.value.message


def test_429_with_retry_after_then_success(requests_mock, client, sleeps):
    requests_mock.get(STEPS, [
        {"status_code": 429, "headers": {"Retry-After": "3"}, "json": {}},
        {"json": load("steps_basic.json")},
    ])
    assert client.step_analytics()
    assert sleeps == [3.0]
    assert client.calls == 2


def test_rate_limit_that_persists_is_reported(requests_mock, client):
    requests_mock.get(STEPS, status_code=429, json={})
    with pytest.raises(InstantlyRateLimited):
        client.step_analytics()
    assert requests_mock.call_count == 3


def test_5xx_and_timeouts_are_retried_then_reported(requests_mock, client, sleeps):
    requests_mock.get(STEPS, [{"status_code": 500, "json": {}}, {"exc": requests.ConnectTimeout},
                              {"exc": requests.ReadTimeout}])
    with pytest.raises(InstantlyUnavailable) as err:
        client.step_analytics()
    assert "timed out" in err.value.message
    assert len(sleeps) == 2


def test_unknown_campaign(requests_mock, client):
    requests_mock.get(BASE + "/campaigns/nope", status_code=404, json={"message": "not found"})
    with pytest.raises(InstantlyNotFound):
        client.campaign("nope")


def test_read_timeout_against_a_real_slow_server(fake_instantly):
    """A real socket timeout, not a mocked one: the client gives up and says so."""
    fake_instantly.add_workspace(KEY)
    fake_instantly.delay_next(2.0, count=5)
    client = InstantlyClient(KEY, base_url=fake_instantly.url, timeout=(1, 0.3),
                             retry=RetryPolicy(attempts=2, sleep=lambda s: None))
    with pytest.raises(InstantlyUnavailable):
        client.step_analytics()
