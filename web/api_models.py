"""Response shapes of the JSON API (``/api/v1``), as pydantic models.

These models are the single source of truth for what the API answers: the views build
their bodies through them and ``web/openapi.py`` generates the OpenAPI document from the
same classes, so the documentation cannot drift from the responses. Request bodies reuse
``sheets_sync.connection_rules`` (the same validation as the HTML form).

Secrets: ``ConnectionOut`` has no field that could carry the Instantly key, only its
hint, so no code path can serialize the key by accident.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from sheets_sync.connection_rules import FEATURES, Schedule, features_of
from sheets_sync.errors import InvalidInput
from sheets_sync.links import spreadsheet_link
from sheets_sync.store.models import Connection, SyncRun

RunStatus = Literal["queued", "running", "succeeded", "failed", "interrupted"]
RunTrigger = Literal["manual", "api", "schedule", "cli", "addon"]


class _Out(BaseModel):
    # Responses are built by us from stored rows; refusing extras catches a typo in a view.
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(_Out):
    code: str = Field(description="Stable, machine-readable error code.", examples=["not_found"])
    message: str = Field(description="What went wrong and what to do, written for a person.")


class ErrorOut(_Out):
    """Every error the API answers has this body, whatever the status code."""

    error: ErrorDetail


class RunError(_Out):
    code: str = Field(examples=["sheet_not_shared"])
    message: str


class RunOut(_Out):
    """One sync of a connection, from queued to a final status."""

    id: int
    connection_id: int
    status: RunStatus = Field(
        description="queued and running are active; succeeded, failed and interrupted are final."
    )
    trigger: RunTrigger = Field(description="What started the run.")
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    rows_written: int | None
    http_calls: int | None
    sheet_url: str | None = Field(description="Link to the tab the run wrote, once known.")
    drift: str | None = Field(
        description=(
            "A succeeded run's check of the step rows against Instantly's campaign "
            "overview (GET /campaigns/analytics), as the tab's info line says it: "
            "\"Totals match Instantly's campaign overview\", the difference, or that the "
            "check could not be made. Never a failure; null for other runs."
        )
    )
    error: RunError | None = Field(description="Why the run failed; null unless it failed.")


# Built from the FEATURES table, which mypy cannot follow; pydantic checks it at run time.
FeaturesOut = create_model(  # type: ignore[call-overload]
    "FeaturesOut",
    __base__=_Out,
    __doc__="The connection's effective feature switches (PATCH ``features`` to change them).",
    **{
        name: (type(f.default), Field(description=f.description))
        for name, f in FEATURES.items()
    },
)


class ConnectionOut(_Out):
    """A stored connection. The Instantly key itself is write-only and never returned."""

    id: int
    name: str
    instantly_api_key_hint: str = Field(
        description="The last characters of the stored key, so a person can recognise it.",
        examples=["…3f9a"],
    )
    spreadsheet_url: str
    spreadsheet_id: str
    worksheet_title: str = Field(description="Title of the tab sheets-sync manages.")
    service_account_email: str | None = Field(
        description=(
            "Read-only: the Google service account this connection writes as. Share the "
            "sheet with this address as Editor. Null when no service account is configured."
        ),
        examples=["sheets-sync-2@my-project.iam.gserviceaccount.com"],
        json_schema_extra={"readOnly": True},
    )
    sheet_url: str | None = Field(
        description="Link to the managed tab; null until the first sync has created or found it."
    )
    campaign_ids: list[str] = Field(description="Empty means all campaigns combined.")
    date_range: dict[str, str] = Field(
        description='{"preset": "..."} or {"start": "YYYY-MM-DD", "end": "YYYY-MM-DD"}.'
    )
    include_opportunities: bool
    schedule: Schedule
    schedule_time: str | None = Field(description='"HH:MM" in the connection\'s time zone.')
    schedule_weekday: int | None = Field(description="0 = Monday … 6 = Sunday (weekly only).")
    timezone: str = Field(description="IANA time zone name.", examples=["Europe/Berlin"])
    next_run_at: datetime | None
    paused_reason: str | None = Field(
        description="Why scheduled syncs stopped (e.g. the key was rejected); null = not paused."
    )
    last_run: RunOut | None
    features: FeaturesOut
    created_at: datetime
    updated_at: datetime


class ConnectionList(_Out):
    connections: list[ConnectionOut]


class RunList(_Out):
    runs: list[RunOut] = Field(description="Newest first.")


# --- building responses from stored rows -----------------------------------------------


def run_out(run: SyncRun) -> RunOut:
    error = None
    if run.error_code or run.error_message:
        # A run may carry a message without a code (or the reverse) if it was recorded by
        # an older worker; the API still answers a complete {code, message} pair.
        error = RunError(code=run.error_code or "sync_failed", message=run.error_message or "")
    return RunOut(
        id=run.id,
        connection_id=run.connection_id,
        status=run.status,  # type: ignore[arg-type]
        trigger=run.trigger,  # type: ignore[arg-type]
        queued_at=run.queued_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        rows_written=run.rows_written,
        http_calls=run.http_calls,
        sheet_url=run.sheet_url,
        drift=run.drift,
        error=error,
    )


def _tab_link(connection: Connection) -> str | None:
    if connection.sheet_id is None:
        return None
    try:
        return spreadsheet_link(connection.spreadsheet_id, connection.sheet_id)
    except InvalidInput:
        # Stored keys were validated on the way in; a bad one must not break the listing.
        return None


def connection_out(
    connection: Connection,
    last_run: SyncRun | None,
    *,
    service_account_email: str | None = None,
) -> ConnectionOut:
    """``service_account_email``: ``Runtime.service_account_email_for(connection)`` (the
    pinned account, or the primary one for a connection not pinned yet)."""
    return ConnectionOut(
        id=connection.id,
        name=connection.name,
        instantly_api_key_hint=connection.instantly_api_key_hint,
        spreadsheet_url=connection.spreadsheet_url,
        spreadsheet_id=connection.spreadsheet_id,
        worksheet_title=connection.worksheet_title,
        service_account_email=service_account_email or connection.service_account_email,
        sheet_url=_tab_link(connection),
        campaign_ids=list(connection.campaign_ids or []),
        date_range=dict(connection.date_range or {"preset": "all_time"}),
        include_opportunities=bool(connection.include_opportunities),
        schedule=connection.schedule,
        schedule_time=connection.schedule_time,
        schedule_weekday=connection.schedule_weekday,
        timezone=connection.timezone,
        next_run_at=connection.next_run_at,
        paused_reason=connection.paused_reason,
        last_run=run_out(last_run) if last_run is not None else None,
        features=FeaturesOut(**features_of(connection.options)),
        created_at=connection.created_at,
        updated_at=connection.updated_at,
    )
