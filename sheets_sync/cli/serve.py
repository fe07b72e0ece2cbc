"""The command that starts the server: the one place sheets_sync touches Flask.

``sheets-sync serve`` runs the app on gunicorn (the production WSGI server the deploys
already use), with one worker process and a pool of threads, and the embedded sync
worker started inside that process once the app is loaded there. One process because
the embedded store is SQLite and a Refresh click wakes the sync worker in-process; the
threads serve the page's status polls while a sync runs. Ctrl+C (SIGINT) and SIGTERM
stop gunicorn, which lets in-flight requests finish and then stops the sync worker.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from sheets_sync.cli.process import configure_logging, settle_garbage_collector
from sheets_sync.config import Settings

if TYPE_CHECKING:
    from flask import Flask

    from sheets_sync.jobs.worker import EmbeddedWorker

# Web threads of the one process: enough for a small team's pages and polls.
THREADS = 8
# Seconds in-flight requests (and the embedded worker's syncs) get on shutdown.
GRACEFUL_SECONDS = 30


def gunicorn_options(host: str, port: int) -> dict[str, Any]:
    return {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": 1,
        "worker_class": "gthread",
        "threads": THREADS,
        "graceful_timeout": GRACEFUL_SECONDS,
        # A sync runs on the embedded worker's threads, never on a request thread, so a
        # request taking this long means something is stuck.
        "timeout": 120,
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "sheets-sync",
    }


def serve(args: argparse.Namespace, settings: Settings) -> int:
    """``sheets-sync serve``: the web app and an embedded worker in one gunicorn process."""
    from gunicorn.app.base import BaseApplication

    from sheets_sync.store.migrate import upgrade

    configure_logging()
    # In the parent, before the worker process exists: it then opens a migrated store.
    upgrade(settings.resolved_database_url)
    state: dict[str, Any] = {}

    def load_app() -> Flask:
        from sheets_sync.cli.process import make_runtime
        from sheets_sync.jobs.scheduler import enqueue_due
        from sheets_sync.jobs.worker import EmbeddedWorker
        from web import create_app

        rt = make_runtime(settings)
        app = create_app({"SETTINGS": settings, "RUNTIME": rt})
        # Scheduled refreshes too: the embedded worker queues due connections as it polls.
        state["worker"] = EmbeddedWorker(rt, before_claim=lambda: enqueue_due(rt))
        state["runtime"] = rt
        return app

    def post_worker_init(_worker: object) -> None:
        settle_garbage_collector()
        state["worker"].start()

    def worker_exit(_arbiter: object, _worker: object) -> None:
        sync_worker: EmbeddedWorker | None = state.get("worker")
        if sync_worker is not None:
            sync_worker.stop(timeout=GRACEFUL_SECONDS)

    def when_ready(server: Any) -> None:
        for listener in server.LISTENERS:
            address = listener.sock.getsockname()
            print(
                f"sheets-sync is running on http://{args.host}:{address[1]}/ (Ctrl+C to stop)",
                flush=True,
            )
        if settings.google_application_credentials is None:
            print(
                "Note: GOOGLE_APPLICATION_CREDENTIALS is not set; syncs will say how to set it.",
                flush=True,
            )

    hooks = {
        "post_worker_init": post_worker_init,
        "worker_exit": worker_exit,
        "when_ready": when_ready,
    }

    class Server(BaseApplication):  # gunicorn ships no types: BaseApplication is Any
        def load_config(self) -> None:
            options = {**gunicorn_options(args.host, args.port), **hooks}
            if "control_socket_disable" in self.cfg.settings:
                # gunicorn >= 25.1 would open a control socket shared by every instance
                # of the user ($HOME/.gunicorn/gunicorn.ctl); serve has no use for it.
                options["control_socket_disable"] = True
            for name, value in options.items():
                self.cfg.set(name, value)

        def load(self) -> Flask:
            return load_app()

    Server().run()
    return 0
