"""Sign-in and sign-up throttling through the database: per address over all accounts,
per account and address, a per-account slowdown that never locks the owner out, and
X-Forwarded-For believed only through the configured number of trusted proxies."""

from __future__ import annotations

import time

import pytest

from sheets_sync import store
from tests.plugin_web import AuthActions, csrf_token
from web import create_app

PASSWORD = "correct horse battery"
WRONG = "wrong password!!"


def attempt(app, email: str, password: str, address: str = "127.0.0.1", **headers: str):
    """One sign-in from a fresh browser at ``address``."""
    client = app.test_client()
    env = {"REMOTE_ADDR": address}
    page = client.get("/login", environ_base=env)
    return client.post(
        "/login",
        data={"email": email, "password": password,
              "csrf_token": csrf_token(page.get_data(as_text=True))},
        environ_base=env,
        headers=headers,
    )


def make_users(runtime, *emails: str) -> None:
    with runtime.session_factory() as s, s.begin():
        for email in emails:
            store.create_user(s, email, PASSWORD)


@pytest.fixture
def clock(app):
    now = [time.time()]
    app.extensions["throttle"].clock = lambda: now[0]
    return now


def test_five_failures_then_even_the_right_password_waits_with_retry_after(app, runtime, clock):
    make_users(runtime, "ann@example.com", "bob@example.com")
    for _ in range(5):
        assert attempt(app, "ann@example.com", WRONG).status_code == 401
    blocked = attempt(app, "ann@example.com", PASSWORD)
    assert blocked.status_code == 429
    assert "Too many sign-in attempts; try again in 15 minutes" in blocked.get_data(as_text=True)
    assert int(blocked.headers["Retry-After"]) == 900
    # Another account from the same address is not affected.
    assert attempt(app, "bob@example.com", PASSWORD).status_code == 302
    # The owner at another address is not locked out by the guesses from this one.
    assert attempt(app, "ann@example.com", PASSWORD, "10.0.0.9").status_code == 302
    # Once the window has passed, this address may try again.
    clock[0] += 901
    assert attempt(app, "ann@example.com", PASSWORD).status_code == 302


def test_a_right_password_is_not_counted_as_a_failure(app, runtime, clock):
    make_users(runtime, "ann@example.com")
    for _ in range(10):
        assert attempt(app, "ann@example.com", PASSWORD).status_code == 302
    for _ in range(5):
        assert attempt(app, "ann@example.com", WRONG).status_code == 401
    assert attempt(app, "ann@example.com", PASSWORD).status_code == 429


def test_spraying_many_accounts_from_one_address_is_limited(app, runtime, clock):
    make_users(runtime, "ann@example.com")
    for n in range(20):
        assert attempt(app, f"user{n}@example.com", WRONG, "203.0.113.7").status_code == 401
    blocked = attempt(app, "ann@example.com", PASSWORD, "203.0.113.7")
    assert blocked.status_code == 429
    assert "Retry-After" in blocked.headers
    assert attempt(app, "ann@example.com", PASSWORD, "198.51.100.1").status_code == 302


def test_an_account_under_attack_slows_guessing_but_lets_the_owner_in(app, runtime, clock):
    make_users(runtime, "ann@example.com")
    for n in range(20):
        assert attempt(app, "ann@example.com", WRONG, f"203.0.113.{n}").status_code == 401
    # A new attacker address now gets one wrong try at this account, not five.
    assert attempt(app, "ann@example.com", WRONG, "198.51.100.50").status_code == 401
    assert attempt(app, "ann@example.com", WRONG, "198.51.100.50").status_code == 429
    # The owner, from an address that has not failed, signs in with the right password.
    assert attempt(app, "ann@example.com", PASSWORD, "192.0.2.10").status_code == 302


def test_sign_ups_are_limited_per_address(app, clock):
    for n in range(10):
        client = app.test_client()
        assert AuthActions(client).signup(f"new{n}@example.com").status_code == 302
    response = AuthActions(app.test_client()).signup("one-more@example.com")
    assert response.status_code == 429
    assert "Too many sign-ups" in response.get_data(as_text=True)
    assert int(response.headers["Retry-After"]) > 3000
    with app.extensions["sheets_sync"].session_factory() as s:
        assert store.get_user_by_email(s, "one-more@example.com") is None
    clock[0] += 3601
    assert AuthActions(app.test_client()).signup("one-more@example.com").status_code == 302


def test_x_forwarded_for_is_ignored_without_trusted_proxies(app, runtime, clock):
    make_users(runtime, "ann@example.com")
    for n in range(5):
        response = attempt(app, "ann@example.com", WRONG, X_Forwarded_For=f"10.1.1.{n}")
        assert response.status_code == 401
    # A forged header does not make a new client: the peer address is still throttled.
    response = attempt(app, "ann@example.com", PASSWORD, X_Forwarded_For="10.9.9.9")
    assert response.status_code == 429


def test_trusted_proxy_hops_give_the_client_address(settings, runtime):
    behind_proxy = settings.model_copy(update={"trusted_proxies": 1})
    app = create_app({"TESTING": True, "SETTINGS": behind_proxy, "RUNTIME": runtime})
    make_users(runtime, "ann@example.com")
    # The proxy appends the address it saw; whatever the client put before it is not used.
    for _ in range(5):
        response = attempt(app, "ann@example.com", WRONG, "10.0.0.2",
                           X_Forwarded_For="1.1.1.1, 203.0.113.5")
        assert response.status_code == 401
    blocked = attempt(app, "ann@example.com", PASSWORD, "10.0.0.2",
                      X_Forwarded_For="9.9.9.9, 203.0.113.5")
    assert blocked.status_code == 429
    # Another client behind the same proxy is a different address.
    assert attempt(app, "ann@example.com", PASSWORD, "10.0.0.2",
                   X_Forwarded_For="198.51.100.8").status_code == 302


def test_an_odd_forwarded_address_is_still_counted(settings, runtime):
    behind_proxy = settings.model_copy(update={"trusted_proxies": 1})
    app = create_app({"TESTING": True, "SETTINGS": behind_proxy, "RUNTIME": runtime})
    make_users(runtime, "ann@example.com")
    odd = "x" * 200
    for _ in range(5):
        assert attempt(app, "ann@example.com", WRONG, X_Forwarded_For=odd).status_code == 401
    assert attempt(app, "ann@example.com", PASSWORD, X_Forwarded_For=odd).status_code == 429
