"""The feature switches through the JSON API (the API reuses connection_rules models)."""

from __future__ import annotations

from sheets_sync.connection_rules import FEATURE_DEFAULTS, features_of, with_features
from sheets_sync.store.db import session_scope
from sheets_sync.store.models import Connection
from tests.test_api import ann, make_user, new_connection, settings  # noqa: F401


def test_switches_default_on_and_patch_keeps_the_rest_of_options(client, ann, runtime):  # noqa: F811
    created = new_connection(client, ann)
    assert created["features"] == FEATURE_DEFAULTS
    cid = created["id"]
    with session_scope(runtime.session_factory) as s:
        s.get(Connection, cid).options = {"campaign_cache": {"x": 1}}
    response = client.patch(f"/api/v1/connections/{cid}",
                            json={"features": {"notes": False, "min_sample": 250}},
                            headers=ann.headers)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["features"] == dict(FEATURE_DEFAULTS, notes=False,
                                                   min_sample=250)
    with session_scope(runtime.session_factory) as s:
        options = s.get(Connection, cid).options
    assert options["campaign_cache"] == {"x": 1}
    bad = client.patch(f"/api/v1/connections/{cid}", json={"features": {"min_sample": 1}},
                       headers=ann.headers)
    assert bad.status_code == 422
    unknown = client.patch(f"/api/v1/connections/{cid}", json={"features": {"nope": True}},
                           headers=ann.headers)
    assert unknown.status_code == 422


def test_create_with_switches(client, ann):  # noqa: F811
    created = new_connection(client, ann, features={"history": False, "chart": False})
    assert created["features"]["history"] is False
    assert created["features"]["chart"] is False
    assert created["features"]["notes"] is True


def test_features_of_ignores_junk():
    assert features_of({"features": {"notes": "yes", "min_sample": True}}) == FEATURE_DEFAULTS
    merged = with_features({"a": 1, "features": {"chart": False}}, {"notes": False})
    assert merged == {"a": 1, "features": {"chart": False, "notes": False}}


def test_form_shows_and_saves_the_switches(client, auth, runtime):
    import re

    from tests.plugin_web import csrf_token
    from tests.web_helpers import connection_form, create_connection, only_connection

    auth.signup()
    page = client.get("/connections/new").get_data(as_text=True)
    assert re.search(r'<input[^>]*checked[^>]*name="feature_notes"', page) or re.search(
        r'<input[^>]*name="feature_notes"[^>]*checked', page)
    create_connection(client, feature_subjects="y", feature_winner_calls="y",
                      feature_notes="y", feature_chart="y", feature_subsequences="y",
                      feature_min_sample="150",
                      feature_history_days="30")
    connection = only_connection(runtime)
    assert features_of(connection.options) == dict(
        FEATURE_DEFAULTS, history=False, min_sample=150, history_days=30)
    page = client.get(f"/connections/{connection.id}/edit").get_data(as_text=True)
    assert 'value="150"' in page
    data = connection_form(feature_history="y", feature_min_sample="100")
    data["csrf_token"] = csrf_token(page)
    response = client.post(f"/connections/{connection.id}/edit", data=data)
    assert response.status_code == 302, response.get_data(as_text=True)
    after = features_of(only_connection(runtime).options)
    assert after["history"] is True and after["notes"] is False and after["min_sample"] == 100
    bad = dict(data, feature_min_sample="3")
    response = client.post(f"/connections/{connection.id}/edit", data=bad)
    assert response.status_code == 400
