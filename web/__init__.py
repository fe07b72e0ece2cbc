"""The Flask app: pages for people, a JSON API for programs; both delegate to the engine.

The web layer only authorizes and translates: every query for a user's object goes
through ``sheets_sync.store`` (whose ``get_connection`` is the ownership check), and
every sync goes through ``sheets_sync.sync``.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify
from werkzeug.middleware.proxy_fix import ProxyFix

from sheets_sync.config import Settings, load_settings
from sheets_sync.jobs.runtime import Runtime, build_runtime
from sheets_sync.store.secrets import load_or_create_secret_key

from .errors import install_error_pages
from .extensions import csrf, login_manager
from .security import install_security_headers


def configure_logging() -> None:
    """INFO lines (``run finished …``) on stderr, unless the host (a test runner, a
    custom gunicorn logging config) already set up the root logger."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )
    # Alembic narrates every plugin it loads on each start; only its problems matter here.
    logging.getLogger("alembic").setLevel(logging.WARNING)


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app. ``test_config`` may carry ``SETTINGS`` and/or ``RUNTIME`` objects."""
    test_config = dict(test_config or {})
    configure_logging()
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

    if settings.trusted_proxies:
        # Only then is X-Forwarded-For believed, and only the hops the proxies appended:
        # the client address the sign-in throttle counts cannot be chosen by the client.
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)  # type: ignore[method-assign]

    login_manager.init_app(app)
    csrf.init_app(app)
    install_security_headers(app)
    install_error_pages(app)

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
