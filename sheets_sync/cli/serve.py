"""The command that starts the server: the one place sheets_sync touches Flask."""

from __future__ import annotations

import argparse
import signal
import threading

from sheets_sync.cli.process import configure_logging, make_runtime, settle_garbage_collector
from sheets_sync.config import Settings


def serve(args: argparse.Namespace, settings: Settings) -> int:
    """``sheets-sync serve``: the web app and an embedded worker in one process."""
    from werkzeug.serving import make_server

    from sheets_sync.jobs.scheduler import enqueue_due
    from sheets_sync.jobs.worker import EmbeddedWorker
    from web import create_app

    configure_logging()
    rt = make_runtime(settings, migrate=True)
    app = create_app({"SETTINGS": settings, "RUNTIME": rt})
    # Scheduled refreshes too: the embedded worker queues due connections as it polls.
    worker = EmbeddedWorker(rt, before_claim=lambda: enqueue_due(rt))
    server = make_server(args.host, args.port, app, threaded=True)
    settle_garbage_collector()
    worker.start()
    print(f"sheets-sync is running on http://{args.host}:{server.port}/ (Ctrl+C to stop)")
    if rt.service_account_email is None:
        print("Note: GOOGLE_APPLICATION_CREDENTIALS is not set; syncs will say how to set it.")
    stop = threading.Event()

    def _terminate(*_: object) -> None:
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _terminate)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        worker.stop()
    return 0
