"""Everything a process needs to run syncs, built once from the settings.

The web app, the CLI and the workers all build one ``Runtime``; tests build one with
their own clock and client factories. Nothing here imports Flask.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
from cryptography.fernet import MultiFernet
from requests.adapters import HTTPAdapter
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from sheets_sync.config import Settings
from sheets_sync.errors import GoogleCredentialsMissing
from sheets_sync.jobs.accounts import Pool, PoolCache, ServiceAccount, removed_account_error
from sheets_sync.jobs.quota import (
    QuotaBudget,
    SheetsLimits,
    attach_to_sheets_client,
    instantly_adapter,
    sheets_adapter,
)
from sheets_sync.pipeline.http_environment import keep_no_cookies
from sheets_sync.pipeline.instantly import InstantlyClient
from sheets_sync.pipeline.retry import RetryPolicy
from sheets_sync.pipeline.sheets_writer import (
    CREDENTIALS_MISSING,
    SheetsClient,
    load_credentials,
    make_sheets_client,
)
from sheets_sync.pipeline.tcp_keepalive import KeepAliveAdapter
from sheets_sync.store.db import make_autocommit_session_factory, make_engine, make_session_factory
from sheets_sync.store.models import Connection
from sheets_sync.store.pinning import least_loaded_account
from sheets_sync.store.secrets import load_or_create_keys


def _utcnow() -> datetime:
    return datetime.now(UTC)


# Connections the per-thread Instantly session keeps alive per host: room for the calls
# of one refresh should they be in flight together (a web request's thread, or fetches
# made side by side), not only one at a time.
INSTANTLY_CONNECTIONS = 8


class _ThreadClients(threading.local):
    """Each thread's HTTP sessions, kept from one refresh to the next so their
    connections (and TLS sessions) stay open: a new session per refresh paid a TCP (and
    TLS) handshake per API and refresh, and rebuilt its transports. Per thread because a
    thread runs one refresh at a time; a client handed out earlier on the same thread
    stops being counted when the next one is (``SheetsClient.sharing_connections``)."""

    def __init__(self) -> None:
        self.instantly: requests.Session | None = None
        self.sheets: dict[tuple[Any, ...], SheetsClient] = {}


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    fernet: MultiFernet
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    clock: Callable[[], datetime] = _utcnow
    # Called after a run is queued, so an embedded worker starts it at once.
    on_enqueue: list[Callable[[], None]] = field(default_factory=list)
    # Call budgets shared by all workers through the database (sheets_sync.quota); None
    # = unlimited (a Runtime built by hand in a test).
    quota: QuotaBudget | None = None
    # Units of one statement, or of reads only (sheets_sync.store.db.
    # make_autocommit_session_factory); None = the ordinary factory.
    autocommit_session_factory: sessionmaker[Session] | None = None
    _pools: PoolCache = field(default_factory=PoolCache, repr=False)
    _clients: _ThreadClients = field(default_factory=_ThreadClients, repr=False)

    def instantly(
        self,
        api_key: str,
        *,
        retry: RetryPolicy | None = None,
        timeout: tuple[float, float] | None = None,
    ) -> InstantlyClient:
        """A client for one workspace key; ``retry``/``timeout`` override the settings'
        (a check made while a person waits gives up sooner than a sync). Its calls go
        through this thread's session (any workspace's key: it travels per request) and
        spend from the key's budget."""
        session = self._clients.instantly
        if session is None:
            session = self._clients.instantly = self._instantly_session()
        return InstantlyClient(
            api_key,
            base_url=self.settings.instantly_api_url,
            timeout=timeout or self.settings.http_timeout,
            retry=retry or self.retry,
            session=session,
        )

    def _instantly_session(self) -> requests.Session:
        adapter: HTTPAdapter
        if self.quota is not None:
            adapter = instantly_adapter(
                self.quota,
                requests_per_minute=self.settings.instantly_requests_per_minute,
                max_wait=self.settings.retry_max_wait,
                pool_maxsize=INSTANTLY_CONNECTIONS,
            )
        else:
            adapter = KeepAliveAdapter(pool_maxsize=INSTANTLY_CONNECTIONS)
        session = keep_no_cookies(requests.Session())
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    # -- the service-account pool (sheets_sync.jobs.accounts) ---------------------------

    @property
    def pool(self) -> Pool:
        return self._pools.get(self.settings.service_account_paths)

    @property
    def service_account_emails(self) -> list[str]:
        """The pool's addresses, primary first: pass to ``store.create_connection``."""
        return self.pool.emails

    @property
    def service_account_email(self) -> str | None:
        """The primary account's address (the one unpinned connections use)."""
        primary = self.pool.primary
        return primary.email if primary is not None else None

    def service_account_email_for(self, connection: Connection) -> str | None:
        """THE address a connection's sheet must be shared with: its pinned account,
        else (stored before the pool) the primary one; None when no key is configured.
        Also for a pinned account whose key left the pool: the sheet is shared with it."""
        return connection.service_account_email or self.service_account_email

    def service_account_for(self, connection: Connection) -> ServiceAccount:
        """The account that refreshes this connection. ``ServiceAccountRemoved`` when its
        key is no longer in the pool (never a silent switch to another account)."""
        email = self.service_account_email_for(connection)
        if email is None:
            paths = self.settings.service_account_paths
            if paths:
                load_credentials(paths[0])  # raises what is wrong with the key file
            raise GoogleCredentialsMissing(CREDENTIALS_MISSING)
        account = self.pool.get(email)
        if account is None:
            raise removed_account_error(email, connection.id)
        return account

    def next_service_account_email(self) -> str | None:
        """The account a connection saved now would be pinned to (the least loaded one),
        so a check made before saving asks Google as that account."""
        emails = self.service_account_emails
        if len(emails) <= 1:
            return self.service_account_email
        with self.session_factory() as s:
            return least_loaded_account(s, emails)

    def sheets(
        self,
        email: str | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: tuple[float, float] | None = None,
    ) -> SheetsClient:
        """A Sheets client acting as ``email`` (a pool account; the primary by default),
        spending from that account's and its project's budgets; ``retry``/``timeout``
        override the settings' (a check made while a person waits gives up sooner)."""
        pool = self.pool
        account = pool.get(email) if email is not None else pool.primary
        if email is not None and account is None:
            raise removed_account_error(email)
        path = account.path if account is not None else self.settings.google_application_credentials
        timeout = timeout or self.settings.http_timeout
        retry = retry or self.retry
        # The credentials object is cached per key file and changes when the file does,
        # so a rotated key gets a new session.
        key = (load_credentials(path), self.settings.sheets_api_url, timeout, retry)
        kept = self._clients.sheets.get(key)
        if kept is not None:
            return kept.sharing_connections()
        client = make_sheets_client(
            path, api_url=self.settings.sheets_api_url, timeout=timeout, retry=retry
        )
        if self.quota is not None:
            attach_to_sheets_client(
                client,
                sheets_adapter(
                    self.quota,
                    account=client.service_account_email,
                    project=account.project_id if account is not None else "unknown",
                    limits=self.sheets_limits,
                    max_wait=self.settings.retry_max_wait,
                ),
            )
        if len(self._clients.sheets) >= 16:  # accounts × overrides: stays small
            self._clients.sheets.clear()
        self._clients.sheets[key] = client
        return client.sharing_connections()

    @property
    def sheets_limits(self) -> SheetsLimits:
        return SheetsLimits(
            writes_per_minute=self.settings.sheets_writes_per_minute,
            reads_per_minute=self.settings.sheets_reads_per_minute,
            project_writes_per_minute=self.settings.sheets_project_writes_per_minute,
            project_reads_per_minute=self.settings.sheets_project_reads_per_minute,
        )

    @property
    def autocommit(self) -> sessionmaker[Session]:
        """Sessions for units that only read or write in one statement: autocommit on
        PostgreSQL (no BEGIN/COMMIT round trips), ordinary transactions on SQLite."""
        return self.autocommit_session_factory or self.session_factory

    def notify_enqueued(self) -> None:
        for callback in list(self.on_enqueue):
            callback()


def build_runtime(settings: Settings, **overrides: object) -> Runtime:
    engine = make_engine(settings.resolved_database_url)
    retry = RetryPolicy(max_total_wait=settings.retry_max_wait)
    session_factory = make_session_factory(engine)
    runtime = Runtime(
        settings=settings,
        engine=engine,
        session_factory=session_factory,
        autocommit_session_factory=make_autocommit_session_factory(engine),
        fernet=load_or_create_keys(settings),
        retry=retry,
        quota=QuotaBudget(session_factory, window=settings.quota_window_seconds),
    )
    for name, value in overrides.items():
        setattr(runtime, name, value)
    return runtime
