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

from .config import Settings
from .db import make_engine, make_session_factory
from .instantly import InstantlyClient
from .retry import RetryPolicy
from .secrets import load_or_create_keys
from .sheets import SheetsClient, make_sheets_client, service_account_email


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

    def instantly(self, api_key: str) -> InstantlyClient:
        return InstantlyClient(
            api_key,
            base_url=self.settings.instantly_api_url,
            timeout=self.settings.http_timeout,
            retry=self.retry,
        )

    def sheets(self) -> SheetsClient:
        return make_sheets_client(
            self.settings.google_application_credentials,
            api_url=self.settings.sheets_api_url,
            timeout=self.settings.http_timeout,
            retry=self.retry,
        )

    @property
    def service_account_email(self) -> str | None:
        return service_account_email(self.settings.google_application_credentials)

    def notify_enqueued(self) -> None:
        for callback in list(self.on_enqueue):
            callback()


def build_runtime(settings: Settings, **overrides: object) -> Runtime:
    engine = make_engine(settings.resolved_database_url)
    retry = RetryPolicy(max_total_wait=settings.retry_max_wait)
    runtime = Runtime(
        settings=settings,
        engine=engine,
        session_factory=make_session_factory(engine),
        fernet=load_or_create_keys(settings),
        retry=retry,
    )
    for name, value in overrides.items():
        setattr(runtime, name, value)
    return runtime
