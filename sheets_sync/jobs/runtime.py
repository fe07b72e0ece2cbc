"""Everything a process needs to run syncs, built once from the settings.

The web app, the CLI and the workers all build one ``Runtime``; tests build one with
their own clock and client factories. Nothing here imports Flask.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography.fernet import MultiFernet
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from sheets_sync.config import Settings
from sheets_sync.jobs.quota import (
    QuotaBudget,
    attach_to_sheets_client,
    instantly_session,
    sheets_adapter,
)
from sheets_sync.pipeline.instantly import InstantlyClient
from sheets_sync.pipeline.retry import RetryPolicy
from sheets_sync.pipeline.sheets_writer import (
    SheetsClient,
    make_sheets_client,
    service_account_email,
)
from sheets_sync.store.db import make_engine, make_session_factory
from sheets_sync.store.secrets import load_or_create_keys


def _utcnow() -> datetime:
    return datetime.now(UTC)


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

    def instantly(
        self,
        api_key: str,
        *,
        retry: RetryPolicy | None = None,
        timeout: tuple[float, float] | None = None,
    ) -> InstantlyClient:
        """A client for one workspace key; ``retry``/``timeout`` override the settings'
        (a check made while a person waits gives up sooner than a sync)."""
        session = None
        if self.quota is not None and api_key and api_key.strip():
            session = instantly_session(
                self.quota,
                api_key,
                requests_per_minute=self.settings.instantly_requests_per_minute,
                max_wait=self.settings.retry_max_wait,
            )
        return InstantlyClient(
            api_key,
            base_url=self.settings.instantly_api_url,
            timeout=timeout or self.settings.http_timeout,
            retry=retry or self.retry,
            session=session,
        )

    def sheets(
        self,
        *,
        retry: RetryPolicy | None = None,
        timeout: tuple[float, float] | None = None,
    ) -> SheetsClient:
        client = make_sheets_client(
            self.settings.google_application_credentials,
            api_url=self.settings.sheets_api_url,
            timeout=timeout or self.settings.http_timeout,
            retry=retry or self.retry,
        )
        if self.quota is not None:
            attach_to_sheets_client(
                client,
                sheets_adapter(
                    self.quota,
                    writes_per_minute=self.settings.sheets_writes_per_minute,
                    reads_per_minute=self.settings.sheets_reads_per_minute,
                    max_wait=self.settings.retry_max_wait,
                ),
            )
        return client

    @property
    def service_account_email(self) -> str | None:
        return service_account_email(self.settings.google_application_credentials)

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
        fernet=load_or_create_keys(settings),
        retry=retry,
        quota=QuotaBudget(session_factory, window=settings.quota_window_seconds),
    )
    for name, value in overrides.items():
        setattr(runtime, name, value)
    return runtime
