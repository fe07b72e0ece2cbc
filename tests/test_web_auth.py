"""Sign up, sign in, sign out; session hygiene (throttling: test_sign_in_throttle.py)."""

from __future__ import annotations

from tests.plugin_web import csrf_token

PASSWORD = "correct horse battery"


def session_cookie(client) -> str | None:
    cookie = client.get_cookie("session")
    return cookie.value if cookie is not None else None


def test_signup_signs_in_and_shows_dashboard(client, auth):
    response = auth.signup("Ann@Example.com")
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    page = client.get("/")
    assert page.status_code == 200
    assert "ann@example.com" in page.get_data(as_text=True)
    assert "Your connections" in page.get_data(as_text=True)


def test_signup_requires_ten_character_password(client):
    page = client.get("/signup")
    response = client.post(
        "/signup",
        data={"email": "bob@example.com", "password": "short", "confirm": "short",
              "csrf_token": csrf_token(page.get_data(as_text=True))},
    )
    assert response.status_code == 400
    assert "Use at least 10 characters." in response.get_data(as_text=True)
    assert client.get("/api-keys").status_code == 302  # not signed in


def test_signup_rejects_mismatched_confirmation(client):
    page = client.get("/signup")
    response = client.post(
        "/signup",
        data={"email": "bob@example.com", "password": PASSWORD, "confirm": PASSWORD + "x",
              "csrf_token": csrf_token(page.get_data(as_text=True))},
    )
    assert response.status_code == 400
    assert "The passwords do not match." in response.get_data(as_text=True)


def test_signup_twice_with_same_email_is_refused(client, auth):
    auth.signup()
    auth.logout()
    response = auth.signup()
    assert response.status_code == 400
    assert "already exists" in response.get_data(as_text=True)


def test_password_is_never_echoed(client):
    page = client.get("/signup")
    response = client.post(
        "/signup",
        data={"email": "not-an-email", "password": "secret-password-123",
              "confirm": "secret-password-123",
              "csrf_token": csrf_token(page.get_data(as_text=True))},
    )
    assert response.status_code == 400
    assert "secret-password-123" not in response.get_data(as_text=True)


def test_login_and_logout(client, auth):
    auth.signup()
    auth.logout()
    assert client.get("/api-keys").status_code == 302

    bad = auth.login(password="wrong password!!")
    assert bad.status_code == 401
    assert "do not match" in bad.get_data(as_text=True)

    good = auth.login()
    assert good.status_code == 302
    assert "Your connections" in client.get("/").get_data(as_text=True)

    out = auth.logout()
    assert out.status_code == 302
    assert out.headers["Location"] == "/login"
    # Signed out, / is the landing page again and every other page asks to sign in.
    assert "Sign up" in client.get("/").get_data(as_text=True)
    assert "Your connections" not in client.get("/").get_data(as_text=True)
    redirect = client.get("/api-keys")
    assert redirect.status_code == 302
    assert redirect.headers["Location"].startswith("/login")


def test_login_follows_next_but_never_offsite(client, auth):
    auth.signup()
    auth.logout()
    page = client.get("/login")
    token = csrf_token(page.get_data(as_text=True))
    data = {"email": "ann@example.com", "password": PASSWORD, "csrf_token": token}
    response = client.post("/login?next=/api-keys", data=data)
    assert response.headers["Location"] == "/api-keys"
    auth.logout()
    for evil in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        page = client.get("/login")
        data["csrf_token"] = csrf_token(page.get_data(as_text=True))
        response = client.post("/login", query_string={"next": evil}, data=data)
        assert response.status_code == 302
        assert response.headers["Location"] == "/", evil
        auth.logout()


def test_sign_in_starts_a_new_session(app, client, auth):
    auth.signup()
    auth.logout()
    page = client.get("/login")
    before_token = csrf_token(page.get_data(as_text=True))
    before_cookie = session_cookie(client)
    assert before_cookie

    assert auth.login().status_code == 302
    after_cookie = session_cookie(client)
    assert after_cookie and after_cookie != before_cookie
    after_token = csrf_token(client.get("/").get_data(as_text=True))
    assert after_token != before_token

    # Someone holding the pre-sign-in cookie (session fixation) is not signed in.
    attacker = app.test_client()
    attacker.set_cookie("session", before_cookie)
    response = attacker.get("/api-keys")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


