"""Subcommands that run the service or administer the store."""

from __future__ import annotations

import argparse
import getpass
import signal
import sys
import threading

from sheets_sync.cli.process import configure_logging, make_runtime, settle_garbage_collector
from sheets_sync.config import Settings
from sheets_sync.errors import InvalidInput


def serve_command(args: argparse.Namespace, settings: Settings) -> int:
    # Imported here: only ``serve`` needs Flask, and the other commands start without it.
    from sheets_sync.cli.serve import serve

    return serve(args, settings)


def _cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from sheets_sync.jobs.scheduler import enqueue_due
    from sheets_sync.jobs.worker import Worker
    from sheets_sync.store.db import commit_without_waiting_for_flush

    configure_logging()
    rt = make_runtime(settings, migrate=args.migrate)
    commit_without_waiting_for_flush(rt.engine)
    worker = Worker(
        rt,
        concurrency=args.concurrency,
        idle_poll=args.poll,
        lease_seconds=args.lease_seconds,
        before_claim=lambda: enqueue_due(rt),
    )
    settle_garbage_collector()
    if args.once:
        done = worker.drain()
        outcomes = ", ".join(f"{n} {status}" for status, n in sorted(worker.outcomes.items()))
        print(f"Ran {done} sync(s)" + (f": {outcomes}." if outcomes else "."))
        return 0
    stopped = threading.Event()

    def _terminate(*_: object) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    worker.start()
    print(f"worker {worker.worker_id} started with {worker.concurrency} thread(s)")
    stopped.wait()
    print("stopping: finishing in-flight syncs")
    worker.stop(timeout=args.grace)
    return 0


def _cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from sheets_sync.store.migrate import upgrade

    upgrade(settings.resolved_database_url)
    print("Database is up to date.")
    return 0


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat: ") != password:
            raise InvalidInput("The passwords do not match.")
    return password


def _cmd_users_create(args: argparse.Namespace, settings: Settings) -> int:
    from sheets_sync import store

    rt = make_runtime(settings, migrate=True)
    password = _read_password(args)
    with rt.session_factory() as s, s.begin():
        user = store.create_user(s, args.email, password)
        email = user.email
    print(f"Created user {email}.")
    return 0


def _cmd_users_set_password(args: argparse.Namespace, settings: Settings) -> int:
    from sheets_sync import store
    from sheets_sync.store.db import take_write_lock

    rt = make_runtime(settings, migrate=True)
    password = _read_password(args)
    with rt.session_factory() as s, s.begin():
        take_write_lock(s)  # looks the user up, then changes it
        user = store.get_user_by_email(s, args.email)
        if user is None:
            raise InvalidInput(f"There is no user {args.email!r}; create it with 'users create'.")
        store.set_password(s, user, password)
        email = user.email
    print(f"Password changed for {email}; every session of the account is signed out.")
    return 0


def _cmd_api_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    from sheets_sync import store
    from sheets_sync.store.db import take_write_lock

    rt = make_runtime(settings, migrate=True)
    with rt.session_factory() as s, s.begin():
        take_write_lock(s)  # looks the user up, then adds the key
        user = store.get_user_by_email(s, args.email)
        if user is None:
            raise InvalidInput(f"There is no user {args.email!r}; create it with 'users create'.")
        _key, plaintext = store.create_api_key(s, user, args.name)
    print("New API key (shown once; store it now):")
    print(plaintext)
    return 0


def _cmd_keys_rotate(args: argparse.Namespace, settings: Settings) -> int:
    from sheets_sync.store.secrets import rotate

    rt = make_runtime(settings, migrate=True)
    with rt.session_factory() as s, s.begin():
        count = rotate(s, rt.fernet)
    print(f"Re-encrypted {count} stored Instantly key(s) with the first encryption key.")
    return 0


def _cmd_connections_move(args: argparse.Namespace, settings: Settings) -> int:
    from sheets_sync import store

    rt = make_runtime(settings, migrate=True)
    target = args.to.strip()
    pool = rt.service_account_emails
    if target not in pool:
        listed = ", ".join(pool) if pool else "none (no key file is configured)"
        raise InvalidInput(
            f"{target!r} is not one of the service accounts sheets-sync has a key for "
            f"(SHEETS_SYNC_SERVICE_ACCOUNT_FILES): {listed}."
        )
    if not args.connection_id.isdigit():
        raise InvalidInput("CONNECTION_ID is the number shown on the connection's page.")
    try:
        with rt.session_factory() as s, s.begin():
            connection, previous = store.move_connection(s, int(args.connection_id), target)
            name, url = connection.name, connection.spreadsheet_url
    except store.NotFound:
        raise InvalidInput(f"There is no connection {args.connection_id}.") from None
    was = previous or rt.service_account_email or "no account"
    print(f"Connection {args.connection_id} ({name}) moved from {was} to {target}.")
    print(
        f"The sheet must be shared with {target} as Editor before its next refresh, or "
        f"that refresh fails: {url}"
    )
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="web app and an embedded worker (SQLite by default)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=serve_command)

    p = sub.add_parser("worker", help="run scheduled and queued syncs")
    p.add_argument("--once", action="store_true", help="run what is due now, then exit")
    p.add_argument("--concurrency", type=int, default=8, help="syncs at once (threads)")
    p.add_argument(
        "--poll",
        type=float,
        default=5.0,
        help="seconds between queue checks (PostgreSQL also wakes workers when a run is queued)",
    )
    p.add_argument("--grace", type=float, default=60.0, help="seconds to finish on SIGTERM")
    p.add_argument(
        "--lease-seconds",
        type=float,
        default=None,
        help="lease of a claimed run (default SHEETS_SYNC_LEASE_SECONDS, 120)",
    )
    p.add_argument(
        "--migrate", action="store_true", help="apply database migrations before starting"
    )
    p.set_defaults(func=_cmd_worker)

    db = sub.add_parser("db", help="database maintenance").add_subparsers(
        dest="db_command", required=True
    )
    db.add_parser("upgrade", help="apply migrations").set_defaults(func=_cmd_db_upgrade)

    users = sub.add_parser("users", help="manage users").add_subparsers(
        dest="users_command", required=True
    )
    p = users.add_parser("create", help="create a user")
    p.add_argument("email")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.set_defaults(func=_cmd_users_create)
    p = users.add_parser(
        "set-password", help="set a user's password (ends every session of the account)"
    )
    p.add_argument("email")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.set_defaults(func=_cmd_users_set_password)

    keys = sub.add_parser("api-keys", help="manage JSON API keys").add_subparsers(
        dest="api_keys_command", required=True
    )
    p = keys.add_parser("create", help="create an API key; prints it as the last line")
    p.add_argument("email")
    p.add_argument("--name", default="cli")
    p.set_defaults(func=_cmd_api_keys_create)

    conns = sub.add_parser("connections", help="administer connections").add_subparsers(
        dest="connections_command", required=True
    )
    p = conns.add_parser(
        "move", help="pin a connection to another service account of the pool"
    )
    p.add_argument("connection_id", metavar="ID")
    p.add_argument("--to", required=True, metavar="EMAIL", help="the account's client_email")
    p.set_defaults(func=_cmd_connections_move)

    enc = sub.add_parser("keys", help="encryption keys").add_subparsers(
        dest="keys_command", required=True
    )
    enc.add_parser(
        "rotate", help="re-encrypt stored Instantly keys with the newest key"
    ).set_defaults(func=_cmd_keys_rotate)
