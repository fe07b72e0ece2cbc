"""Settings from the environment, parsed strictly.

Every variable is optional for the embedded default; a value that is present but wrong
stops the program with one line naming the variable, instead of a stack trace later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sheets_sync.errors import ConfigurationError

DEFAULT_INSTANTLY_API_URL = "https://api.instantly.ai/api/v2"
DEFAULT_SHEETS_API_URL = "https://sheets.googleapis.com"
DEFAULT_GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
DEFAULT_DRIVE_API_URL = "https://www.googleapis.com"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SHEETS_SYNC_", extra="ignore", populate_by_name=True
    )

    data_dir: Path = Path("instance")
    database_url: str | None = None
    secret_key: str | None = None
    encryption_keys: str | None = None
    google_application_credentials: Path | None = Field(
        default=None, validation_alias="GOOGLE_APPLICATION_CREDENTIALS"
    )
    # Comma-separated service-account key files: a pool, each connection pinned to one
    # account. Unset: GOOGLE_APPLICATION_CREDENTIALS alone.
    service_account_files: str | None = None
    instantly_api_url: str = DEFAULT_INSTANTLY_API_URL
    sheets_api_url: str = DEFAULT_SHEETS_API_URL
    cron_token: str | None = None
    sheets_writes_per_minute: int = Field(default=60, ge=1, le=1_000_000)
    # Google counts reads separately (60 a minute per service account too); a refresh reads
    # at most once (finding the tab on a first sync).
    sheets_reads_per_minute: int = Field(default=60, ge=1, le=1_000_000)
    # Per Google Cloud project (all its service accounts together): 300 of each a minute.
    sheets_project_writes_per_minute: int = Field(default=300, ge=1, le=1_000_000)
    sheets_project_reads_per_minute: int = Field(default=300, ge=1, le=1_000_000)
    # Per Instantly workspace (key). Instantly allows 6,000 a minute; leave the customer's
    # other tools most of it.
    instantly_requests_per_minute: int = Field(default=1200, ge=1, le=1_000_000)
    # Length of the budgets' rolling window: 60 (Google's minute); shorter only in tests.
    quota_window_seconds: float = Field(default=60.0, ge=0.5, le=3600)
    # A claimed run's lease; the heartbeat renews it every third of this.
    lease_seconds: float = Field(default=120.0, ge=1, le=3600)
    # Finished runs older than this are deleted by the workers' hourly housekeeping.
    run_history_days: int = Field(default=90, ge=1, le=36_500)
    # The cron endpoint stops starting syncs after this many seconds (App Engine cuts a
    # request at 60 s on automatic scaling).
    cron_max_seconds: float = Field(default=50.0, gt=0, le=3600)
    smtp_url: str | None = None
    # Sender of failure/recovery e-mails.
    smtp_from: str = "sheets-sync@localhost"
    # Where people open the app, for links in e-mails (e.g. https://sync.example.com).
    public_url: str | None = None
    # The Sheets add-on (web/addon): off unless the deployment's system service account is
    # named, since every add-on request must carry an ID token minted for that account.
    addon_service_account: str | None = None
    # Audience of the person's userIdToken: the deployment's OAuth client id.
    addon_oauth_client_id: str | None = None
    google_certs_url: str = DEFAULT_GOOGLE_CERTS_URL
    drive_api_url: str = DEFAULT_DRIVE_API_URL
    # Set when the app is served over HTTPS, so session cookies are marked Secure.
    secure_cookies: bool = False
    # Proxies in front of the app that append to X-Forwarded-For (and set
    # X-Forwarded-Proto); 0 = the peer's address is the client's, the header is ignored.
    trusted_proxies: int = Field(default=0, ge=0, le=10)
    # Sign-in throttling (web.throttle): failed sign-ins allowed per account and client
    # address, and per address over all accounts, in a rolling window.
    login_max_failures: int = Field(default=5, ge=1, le=10_000)
    login_address_max_failures: int = Field(default=20, ge=1, le=100_000)
    login_window_seconds: float = Field(default=900.0, ge=1, le=86_400)
    # Sign-ups (and password-reset requests) per client address per hour.
    signups_per_hour: int = Field(default=10, ge=1, le=100_000)
    # Seconds; the network is the only slow part of a sync, so bound it explicitly.
    http_connect_timeout: float = Field(default=5.0, gt=0, le=120)
    http_read_timeout: float = Field(default=30.0, gt=0, le=600)
    # Upper bound on the time a single call may spend waiting between retries.
    retry_max_wait: float = Field(default=60.0, ge=0, le=3600)

    @field_validator("instantly_api_url", "sheets_api_url", "google_certs_url", "drive_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _db_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if "://" not in value:
            raise ValueError("must be a SQLAlchemy URL such as postgresql+psycopg://user@host/db")
        return value

    @field_validator("service_account_files")
    @classmethod
    def _key_files(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not [part for part in value.split(",") if part.strip()]:
            raise ValueError("must name at least one key file")
        return value

    @field_validator(
        "encryption_keys", "secret_key", "cron_token", "smtp_url", "public_url",
        "addon_service_account", "addon_oauth_client_id",
    )
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with https:// (or http:// for a local test)")
        return value.rstrip("/")

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'sheets-sync.sqlite3').resolve()}"

    @property
    def service_account_paths(self) -> list[Path]:
        """The pool's key files in the order given (the first is the primary account),
        duplicates dropped; GOOGLE_APPLICATION_CREDENTIALS alone when no pool is set."""
        if self.service_account_files:
            paths: list[Path] = []
            for part in self.service_account_files.split(","):
                path = Path(part.strip()).expanduser()
                if part.strip() and path not in paths:
                    paths.append(path)
            return paths
        if self.google_application_credentials is not None:
            return [self.google_application_credentials]
        return []

    @property
    def http_timeout(self) -> tuple[float, float]:
        return (self.http_connect_timeout, self.http_read_timeout)


_ENV_NAMES = {
    "google_application_credentials": "GOOGLE_APPLICATION_CREDENTIALS",
}


def load_settings(**overrides: Any) -> Settings:
    """Read the environment (plus explicit overrides); raise a one-line error on bad values."""
    # Any: an override is checked like the environment's strings are, by the model
    # (a str for a Path, say), not by its field's declared type.
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        name = _ENV_NAMES.get(field, f"SHEETS_SYNC_{field.upper()}")
        raise ConfigurationError(f"{name}: {first['msg']}") from None
