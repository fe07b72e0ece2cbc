"""Only Google gets in: every add-on request's bearer token is checked before any work,
and the person is who the verified userIdToken says. Refused requests change nothing."""

from __future__ import annotations

import json

import pytest

from sheets_sync.store.models import GoogleIdentity, SyncRun, User
from tests.addon_helpers import ADDON_ACCOUNT, CLIENT_ID, PUBLIC_URL

HOMEPAGE = f"{PUBLIC_URL}/addon/homepage"


def _counts(runtime) -> tuple[int, int, int]:
    with runtime.session_factory() as s:
        return (s.query(User).count(), s.query(GoogleIdentity).count(), s.query(SyncRun).count())


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda sg: None, id="missing"),
        pytest.param(lambda sg: "not-a-token", id="garbage"),
        pytest.param(lambda sg: sg.system_token(HOMEPAGE, ADDON_ACCOUNT, expires_in=-120),
                     id="expired"),
        pytest.param(lambda sg: sg.system_token(HOMEPAGE, ADDON_ACCOUNT, key=sg.other_key),
                     id="signed-by-another-key"),
        pytest.param(lambda sg: sg.system_token(f"{PUBLIC_URL}/addon/connect/save",
                                                ADDON_ACCOUNT), id="audience-another-endpoint"),
        pytest.param(lambda sg: sg.system_token("https://evil.example/addon/homepage",
                                                ADDON_ACCOUNT), id="audience-another-host"),
        pytest.param(lambda sg: sg.system_token(
            HOMEPAGE, "service-999@gcp-sa-gsuiteaddons.iam.gserviceaccount.com"),
            id="another-service-account"),
        pytest.param(lambda sg: sg.system_token(HOMEPAGE, ADDON_ACCOUNT,
                                                extra={"email_verified": False}),
                     id="email-not-verified"),
        pytest.param(lambda sg: sg.system_token(HOMEPAGE, ADDON_ACCOUNT,
                                                extra={"iss": "https://evil.example"}),
                     id="not-issued-by-google"),
        # A person's own token is not the deployment's.
        pytest.param(lambda sg: sg.user_token(HOMEPAGE, "sub-ann", "ann@example.com"),
                     id="user-token-as-system-token"),
    ],
)
def test_a_request_without_googles_token_for_this_url_is_refused(
    forge, sidebar, google_signer, runtime, spreadsheet_id
):
    bar = sidebar(spreadsheet_id, file_scope=True)
    before = _counts(runtime)
    token = forge(google_signer)
    if token is None:
        response = bar.client.post("/addon/homepage", json=bar.event())
    else:
        response = bar.post(HOMEPAGE, bar.event(), bearer=token)
    assert response.status_code == 401
    body = response.get_data(as_text=True)
    assert "Traceback" not in body and "ann@example.com" not in body
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert _counts(runtime) == before


@pytest.mark.parametrize("which", ["forged", "expired", "wrong-audience", "unverified"])
def test_a_forged_person_is_refused_too(which, sidebar, google_signer, runtime, spreadsheet_id):
    bar = sidebar(spreadsheet_id, file_scope=True)
    user_token = {
        "forged": lambda: google_signer.user_token(CLIENT_ID, "sub-ann", "ann@example.com",
                                                   key=google_signer.other_key),
        "expired": lambda: google_signer.user_token(CLIENT_ID, "sub-ann", "ann@example.com",
                                                    expires_in=-120),
        "wrong-audience": lambda: google_signer.user_token("another-client", "sub-ann",
                                                           "ann@example.com"),
        "unverified": lambda: google_signer.token({
            "aud": CLIENT_ID, "sub": "sub-ann", "email": "ann@example.com",
            "email_verified": False}),
    }[which]()
    before = _counts(runtime)
    response = bar.post(HOMEPAGE, bar.event(user_token=user_token))
    assert response.status_code == 401
    assert _counts(runtime) == before


def test_the_add_on_is_off_unless_its_service_account_is_set(
    client, google_signer, spreadsheet_id
):
    # ``client`` is the plain app: SHEETS_SYNC_ADDON_SERVICE_ACCOUNT unset.
    token = google_signer.system_token(HOMEPAGE, ADDON_ACCOUNT)
    response = client.post("/addon/homepage", json={},
                           headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 404
    assert client.get("/addon/homepage").status_code == 404
    assert client.post("/addon/connections/refresh").status_code == 404


def test_certs_are_fetched_once_not_per_request(sidebar, google_signer, spreadsheet_id):
    bar = sidebar(spreadsheet_id, file_scope=True)
    bar.open()
    fetched = google_signer.cert_fetches
    for _ in range(5):
        bar.open()
    assert google_signer.cert_fetches == fetched


def test_a_first_time_google_user_gets_an_account_bound_to_sub_not_email(
    sidebar, auth, runtime, spreadsheet_id
):
    # A web account with the same e-mail exists: it is not taken over by matching.
    auth.signup("ann@example.com")
    bar = sidebar(spreadsheet_id, file_scope=True)
    bar.open()
    with runtime.session_factory() as s:
        identity = s.query(GoogleIdentity).one()
        web_user = s.query(User).filter(User.email == "ann@example.com").one()
        assert identity.sub == "sub-ann" and identity.email == "ann@example.com"
        assert identity.user_id != web_user.id
        assert s.query(User).count() == 2
    # The same person again: the same account, however often.
    bar.open()
    with runtime.session_factory() as s:
        assert s.query(User).count() == 2


def test_our_own_failure_is_a_card_not_a_stack_trace(sidebar, spreadsheet_id, monkeypatch,
                                                      caplog):
    import web.addon.routes as routes

    def broken(*_args, **_kwargs):
        raise RuntimeError("database exploded at /secret/path")

    monkeypatch.setattr(routes, "connections_for_spreadsheet", broken)
    bar = sidebar(spreadsheet_id, file_scope=True)
    bar.open()
    assert "Something went wrong on our side" in bar.text
    assert "exploded" not in json.dumps(bar.card) and "Traceback" not in json.dumps(bar.card)
    assert "database exploded" in caplog.text  # for whoever runs it


def test_unreachable_certs_refuse_everything_and_say_it_is_us(
    sidebar, addon_app, spreadsheet_id, caplog
):
    verifier = addon_app.extensions["addon_tokens"]
    verifier.request.forget()
    verifier.certs_url = "http://127.0.0.1:9/oauth2/v1/certs"  # nothing listens there
    bar = sidebar(spreadsheet_id, file_scope=True)
    response = bar.post(HOMEPAGE, bar.event())
    assert response.status_code == 503
    assert "cannot fetch Google's certs" in caplog.text
