"""The Flask app: pages for people, a JSON API for programs; both delegate to the engine.

The web layer only authorizes and translates: every query for a user's object goes
through ``sheets_sync.store`` (whose ``get_connection`` is the ownership check), and
every sync goes through ``sheets_sync.sync``.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify

from sheets_sync.config import Settings, load_settings
from sheets_sync.jobs.runtime import Runtime, build_runtime
from sheets_sync.store.secrets import load_or_create_secret_key

from .extensions import csrf, login_manager
from .security import install_security_headers


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app. ``test_config`` may carry ``SETTINGS`` and/or ``RUNTIME`` objects."""
    test_config = dict(test_config or {})
    app = Flask(__name__, instance_relative_config=False)
    settings: Settings = test_config.pop("SETTINGS", None) or load_settings()
    runtime: Runtime = test_config.pop("RUNTIME", None) or build_runtime(settings)
    app.config.from_mapping(
        SECRET_KEY=load_or_create_secret_key(settings),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=settings.secure_cookies,
        WTF_CSRF_TIME_LIMIT=None,
        MAX_CONTENT_LENGTH=256 * 1024,
    )
    app.config.update(test_config)
    app.extensions["sheets_sync"] = runtime

    login_manager.init_app(app)
    csrf.init_app(app)
    install_security_headers(app)

    from . import api, auth, pages

    app.register_blueprint(auth.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    # The JSON API authenticates every request with a bearer key and sets no cookie,
    # so cross-site form posts cannot ride on it: CSRF tokens do not apply there.
    csrf.exempt(api.bp)
    from . import cron  # bearer token or App Engine's cron header, no cookie: no CSRF

    app.register_blueprint(cron.bp)
    csrf.exempt(cron.bp)
    from .addon import linking

    if settings.addon_service_account:
        # Off unless configured: then every /addon/ URL is a plain 404, whatever the method.
        from .addon import connect as addon_connect
        from .addon import routes as addon

        # Google's ID token on every request, no cookie: CSRF tokens do not apply there.
        for blueprint in (addon.bp, addon_connect.bp):
            app.register_blueprint(blueprint)
            csrf.exempt(blueprint)
    app.register_blueprint(linking.bp)

    @app.get("/healthz")
    def healthz() -> Any:
        with runtime.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        return jsonify({"status": "ok"})

    return app
