"""What a person may set on a connection, validated once for the form and the JSON API.

Both entry points turn their input into these models, so a rule (a sheet link must be a
Google Sheets link, a custom range must be in order) holds everywhere with one message.
The vocabularies (schedules, date presets, feature switches) are said here once too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from sheets_sync.date_ranges import PRESETS, validate_date_range
from sheets_sync.errors import InvalidInput
from sheets_sync.links import parse_spreadsheet_url

SCHEDULE_LABELS: dict[str, str] = {
    "off": "Off (refresh by hand)",
    "hourly": "Every hour",
    "every_6_hours": "Every 6 hours",
    "daily": "Daily",
    "weekly": "Weekly",
}
# Also the database's CHECK vocabulary (store.models), so it must match the migrations.
SCHEDULES: tuple[str, ...] = tuple(SCHEDULE_LABELS)
Schedule = Literal[SCHEDULES]  # type: ignore[valid-type]
# Schedules that run at a time of day (the others ignore schedule_time).
TIMED_SCHEDULES = ("daily", "weekly")
DatePreset = Literal[tuple(PRESETS)]  # type: ignore[valid-type]
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
DEFAULT_WORKSHEET_TITLE = "Instantly steps"


@dataclass(frozen=True)
class Feature:
    default: bool | int
    description: str
    ge: int | None = None
    le: int | None = None


# What the tab offers beyond the numbers, stored in ``Connection.options["features"]``.
FEATURES: dict[str, Feature] = {
    "subjects": Feature(True, "Show each variant's subject line; mark disabled variants."),
    "winner_calls": Feature(True, "Call the winner of each step on reply (and opportunity) rate."),
    "min_sample": Feature(
        100, "Emails sent per variant before a step is called (below: 'Too early').",
        ge=10, le=1_000_000,
    ),
    "notes": Feature(True, "Keep a Notes column whose notes follow their rows."),
    "history": Feature(True, "Keep a daily snapshot on a second tab."),
    "history_days": Feature(180, "Days of history kept on the history tab.", ge=7, le=3650),
    "chart": Feature(True, "Keep a column chart of reply rate by step and variant."),
}
FEATURE_DEFAULTS: dict[str, Any] = {name: f.default for name, f in FEATURES.items()}
_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_TAB_FORBIDDEN = re.compile(r"[\[\]*?/\\:]")


def _invalid(message: str) -> ValueError:
    # pydantic wraps ValueError; callers show ``message`` as is.
    return ValueError(message)


class DateRangeInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preset: DatePreset | None = None
    start: str | None = Field(default=None, examples=["2026-01-01"])
    end: str | None = Field(default=None, examples=["2026-01-31"])

    @model_validator(mode="after")
    def _one_form(self) -> DateRangeInput:
        if self.preset and (self.start or self.end):
            raise _invalid("Give a preset or a start and end date, not both.")
        try:
            validate_date_range(self.as_spec())
        except InvalidInput as exc:
            raise _invalid(exc.message) from None
        return self

    def as_spec(self) -> dict[str, str]:
        if self.preset:
            return {"preset": self.preset}
        if self.start is None and self.end is None:
            return {"preset": "all_time"}
        return {"start": self.start or "", "end": self.end or ""}


FeatureSwitches = create_model(
    "FeatureSwitches",
    __config__=ConfigDict(extra="forbid"),
    __doc__=(
        "What the tab offers beyond the numbers; every switch defaults to on.\n\n"
        'Stored in ``Connection.options["features"]``; a PATCH may send a subset.'
    ),
    **{
        name: (
            type(f.default) | None,
            Field(default=None, description=f.description, ge=f.ge, le=f.le),
        )
        for name, f in FEATURES.items()
    },
)


def features_of(options: dict[str, Any] | None) -> dict[str, Any]:
    """The effective switches of a connection: stored values over the defaults."""
    stored = (options or {}).get("features") or {}
    out = dict(FEATURE_DEFAULTS)
    for key, default in FEATURE_DEFAULTS.items():
        value = stored.get(key)
        # Exact types: a bool is an int to isinstance, but no switch is a number.
        if type(value) is type(default):
            out[key] = value
    return out


def with_features(options: dict[str, Any] | None, changes: dict[str, Any]) -> dict[str, Any]:
    """``options`` with the sent switches applied (unsent ones keep their value)."""
    merged = dict(options or {})
    features = dict(merged.get("features") or {})
    features.update({k: v for k, v in changes.items() if v is not None})
    merged["features"] = features
    return merged


class ConnectionFields(BaseModel):
    """Every settable field; all optional so PATCH can send a subset."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(default=None, min_length=1, max_length=120)
    instantly_api_key: str | None = Field(default=None, max_length=500)
    spreadsheet_url: str | None = Field(default=None, max_length=2000)
    worksheet_title: str | None = Field(default=None, min_length=1, max_length=100)
    campaign_ids: list[str] | None = Field(default=None, max_length=200)
    date_range: DateRangeInput | None = None
    include_opportunities: bool | None = None
    schedule: Schedule | None = None
    schedule_time: str | None = Field(default=None, examples=["09:00"])
    schedule_weekday: int | None = Field(default=None, ge=0, le=6)
    timezone: str | None = Field(default=None, max_length=64, examples=["Europe/Berlin"])
    features: FeatureSwitches | None = None  # type: ignore[valid-type]

    @field_validator("spreadsheet_url")
    @classmethod
    def _sheet_link(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            parse_spreadsheet_url(value)
        except InvalidInput as exc:
            raise _invalid(exc.message) from None
        return value

    @field_validator("worksheet_title")
    @classmethod
    def _tab_title(cls, value: str | None) -> str | None:
        if value is not None and _TAB_FORBIDDEN.search(value):
            raise _invalid("A tab title cannot contain [ ] * ? / \\ or :")
        return value

    @field_validator("campaign_ids")
    @classmethod
    def _campaigns(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        cleaned = [v.strip() for v in value if v and v.strip()]
        for v in cleaned:
            if len(v) > 100 or not re.fullmatch(r"[A-Za-z0-9_-]+", v):
                raise _invalid("Campaign ids are letters, digits, - and _ (as Instantly shows).")
        return list(dict.fromkeys(cleaned))

    @field_validator("schedule_time")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not _TIME.match(value):
            raise _invalid("The time must look like 09:00 (24-hour clock).")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise _invalid(f"Unknown time zone {value!r}; use a name like Europe/Berlin.") from None
        return value

    def changes(self) -> dict[str, Any]:
        """Only the fields that were sent, ready for the store."""
        data = self.model_dump(exclude_unset=True)
        # Switches live in Connection.options: the caller merges them with
        # ``with_features(connection.options, changes.pop("features"))``.
        if "features" in data:
            data["features"] = (
                self.features.model_dump(exclude_none=True) if self.features else {}
            )
        if "date_range" in data:
            data["date_range"] = (
                self.date_range.as_spec() if self.date_range else {"preset": "all_time"}
            )
        return data


class ConnectionCreate(ConnectionFields):
    name: str = Field(min_length=1, max_length=120)
    instantly_api_key: str = Field(min_length=8, max_length=500)
    spreadsheet_url: str = Field(max_length=2000)

    @model_validator(mode="after")
    def _defaults(self) -> ConnectionCreate:
        if self.schedule in TIMED_SCHEDULES and not self.schedule_time:
            self.schedule_time = "09:00"
        if self.schedule == "weekly" and self.schedule_weekday is None:
            self.schedule_weekday = 0
        return self

    def as_store_kwargs(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "instantly_api_key": self.instantly_api_key,
            "spreadsheet_url": self.spreadsheet_url,
            "worksheet_title": self.worksheet_title or DEFAULT_WORKSHEET_TITLE,
            "campaign_ids": self.campaign_ids or [],
            "date_range": self.date_range.as_spec() if self.date_range else {"preset": "all_time"},
            "include_opportunities": bool(self.include_opportunities),
            "schedule": self.schedule or "off",
            "schedule_time": self.schedule_time,
            "schedule_weekday": self.schedule_weekday,
            "timezone": self.timezone or "UTC",
            "options": with_features(
                {}, self.features.model_dump(exclude_none=True) if self.features else {}
            ),
        }


def common_timezones() -> list[str]:
    return sorted(z for z in available_timezones() if "/" in z and not z.startswith("Etc/"))
