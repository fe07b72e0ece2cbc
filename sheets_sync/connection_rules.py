"""What a valid connection is: its vocabularies and the one set of rules every entry uses.

The form and the JSON API turn their input into these models, the CLI and the store
check theirs with ``check_fields``, so a rule (a sheet link must be a Google Sheets link,
a name is at most 120 characters) holds everywhere with one message. Pure: no I/O.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from sheets_sync.date_ranges import PRESETS, validate_date_range
from sheets_sync.errors import InvalidInput
from sheets_sync.links import NOT_A_SHEETS_LINK, parse_spreadsheet_url

# --- vocabularies ----------------------------------------------------------------------

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
    "subsequences": Feature(
        True, "Add each subsequence's steps under its own name (selected campaigns only)."
    ),
}
FEATURE_DEFAULTS: dict[str, Any] = {name: f.default for name, f in FEATURES.items()}

# --- limits and the sentences a person reads -------------------------------------------

NAME_MAX, API_KEY_MIN, API_KEY_MAX = 120, 8, 500
SPREADSHEET_URL_MAX, WORKSHEET_TITLE_MAX, CAMPAIGNS_MAX = 2000, 100, 200

_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_TAB_FORBIDDEN = re.compile(r"[\[\]*?/\\:]")
# Instantly's campaign ids are UUIDs (it refuses anything else: "must match format uuid").
_CAMPAIGN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)

NEED_API_KEY = "Enter the Instantly API key (Instantly: Settings, Integrations, API Keys)."
NOT_AN_API_KEY = (
    "That does not look like an Instantly API key. Copy it again from Instantly: "
    "Settings, Integrations, API Keys."
)
TAB_TITLE_RULE = f"The tab name must be at most {WORKSHEET_TITLE_MAX} characters, on one line."
CAMPAIGN_RULE = (
    "Paste campaign ids, not names: an id looks like 5b6f0d4e-1c2a-4d3b-9e8f-0a1b2c3d4e5f "
    "(press Test key to pick campaigns from a list)."
)


def not_campaign_ids(bad: list[str]) -> str:
    """The sentence for entries that are not campaign ids, naming them (a few at most)."""
    shown = ", ".join(f"“{b[:60]}”" for b in bad[:5]) + (" …" if len(bad) > 5 else "")
    noun = "is not a campaign id" if len(bad) == 1 else "are not campaign ids"
    return f"{shown} {noun}. {CAMPAIGN_RULE}"
TIME_RULE = "The time must look like 09:00 (24-hour clock)."

# Readable sentences for pydantic's own checks (types, lengths, bounds), by field and
# error type ("*": any other); a validator's ValueError already carries its sentence.
_SENTENCES: dict[str, dict[str, str]] = {
    "name": {
        "*": "Give the connection a name.",
        "string_too_long": f"The name is too long ({NAME_MAX} characters at most).",
    },
    "instantly_api_key": {"*": NOT_AN_API_KEY, "string_too_short": NEED_API_KEY},
    "spreadsheet_url": {"*": NOT_A_SHEETS_LINK},
    "worksheet_title": {
        "*": TAB_TITLE_RULE,
        "string_too_short": f"Give the tab a name (left out, it is {DEFAULT_WORKSHEET_TITLE!r}).",
    },
    "campaign_ids": {
        "*": CAMPAIGN_RULE,
        "list_type": "campaign_ids must be a list of campaign ids (empty = all campaigns).",
        "too_long": f"At most {CAMPAIGNS_MAX} campaign ids (none = all campaigns).",
    },
    "date_range": {
        "*": 'date_range must be {"preset": ...} or {"start": "YYYY-MM-DD", "end": "YYYY-MM-DD"}.',
        "literal_error": f"Unknown date range; use one of: {', '.join(PRESETS)}.",
        "string_type": "The start and end dates must be written YYYY-MM-DD.",
    },
    "include_opportunities": {"*": "include_opportunities must be true or false."},
    "schedule": {"*": f"schedule must be one of: {', '.join(SCHEDULES)}."},
    "schedule_time": {"*": TIME_RULE},
    "schedule_weekday": {"*": "schedule_weekday must be 0 (Monday) to 6 (Sunday)."},
    "timezone": {"*": "Unknown time zone; use a name like Europe/Berlin."},
}


_FIELD_WORDS = {
    "name": "The name",
    "spreadsheet_url": "The sheet link",
    "schedule_time": "The time",
    "timezone": "The time zone",
}


def has_control_character(text: str) -> bool:
    """NUL and the other C0/C1 control characters (tabs and newlines included): never
    part of a name, link or title typed on one line."""
    return any(ord(c) < 32 or 127 <= ord(c) < 160 for c in text)


def problem(error: ErrorDetails) -> str:
    """The sentence a person reads for one pydantic error on a connection field."""
    if error["type"] == "value_error":
        # pydantic prefixes a validator's own sentence with "Value error, ".
        return str(error["msg"]).removeprefix("Value error, ")
    loc = error.get("loc") or ()
    sentences = _SENTENCES.get(str(loc[0]) if loc else "", {})
    return sentences.get(error["type"], sentences.get("*", str(error["msg"])))


# --- the models --------------------------------------------------------------------------


class DateRangeInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # A Literal built from PRESETS at import time: right for pydantic, opaque to mypy.
    preset: DatePreset | None = None  # type: ignore[valid-type]
    start: str | None = Field(default=None, examples=["2026-01-01"])
    end: str | None = Field(default=None, examples=["2026-01-31"])

    @model_validator(mode="after")
    def _one_form(self) -> DateRangeInput:
        if self.preset and (self.start or self.end):
            raise ValueError("Give a preset or a start and end date, not both.")
        try:
            validate_date_range(self.as_spec())
        except InvalidInput as exc:
            raise ValueError(exc.message) from None
        return self

    def as_spec(self) -> dict[str, str]:
        if self.preset:
            return {"preset": self.preset}
        if self.start is None and self.end is None:
            return {"preset": "all_time"}
        return {"start": self.start or "", "end": self.end or ""}


# Built from the FEATURES table, which mypy cannot follow; pydantic checks it at run time.
FeatureSwitches = create_model(  # type: ignore[call-overload]
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


# What the OpenAPI document says of a sheet link beyond "a string": not empty, and the
# https://docs.google.com/ start parse_spreadsheet_url insists on (case-insensitively,
# after leading blanks, as it does). The full rules stay in links.py.
SHEET_LINK_SCHEMA: dict[str, Any] = {
    "minLength": 1,
    "pattern": r"^\s*[Hh][Tt][Tt][Pp][Ss]://[Dd][Oo][Cc][Ss]\.[Gg][Oo][Oo][Gg][Ll][Ee]\.[Cc][Oo][Mm]/",
}


def _not_null(**extra: Any) -> Callable[[dict[str, Any]], None]:
    """A field's JSON schema without its ``null`` branch (plus ``extra``): for fields a
    PATCH may leave out but never set to null, so the document refuses what we refuse."""

    def edit(schema: dict[str, Any]) -> None:
        branches = schema.pop("anyOf", None)
        if branches is not None:
            kept = [b for b in branches if b.get("type") != "null"]
            if len(kept) == 1:
                schema.update(kept[0])
            else:
                schema["anyOf"] = kept
        schema.pop("default", None)
        schema.update(extra)

    return edit


class ConnectionFields(BaseModel):
    """Every settable field; all optional so PATCH can send a subset."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    # A PATCH may leave these out, never null them: a stored connection always has them.
    _REFUSED_NULLS: ClassVar[tuple[str, ...]] = (
        "name", "spreadsheet_url", "include_opportunities", "schedule"
    )

    name: str | None = Field(
        default=None, min_length=1, max_length=NAME_MAX, json_schema_extra=_not_null()
    )
    instantly_api_key: str | None = Field(default=None, max_length=API_KEY_MAX)
    spreadsheet_url: str | None = Field(
        default=None,
        max_length=SPREADSHEET_URL_MAX,
        json_schema_extra=_not_null(**SHEET_LINK_SCHEMA),
    )
    worksheet_title: str | None = Field(default=None, min_length=1, max_length=WORKSHEET_TITLE_MAX)
    campaign_ids: list[str] | None = Field(default=None, max_length=CAMPAIGNS_MAX)
    date_range: DateRangeInput | None = None
    include_opportunities: bool | None = Field(default=None, json_schema_extra=_not_null())
    schedule: Schedule | None = Field(default=None, json_schema_extra=_not_null())
    schedule_time: str | None = Field(default=None, examples=["09:00"])
    schedule_weekday: int | None = Field(default=None, ge=0, le=6)
    timezone: str | None = Field(default=None, max_length=64, examples=["Europe/Berlin"])
    features: FeatureSwitches | None = None

    @field_validator("name", "spreadsheet_url", "include_opportunities", "schedule", mode="before")
    @classmethod
    def _refused_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name in cls._REFUSED_NULLS:
            raise ValueError(_SENTENCES[info.field_name or ""]["*"])
        return value

    # (worksheet_title has its own rule below: a tab name is one line.)
    @field_validator("name", "spreadsheet_url", "schedule_time", "timezone", mode="before")
    @classmethod
    def _no_control_characters(cls, value: Any, info: ValidationInfo) -> Any:
        # Before the field's own rules, so the sentence says what is really wrong; NUL
        # would otherwise reach PostgreSQL, which refuses it in any text column.
        if isinstance(value, str) and has_control_character(value):
            what = _FIELD_WORDS.get(info.field_name or "", "This field")
            raise ValueError(f"{what} contains a control character (such as NUL); remove it.")
        return value

    @field_validator("instantly_api_key")
    @classmethod
    def _api_key(cls, value: str | None) -> str | None:
        # Blank means "keep the stored key" (forms never echo it back).
        if not value:
            return None
        if any(c.isspace() or ord(c) < 32 for c in value):
            raise ValueError(NOT_AN_API_KEY)
        return value

    @field_validator("spreadsheet_url")
    @classmethod
    def _sheet_link(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            parse_spreadsheet_url(value)
        except InvalidInput as exc:
            raise ValueError(exc.message) from None
        return value

    @field_validator("worksheet_title")
    @classmethod
    def _tab_title(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if _TAB_FORBIDDEN.search(value):
            raise ValueError("A tab title cannot contain [ ] * ? / \\ or :")
        if has_control_character(value):
            raise ValueError(TAB_TITLE_RULE)
        return value

    @field_validator("campaign_ids")
    @classmethod
    def _campaigns(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        cleaned = [v.strip() for v in value if v and v.strip()]
        bad = [v for v in cleaned if not _CAMPAIGN_ID.fullmatch(v)]
        if bad:
            raise ValueError(not_campaign_ids(list(dict.fromkeys(bad))))
        return list(dict.fromkeys(v.lower() for v in cleaned))

    @field_validator("schedule_time")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not _TIME.match(value):
            raise ValueError(TIME_RULE)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"Unknown time zone {value!r}; use a name like Europe/Berlin."
            ) from None
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
    # On create, a null schedule or include_opportunities means "the default".
    _REFUSED_NULLS: ClassVar[tuple[str, ...]] = ()

    name: str = Field(min_length=1, max_length=NAME_MAX)
    instantly_api_key: str = Field(min_length=API_KEY_MIN, max_length=API_KEY_MAX)
    spreadsheet_url: str = Field(
        max_length=SPREADSHEET_URL_MAX, json_schema_extra=dict(SHEET_LINK_SCHEMA)
    )
    include_opportunities: bool | None = None
    schedule: Schedule | None = None

    @model_validator(mode="after")
    def _defaults(self) -> ConnectionCreate:
        if self.schedule in TIMED_SCHEDULES and not self.schedule_time:
            self.schedule_time = "09:00"
        if self.schedule == "weekly" and self.schedule_weekday is None:
            self.schedule_weekday = 0
        return self

    def as_store_kwargs(self) -> dict[str, Any]:
        data = self.changes()
        features = data.pop("features", None) or {}
        # A null the store would refuse means "not sent" on create; other nulls the store
        # fills with their defaults.
        return {
            **data,
            "include_opportunities": bool(self.include_opportunities),
            "schedule": self.schedule or "off",
            "schedule_time": self.schedule_time,
            "schedule_weekday": self.schedule_weekday,
            "options": with_features({}, features),
        }


# --- the store's and the CLI's entry -----------------------------------------------------

# What a stored connection holds for a field given as None.
_STORED_DEFAULTS: dict[str, Any] = {
    "worksheet_title": DEFAULT_WORKSHEET_TITLE,
    "campaign_ids": [],
    "date_range": {"preset": "all_time"},
    "timezone": "UTC",
    "options": {},
}
# Fields a stored connection always has: None there is refused, not defaulted.
_NOT_NULL = ("name", "spreadsheet_url", "include_opportunities", "schedule")


def check_fields(fields: Mapping[str, Any], *, creating: bool = False) -> dict[str, Any]:
    """``fields`` (store keyword arguments) checked by the rules of the form and the API.

    Returns the values to store; ``InvalidInput`` carries the first bad field's sentence.
    On an edit, a None ``instantly_api_key`` means "keep the stored one".
    """
    data = {**fields}
    options = data.pop("options", None)
    campaigns = data.get("campaign_ids")
    # The store takes any iterable of ids; pydantic's strict list does not.
    if isinstance(campaigns, Iterable) and not isinstance(campaigns, (str, bytes, Mapping)):
        data["campaign_ids"] = list(campaigns)
    try:
        # strict: "yes" is not a boolean and "3" is not a weekday, as in the JSON API.
        checked = ConnectionFields.model_validate(data, strict=True).changes()
    except ValidationError as exc:
        raise InvalidInput(problem(exc.errors()[0])) from None
    for name in _NOT_NULL:
        if name in checked and checked[name] is None:
            raise InvalidInput(_SENTENCES[name]["*"])
    if creating and checked.get("instantly_api_key") is None:
        raise InvalidInput(NEED_API_KEY)
    if "options" in fields:
        checked["options"] = check_options(options)
    for name, default in _STORED_DEFAULTS.items():
        if name in checked and checked[name] is None:
            checked[name] = copy.copy(default)
    return checked


def check_options(value: Any) -> dict[str, Any]:
    """A connection's free-form settings: an object with text keys (None: none)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise InvalidInput("options must be an object with text keys.")
    return dict(value)


def common_timezones() -> list[str]:
    return sorted(z for z in available_timezones() if "/" in z and not z.startswith("Etc/"))
