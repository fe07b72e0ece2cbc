"""The Instantly fake itself, exercised over real HTTP with ``requests``.

These pin the behaviour other tests rely on (shapes, auth, filtering, pagination, fault
injection), so a change to the fake that would silently weaken them fails here first.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from sheets_sync import USER_AGENT
from tests.fakes.instantly_api import BASE_METRICS, OPPORTUNITY_METRICS, FakeInstantlyServer

KEY = "test-key-0000-abcd"
STEPS = "/campaigns/analytics/steps"
D1, D2, D3 = dt.date(2026, 1, 5), dt.date(2026, 1, 6), dt.date(2026, 1, 7)
FIXTURES = Path(__file__).parent / "fixtures" / "instantly"


@pytest.fixture
def server() -> Iterator[FakeInstantlyServer]:
    with FakeInstantlyServer() as fake:
        yield fake


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """A session that looks like the product: its User-Agent and the workspace key."""
    with requests.Session() as session:
        session.headers.update({"User-Agent": USER_AGENT, "Authorization": f"Bearer {KEY}"})
        yield session


def get(
    http: requests.Session, server: FakeInstantlyServer, path: str, **params: Any
) -> requests.Response:
    return http.get(server.url + path, params=params, timeout=5)


# --- lifecycle, CDN, auth -------------------------------------------------------------


def test_url_is_the_api_base_on_loopback(server: FakeInstantlyServer) -> None:
    assert server.url == f"http://127.0.0.1:{server.port}/api/v2"


def test_stop_closes_the_port() -> None:
    with FakeInstantlyServer() as fake:
        url = fake.url
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/campaigns", headers={"User-Agent": USER_AGENT}, timeout=2)


@pytest.mark.parametrize("agent", ["python-requests/2.32.0", "Python-urllib/3.11"])
def test_cdn_blocks_default_library_user_agents(
    server: FakeInstantlyServer, http: requests.Session, agent: str
) -> None:
    server.add_workspace(KEY)
    response = http.get(server.url + "/campaigns", headers={"User-Agent": agent}, timeout=5)
    assert response.status_code == 403
    assert response.headers["Content-Type"].startswith("text/html")
    assert "Access denied" in response.text


@pytest.mark.parametrize("authorization", [None, "Bearer nope", "Basic " + KEY, "Bearer "])
def test_missing_or_unknown_key_is_401(
    server: FakeInstantlyServer, authorization: str | None
) -> None:
    server.add_workspace(KEY)
    headers = {"User-Agent": USER_AGENT}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = requests.get(server.url + STEPS, headers=headers, timeout=5)
    assert response.status_code == 401
    assert response.json() == {
        "statusCode": 401,
        "error": "Unauthorized",
        "message": "Invalid API key",
    }


def test_unpaid_workspace_is_402_and_missing_scope_is_403(
    server: FakeInstantlyServer, http: requests.Session
) -> None:
    workspace = server.add_workspace(KEY, paid=False)
    response = get(http, server, STEPS)
    assert response.status_code == 402
    assert response.json()["error"] == "Payment Required"

    workspace.paid, workspace.scopes_ok = True, False  # flipping mid-test takes effect
    response = get(http, server, STEPS)
    assert response.status_code == 403
    assert response.json()["statusCode"] == 403

    workspace.scopes_ok = True
    assert get(http, server, STEPS).status_code == 200


def test_workspaces_are_isolated(server: FakeInstantlyServer, http: requests.Session) -> None:
    server.add_workspace(KEY)
    other = server.add_workspace("someone-elses-key")
    foreign = other.add_campaign("Not yours")
    response = get(http, server, STEPS, campaign_id=foreign)
    assert response.status_code == 404
    assert response.json() == {
        "statusCode": 404,
        "error": "Not Found",
        "message": "Campaign not found",
    }
    assert get(http, server, "/campaigns").json() == {"items": []}


def test_unknown_route_is_fastify_404(server: FakeInstantlyServer, http: requests.Session) -> None:
    server.add_workspace(KEY)
    response = get(http, server, "/nope")
    assert response.status_code == 404
    assert response.json()["message"] == "Route GET:/api/v2/nope not found"


# --- steps analytics ------------------------------------------------------------------


def test_steps_rows_have_string_indices_int_metrics_and_come_unsorted(
    server: FakeInstantlyServer, http: requests.Session
) -> None:
    workspace = server.add_workspace(KEY)
    cid = workspace.add_campaign("Q1")
    for step in range(2):
        for variant in range(2):
            workspace.record(cid, D1, step, variant, sent=10 * step + variant + 1, won=1)
    workspace.record(cid, D1, None, None, replies=2)

    rows = get(http, server, STEPS, campaign_id=cid).json()

    assert [(r["step"], r["variant"]) for r in rows] == [
        (None, None),
        ("1", "1"),
        ("1", "0"),
        ("0", "1"),
        ("0", "0"),
    ]
    assert all(set(r) == {"step", "variant", *BASE_METRICS} for r in rows)
    assert all(type(r[m]) is int for r in rows for m in BASE_METRICS)
    assert rows[1]["sent"] == 12


def test_opportunity_fields_only_when_asked(
    server: FakeInstantlyServer, http: requests.Session
) -> None:
    workspace = server.add_workspace(KEY)
    cid = workspace.add_campaign("Q1")
    workspace.record(cid, D1, 0, 0, sent=5, opportunities=2, unique_opportunities=1, won=1)

    (row,) = get(http, server, STEPS, campaign_id=cid, include_opportunities_count="true").json()
    assert {k: row[k] for k in OPPORTUNITY_METRICS} == {
        "opportunities": 2,
        "unique_opportunities": 1,
        "meetings_booked": 0,
        "won": 1,
    }
    (row,) = get(http, server, STEPS, campaign_id=cid, include_opportunities_count="false").json()
    assert not set(OPPORTUNITY_METRICS) & set(row)
    # requests turns Python True into "True", which the real API's validator rejects.
    response = get(http, server, STEPS, include_opportunities_count=True)
    assert response.status_code == 400
    assert response.json()["error"] == "Bad Request"


def test_record_accumulates_and_all_campaigns_are_summed(
    server: FakeInstantlyServer, http: requests.Session
) -> None:
    workspace = server.add_workspace(KEY)
    first, second = workspace.add_campaign("A"), workspace.add_campaign("B")
    workspace.record(first, D1, 0, 0, sent=3, opened=1)
    workspace.record(first, D1, 0, 0, sent=4)
    workspace.record(first, D2, 0, 0, sent=5)
    workspace.record(second, D1, 0, 0, sent=100)
    workspace.record(second, D1, 0, 1, sent=7)

    by_first = get(http, server, STEPS, campaign_id=first).json()
    assert [(r["variant"], r["sent"], r["opened"]) for r in by_first] == [("0", 12, 1)]

    combined = {(r["step"], r["variant"]): r["sent"] for r in get(http, server, STEPS).json()}
    assert combined == {("0", "0"): 112, ("0", "1"): 7}
    # An empty campaign_id means "all campaigns", as the document says.
    assert len(get(http, server, STEPS, campaign_id="").json()) == 2


def test_subsequence_steps_beyond_the_sequence_are_reported(
    server: FakeInstantlyServer, http: requests.Session
) -> None:
    workspace = server.add_workspace(KEY)
    cid = workspace.add_campaign("Q1")  # 2 steps in the main sequence
    workspace.record(cid, D1, 5, 0, sent=9)
    assert get(http, server, STEPS, campaign_id=cid).json()[0]["step"] == "5"


@pytest.mark.parametrize(
    ("params", "days"),
    [
        ({}, {D1, D2, D3}),
        ({"start_date": "2026-01-06"}, {D2, D3}),
        ({"end_date": "2026-01-06"}, {D1, D2}),  # end day's midnight is inside: inclusive
        ({"start_date": "2026-01-06", "end_date": "2026-01-06"}, {D2}),
        ({"start_date": "2026-01-06T00:00:00.000Z", "end_date": "2026-01-06T23:59:59Z"}, {D2}),
        ({"start_date": "2026-01-05T00:00:01Z"}, {D2, D3}),  # D1 midnight is before start
        ({"end_date": "2026-01-06T01:00:00+02:00"}, {D1}),  # 2026-01-05T23:00Z
        ({"start_date": "2025-01-01", "end_date": "2025-12-31"}, set()),
    ],
)
def test_date_filter_counts_a_day_when_its_utc_midnight_is_in_range(
    server: FakeInstantlyServer,
    http: requests.Session,
    params: dict[str, str],
    days: set[dt.date],
) -> None:
    workspace = server.add_workspace(KEY)
    cid = workspace.add_campaign("Q1")
    sent_by_day = {D1: 1, D2: 10, D3: 100}
    for day, sent in sent_by_day.items():
        workspace.record(cid, day, 0, 0, sent=sent)

    rows = get(http, server, STEPS, campaign_id=cid, **params).json()

    expected = sum(sent_by_day[day] for day in days)
    assert (rows[0]["sent"] if rows else 0) == expected
    assert len(rows) == (1 if days else 0)


@pytest.mark.parametrize(
    "params",
    [
        {"start_date": "yesterday"},
        {"end_date": "2026-02-30"},
        {"start_date": "2026-01-05T25:00:00Z"},
        {"start_date": "2026-01-07", "end_date": "2026-01-05"},
    ],
)
def test_bad_dates_are_400(
    server: FakeInstantlyServer, http: requests.Session, params: dict[str, str]
) -> None:
    server.add_workspace(KEY)
    response = get(http, server, STEPS, **params)
    assert response.status_code == 400
    body = response.json()
    assert body["statusCode"] == 400 and body["error"] == "Bad Request" and body["message"]


def test_recording_mistakes_fail_loudly(server: FakeInstantlyServer) -> None:
    workspace = server.add_workspace(KEY)
    cid = workspace.add_campaign("Q1")
    with pytest.raises(ValueError, match="unknown campaign"):
        workspace.record("nope", D1, 0, 0, sent=1)
    with pytest.raises(ValueError, match="sent"):
        workspace.record(cid, D1, 0, 0, sent=-1)
    with pytest.raises(TypeError):
        workspace.record(cid, dt.datetime(2026, 1, 5, tzinfo=dt.UTC), 0, 0)
    with pytest.raises(ValueError, match="unknown keys"):
        workspace.add_campaign("X", steps=[[{"subject": "s", "body": "b", "disabled": True}]])
    with pytest.raises(ValueError, match="already exists"):
        workspace.add_campaign("X", campaign_id=cid)


# --- campaigns --------------------------------------------------------------------------


def test_campaign_list_paginates_with_a_cursor(
    server: FakeInstantlyServer, http: requests.Session
) -> None:
    workspace = server.add_workspace(KEY)
    created = {workspace.add_campaign(f"Campaign {i}") for i in range(5)}

    seen: list[str] = []
    pages = 0
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = get(http, server, "/campaigns", **params).json()
        pages += 1
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        if "next_starting_after" not in page:
            break
        assert page["next_starting_after"] == page["items"][-1]["id"]
        params["starting_after"] = page["next_starting_after"]

    assert pages == 3 and len(seen) == 5 and set(seen) == created


def test_campaign_list_default_limit_and_search(
    server: FakeInstantlyServer, http: requests.Session
) -> None:
    workspace = server.add_workspace(KEY)
    for i in range(12):
        workspace.add_campaign(f"Outbound {i}" if i % 3 else f"Webinar {i}")

    first = get(http, server, "/campaigns").json()
    assert len(first["items"]) == 10 and "next_starting_after" in first

    found = get(http, server, "/campaigns", search="WEBINAR", limit=100).json()
    assert sorted(item["name"] for item in found["items"]) == [
        "Webinar 0",
        "Webinar 3",
        "Webinar 6",
        "Webinar 9",
    ]
    assert "next_starting_after" not in found


@pytest.mark.parametrize("limit", ["0", "101", "ten", "-1"])
def test_campaign_list_limit_out_of_range_is_400(
    server: FakeInstantlyServer, http: requests.Session, limit: str
) -> None:
    server.add_workspace(KEY)
    response = get(http, server, "/campaigns", limit=limit)
    assert response.status_code == 400
    assert "limit" in response.json()["message"]


def test_campaign_detail_has_the_sequence(
    server: FakeInstantlyServer, http: requests.Session
) -> None:
    workspace = server.add_workspace(KEY)
    cid = workspace.add_campaign(
        "Q1",
        steps=[
            [{"subject": "Hi {{firstName}}", "body": "<p>A</p>"}],
            [
                {"subject": "Follow-up A", "body": "x", "v_disabled": False},
                {"subject": "Follow-up B", "body": "y", "v_disabled": True},
            ],
        ],
        status=2,
    )

    campaign = get(http, server, f"/campaigns/{cid}").json()

    assert campaign["id"] == cid and campaign["name"] == "Q1" and campaign["status"] == 2
    for required in ("campaign_schedule", "timestamp_created", "timestamp_updated"):
        assert campaign[required]
    assert campaign["campaign_schedule"]["schedules"]
    steps = campaign["sequences"][0]["steps"]
    assert [s["type"] for s in steps] == ["email", "email"] and steps[0]["delay"] == 2
    assert steps[0]["variants"] == [{"subject": "Hi {{firstName}}", "body": "<p>A</p>"}]
    assert [v["v_disabled"] for v in steps[1]["variants"]] == [False, True]
    assert get(http, server, "/campaigns").json()["items"] == [campaign]


def test_default_campaign_is_two_steps_of_two_variants(
    server: FakeInstantlyServer, http: requests.Session
) -> None:
    cid = server.add_workspace(KEY).add_campaign("Q1")
    steps = get(http, server, f"/campaigns/{cid}").json()["sequences"][0]["steps"]
    assert [len(s["variants"]) for s in steps] == [2, 2]
    subjects = [v["subject"] for s in steps for v in s["variants"]]
    assert len(set(subjects)) == 4 and all(v["body"] for s in steps for v in s["variants"])


def test_unknown_campaign_detail_is_404(
    server: FakeInstantlyServer, http: requests.Session
) -> None:
    server.add_workspace(KEY)
    response = get(http, server, "/campaigns/f9cc070d-8dba-4341-b847-f083c358e460")
    assert response.status_code == 404
    assert response.json()["message"] == "Campaign not found"


# --- fault injection --------------------------------------------------------------------


def test_fail_next_with_retry_after_then_recovers(
    server: FakeInstantlyServer, http: requests.Session
) -> None:
    server.add_workspace(KEY)
    server.fail_next(429, headers={"Retry-After": "1"}, count=2)

    statuses = [get(http, server, STEPS).status_code for _ in range(3)]

    assert statuses == [429, 429, 200]
    assert [call.status for call in server.calls] == statuses

    server.fail_next(429, headers={"Retry-After": "1"})
    response = get(http, server, STEPS)
    assert response.headers["Retry-After"] == "1"
    assert response.json() == {
        "statusCode": 429,
        "error": "Too Many Requests",
        "message": "Rate limit exceeded",
    }


def test_fail_next_custom_body_and_path_filter(
    server: FakeInstantlyServer, http: requests.Session
) -> None:
    server.add_workspace(KEY)
    server.fail_next(
        502,
        "<html>Bad gateway</html>",
        headers={"content-type": "text/html"},
        path_contains="analytics/steps",
    )
    server.fail_next(500, {"oops": True})

    assert get(http, server, "/campaigns").json() == {"oops": True}  # 500 matches any path
    response = get(http, server, STEPS)
    assert response.status_code == 502
    assert response.headers["Content-Type"] == "text/html" and "Bad gateway" in response.text
    assert get(http, server, STEPS).status_code == 200


def test_fail_next_applies_before_auth(server: FakeInstantlyServer) -> None:
    server.fail_next(503)
    response = requests.get(server.url + STEPS, headers={"User-Agent": USER_AGENT}, timeout=5)
    assert response.status_code == 503


def test_truncate_next_cuts_the_real_json(
    server: FakeInstantlyServer, http: requests.Session
) -> None:
    workspace = server.add_workspace(KEY)
    cid = workspace.add_campaign("Q1")
    workspace.record(cid, D1, 0, 0, sent=1)
    full = get(http, server, STEPS).content
    server.truncate_next()

    response = get(http, server, STEPS)

    assert response.status_code == 200
    assert response.content == full[: len(full) // 2]
    with pytest.raises(ValueError):
        response.json()
    assert get(http, server, STEPS).content == full


def test_body_faults_wait_for_a_would_be_200(
    server: FakeInstantlyServer, http: requests.Session
) -> None:
    server.add_workspace(KEY)
    bad_row = {"step": "0", "variant": "0", "opened": 1}
    server.fail_next(500)
    server.malform_next([bad_row])

    assert get(http, server, STEPS).status_code == 500
    assert get(http, server, "/campaigns", limit=0).status_code == 400  # not consumed either
    response = get(http, server, STEPS)
    assert response.status_code == 200 and response.json() == [bad_row]
    assert get(http, server, STEPS).json() == []


def test_delay_next_triggers_a_read_timeout(
    server: FakeInstantlyServer, http: requests.Session
) -> None:
    server.add_workspace(KEY)
    server.delay_next(2.0)

    with pytest.raises(requests.ReadTimeout):
        http.get(server.url + STEPS, timeout=(2, 0.2))

    assert http.get(server.url + STEPS, timeout=(2, 0.5)).status_code == 200
    assert server.count(STEPS) == 2  # the timed-out call is logged already


def test_latency_is_added_to_every_call(
    server: FakeInstantlyServer, http: requests.Session
) -> None:
    server.add_workspace(KEY)
    server.latency = 0.3
    with pytest.raises(requests.ReadTimeout):
        http.get(server.url + "/campaigns", timeout=(2, 0.1))
    server.latency = 0.0
    assert get(http, server, "/campaigns").status_code == 200


def test_fault_arguments_are_checked(server: FakeInstantlyServer) -> None:
    with pytest.raises(ValueError):
        server.fail_next(42)
    with pytest.raises(ValueError):
        server.truncate_next(count=0)
    with pytest.raises(ValueError):
        server.delay_next(-1)


# --- call log and concurrency -------------------------------------------------------------


def test_call_log_records_a_key_hint_never_the_key(
    server: FakeInstantlyServer, http: requests.Session
) -> None:
    server.add_workspace(KEY)
    get(http, server, STEPS, start_date="2026-01-05", include_opportunities_count="true")
    requests.get(server.url + "/campaigns", timeout=5)  # default UA, no key

    first, second = server.calls
    assert (first.method, first.path, first.status) == ("GET", "/api/v2" + STEPS, 200)
    assert first.query == {"start_date": "2026-01-05", "include_opportunities_count": "true"}
    assert first.api_key_hint == "abcd" and first.user_agent == USER_AGENT
    assert KEY not in repr(server.calls)
    assert second.api_key_hint is None and second.status == 403
    assert second.user_agent is not None and second.user_agent.startswith("python-requests")

    assert server.count() == 2 and server.count("analytics") == 1
    server.reset_calls()
    assert server.calls == [] and server.count() == 0


def test_concurrent_requests_and_recording_are_consistent(server: FakeInstantlyServer) -> None:
    workspace = server.add_workspace(KEY)
    cid = workspace.add_campaign("Q1")
    errors: list[BaseException] = []

    def client() -> None:
        try:
            with requests.Session() as session:
                session.headers.update({"User-Agent": USER_AGENT, "Authorization": f"Bearer {KEY}"})
                for _ in range(10):
                    workspace.record(cid, D1, 0, 0, sent=1)
                    response = session.get(server.url + STEPS, timeout=5)
                    assert response.status_code == 200
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert server.count(STEPS) == 80
    with requests.Session() as session:
        session.headers.update({"User-Agent": USER_AGENT, "Authorization": f"Bearer {KEY}"})
        assert session.get(server.url + STEPS, timeout=5).json()[0]["sent"] == 80


# --- fixtures ----------------------------------------------------------------------------


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def test_fixtures_have_the_shapes_their_names_promise() -> None:
    basic = load("steps_basic.json")
    assert len(basic) == 7 and {"step": None, "variant": None}.items() <= basic[2].items()
    assert {(r["step"], r["variant"]) for r in basic if r["step"]} == {
        (str(s), str(v)) for s in range(3) for v in range(2)
    }
    assert all(set(OPPORTUNITY_METRICS) <= set(r) for r in load("steps_opportunities.json"))
    assert [r["variant"] for r in load("steps_30_variants.json")] == sorted(map(str, range(30)))
    assert any(
        set(r) - {"step", "variant", *BASE_METRICS} for r in load("steps_unknown_fields.json")
    )
    assert any("sent" not in r for r in load("steps_missing_field.json"))
    assert any(r["sent"] == "many" for r in load("steps_wrong_type.json"))

    page1, page2 = load("campaigns_page1.json"), load("campaigns_page2.json")
    assert page1["next_starting_after"] == page1["items"][-1]["id"]
    assert "next_starting_after" not in page2
    detail = load("campaign_detail.json")
    assert detail == page1["items"][0]
    variants = [v for s in detail["sequences"][0]["steps"] for v in s["variants"]]
    assert len(variants) == 6 and {v.get("v_disabled") for v in variants} == {None, False, True}
