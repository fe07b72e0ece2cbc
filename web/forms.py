"""Forms of the pages. WTForms renders fields and checks the CSRF token; the rules for a
connection's fields live in ``sheets_sync.connection_rules`` (shared with the JSON API),
so ``ConnectionForm.validate_input`` hands the posted values to those pydantic models."""

from __future__ import annotations

import functools
import re
from typing import Any

from flask import request
from flask_wtf import FlaskForm
from pydantic import ValidationError
from wtforms import (
    BooleanField,
    EmailField,
    HiddenField,
    IntegerField,
    PasswordField,
    SelectField,
    StringField,
)
from wtforms.validators import DataRequired, EqualTo, Length, Optional

from sheets_sync.connection_rules import (
    API_KEY_MAX,
    DEFAULT_WORKSHEET_TITLE,
    FEATURE_DEFAULTS,
    NAME_MAX,
    SCHEDULE_LABELS,
    SPREADSHEET_URL_MAX,
    TAB_TITLE_RULE,
    TIMED_SCHEDULES,
    WEEKDAYS,
    WORKSHEET_TITLE_MAX,
    ConnectionCreate,
    ConnectionFields,
    common_timezones,
    features_of,
    has_control_character,
    problem,
)
from sheets_sync.date_ranges import PRESETS
from sheets_sync.store.models import Connection

MIN_PASSWORD_LENGTH = 10

try:  # WTForms >= 3.3 deprecates (value, label) tuples
    from wtforms.fields.choices import SelectChoice  # type: ignore[attr-defined]  # newer than the stubs
except ImportError:  # pragma: no cover
    SelectChoice = None


def _choices(pairs: Any) -> list[Any]:
    pairs = list(pairs)
    if SelectChoice is None:  # pragma: no cover
        return pairs
    return [SelectChoice(str(value), str(label)) for value, label in pairs]


def control_character_problem(label: str, value: str, *, password: bool = False) -> str | None:
    """The sentence for a text field holding NUL or another control character, else None.

    Passwords may hold anything but NUL (PostgreSQL refuses it, and nobody types it)."""
    if password:
        bad = "\x00" in value
    else:
        bad = has_control_character(value)
    if not bad:
        return None
    return f"{label} contains a control character (such as NUL); remove it and try again."


LIST_SEPARATORS = str.maketrans("\r\n\t", "   ")


class CleanForm(FlaskForm):
    """A form whose text fields refuse control characters with the field's own error,
    before any of it reaches the database (PostgreSQL answers NUL with an error)."""

    # A field whose own rule already says it is one line keeps that sentence.
    control_character_messages: dict[str, str] = {}
    # Lists pasted one per line: line breaks and tabs separate entries there.
    list_fields: frozenset[str] = frozenset()

    def validate(self, extra_validators: Any = None) -> bool:
        ok = bool(super().validate(extra_validators))
        for field in self:
            if field.name == "csrf_token" or not isinstance(field.data, str):
                continue
            value = field.data
            if field.name in self.list_fields:
                value = value.translate(LIST_SEPARATORS)
            message = control_character_problem(
                str(field.label.text), value, password=field.type == "PasswordField"
            )
            if message is not None:
                message = self.control_character_messages.get(field.name, message)
                field.errors = [*field.errors, message]
                ok = False
        return ok


class CsrfForm(FlaskForm):
    """A form with nothing but the CSRF token: buttons that change state."""


class SignupForm(CleanForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField(
        "Password",
        validators=[
            DataRequired(),
            Length(
                min=MIN_PASSWORD_LENGTH,
                max=1000,
                message=f"Use at least {MIN_PASSWORD_LENGTH} characters.",
            ),
        ],
    )
    confirm = PasswordField(
        "Repeat the password",
        validators=[DataRequired(), EqualTo("password", message="The passwords do not match.")],
    )


class LoginForm(CleanForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1000)])


def _new_password() -> PasswordField:
    return PasswordField(
        "New password",
        validators=[
            DataRequired(),
            Length(
                min=MIN_PASSWORD_LENGTH,
                max=1000,
                message=f"Use at least {MIN_PASSWORD_LENGTH} characters.",
            ),
        ],
    )


def _confirm_password() -> PasswordField:
    return PasswordField(
        "Repeat the new password",
        validators=[DataRequired(), EqualTo("password", message="The passwords do not match.")],
    )


class ForgotPasswordForm(CleanForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])


class ResetPasswordForm(CleanForm):
    password = _new_password()
    confirm = _confirm_password()


class ChangePasswordForm(CleanForm):
    current = PasswordField("Current password", validators=[DataRequired(), Length(max=1000)])
    password = _new_password()
    confirm = _confirm_password()


class ApiKeyForm(CleanForm):
    name = StringField("Name", validators=[Optional(), Length(max=200)])


class TestKeyForm(CleanForm):
    instantly_api_key = PasswordField("Instantly API key", validators=[Optional(), Length(max=500)])
    connection_id = HiddenField()


CUSTOM_RANGE = "custom"
DEFAULT_SCHEDULE_TIME = "09:00"


@functools.cache
def _timezone_choices() -> list[Any]:
    return _choices([("UTC", "UTC")] + [(z, z.replace("_", " ")) for z in common_timezones()])


class ConnectionForm(CleanForm):
    control_character_messages = {"worksheet_title": TAB_TITLE_RULE}
    list_fields = frozenset({"campaign_ids"})

    name = StringField("Name", validators=[DataRequired(), Length(max=NAME_MAX)])
    instantly_api_key = PasswordField(
        "Instantly API key", validators=[Optional(), Length(max=API_KEY_MAX)]
    )
    spreadsheet_url = StringField(
        "Google Sheet link", validators=[DataRequired(), Length(max=SPREADSHEET_URL_MAX)]
    )
    worksheet_title = StringField(
        "Tab name", validators=[Optional(), Length(max=WORKSHEET_TITLE_MAX)]
    )
    campaign_ids = StringField("Campaign ids", validators=[Optional(), Length(max=30_000)])
    date_preset = SelectField("Date range")
    date_start = StringField("From (UTC)", validators=[Optional()])
    date_end = StringField("To (UTC, inclusive)", validators=[Optional()])
    include_opportunities = BooleanField("Include opportunities, meetings booked and won")
    schedule = SelectField("Refresh automatically", choices=_choices(SCHEDULE_LABELS.items()))
    schedule_time = StringField("At", validators=[Optional()], default=DEFAULT_SCHEDULE_TIME)
    schedule_weekday = SelectField(
        "On", choices=_choices((str(i), day) for i, day in enumerate(WEEKDAYS)), default="0"
    )
    timezone = SelectField("Time zone", default="UTC")
    # What the tab offers beyond the numbers (stored in the connection's options).
    # One ``feature_<name>`` per connection_rules.FEATURES entry, defaults from there.
    feature_subjects = BooleanField(
        "Subject line of each variant", default=FEATURE_DEFAULTS["subjects"]
    )
    feature_winner_calls = BooleanField(
        "Winner call per step", default=FEATURE_DEFAULTS["winner_calls"]
    )
    feature_min_sample = IntegerField(
        "Emails sent per variant before calling a winner",
        default=FEATURE_DEFAULTS["min_sample"], validators=[Optional()],
    )
    feature_notes = BooleanField(
        "A Notes column that keeps notes on their rows", default=FEATURE_DEFAULTS["notes"]
    )
    feature_history = BooleanField("A daily history tab", default=FEATURE_DEFAULTS["history"])
    feature_history_days = IntegerField(
        "Days of history kept", default=FEATURE_DEFAULTS["history_days"],
        validators=[Optional()],
    )
    feature_chart = BooleanField(
        "A chart of reply rate by step and variant", default=FEATURE_DEFAULTS["chart"]
    )
    feature_subsequences = BooleanField(
        "Subsequence steps under their own names", default=FEATURE_DEFAULTS["subsequences"]
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.date_preset.choices = _choices([*PRESETS.items(), (CUSTOM_RANGE, "Custom dates…")])
        self.timezone.choices = _timezone_choices()

    # -- between the form and the shared input models --

    @classmethod
    def data_for(cls, connection: Connection) -> dict[str, Any]:
        """Initial values of the edit form (never the key: it is write-only)."""
        date_range = connection.date_range or {"preset": "all_time"}
        return {
            "name": connection.name,
            "spreadsheet_url": connection.spreadsheet_url,
            "worksheet_title": connection.worksheet_title,
            "campaign_ids": ", ".join(connection.campaign_ids or []),
            "date_preset": date_range.get("preset", CUSTOM_RANGE),
            "date_start": date_range.get("start", ""),
            "date_end": date_range.get("end", ""),
            "include_opportunities": bool(connection.include_opportunities),
            "schedule": connection.schedule,
            # What a timed schedule runs at when none is given: shown, not "--:--".
            "schedule_time": connection.schedule_time or DEFAULT_SCHEDULE_TIME,
            "schedule_weekday": str(connection.schedule_weekday or 0),
            "timezone": connection.timezone or "UTC",
            **{f"feature_{k}": v for k, v in features_of(connection.options).items()},
        }

    def input_data(self, *, creating: bool) -> dict[str, Any]:
        """The posted values shaped for ``ConnectionCreate``/``ConnectionFields``."""
        data: dict[str, Any] = {
            "name": self.name.data or "",
            "spreadsheet_url": (self.spreadsheet_url.data or "").strip(),
            "worksheet_title": (self.worksheet_title.data or "").strip() or DEFAULT_WORKSHEET_TITLE,
            # The text field, plus boxes ticked in the picker (the page without JavaScript).
            "campaign_ids": split_campaign_ids(self.campaign_ids.data or "")
            + [c for c in request.form.getlist("campaign") if c],
            "include_opportunities": bool(self.include_opportunities.data),
            "schedule": self.schedule.data,
            "timezone": self.timezone.data or "UTC",
            "features": {},
        }
        for name, default in FEATURE_DEFAULTS.items():
            value = self[f"feature_{name}"].data
            # An unticked box is off; a number left empty falls back to its default.
            data["features"][name] = bool(value) if isinstance(default, bool) else value or default
        key = (self.instantly_api_key.data or "").strip()
        if key or creating:
            data["instantly_api_key"] = key
        if self.date_preset.data == CUSTOM_RANGE:
            data["date_range"] = {
                "start": (self.date_start.data or "").strip() or None,
                "end": (self.date_end.data or "").strip() or None,
            }
        else:
            data["date_range"] = {"preset": self.date_preset.data}
        schedule = self.schedule.data
        time = (self.schedule_time.data or "").strip()
        if schedule in TIMED_SCHEDULES:
            data["schedule_time"] = time or DEFAULT_SCHEDULE_TIME
        else:
            data["schedule_time"] = None
        if schedule == "weekly":
            data["schedule_weekday"] = int(self.schedule_weekday.data or 0)
        else:
            data["schedule_weekday"] = None
        return data

    def validate_input(self, *, creating: bool) -> dict[str, Any] | None:
        """Store keyword arguments, or None after putting the messages on the fields.

        Every rule runs, whatever failed before it, so one round shows every problem.
        """
        valid = self.validate()
        if self.date_preset.data == CUSTOM_RANGE and not (
            (self.date_start.data or "").strip() and (self.date_end.data or "").strip()
        ):
            self.date_start.errors = [
                *self.date_start.errors,
                "Pick a start and an end date for a custom range.",
            ]
            valid = False
        data = self.input_data(creating=creating)
        try:
            if creating:
                checked = ConnectionCreate.model_validate(data).as_store_kwargs()
            else:
                checked = ConnectionFields.model_validate(data).changes()
        except ValidationError as exc:
            self._show(exc)
            return None
        return checked if valid else None

    def typed_key(self) -> str:
        return (self.instantly_api_key.data or "").strip()

    def add_errors(self, field_errors: dict[str, list[str]]) -> None:
        for name, messages in field_errors.items():
            field = self._fields.get(name)
            if field is None:
                self.form_errors.extend(messages)
            else:
                field.errors = [*field.errors, *messages]

    @property
    def has_errors(self) -> bool:
        return bool(self.form_errors) or any(f.errors for f in self)

    def error_summary(self) -> list[dict[str, str]]:
        """Each field with a problem, in page order: the summary at the top of the form."""
        return [
            {"id": f.id, "label": str(f.label.text), "message": str(f.errors[0])}
            for f in self
            if f.errors and f.type != "CSRFTokenField"
        ]

    def _show(self, exc: ValidationError) -> None:
        for error in exc.errors():
            message = problem(error)
            loc = [str(part) for part in error.get("loc") or ()]
            if loc[:1] == ["features"] and len(loc) > 1:
                name = f"feature_{loc[1]}"
            elif loc[:1] == ["date_range"]:
                name = "date_preset"
            else:
                name = loc[0] if loc else ""
            field = getattr(self, name, None) if name in self._fields else None
            if field is None:
                self.form_errors.append(message)
            elif not field.errors:
                # One message per field: the form's own check may have said it already.
                field.errors = [message]


_SPLIT = re.compile(r"[,;\n]+")
_UUID = re.compile(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", re.I)


def split_campaign_ids(text: str) -> list[str]:
    """Entries separated by commas, semicolons or lines; ids separated by spaces too,
    but a piece with words that are not ids stays whole ("Q1 outbound" is one name)."""
    out: list[str] = []
    for piece in (p.strip() for p in _SPLIT.split(text)):
        words = piece.split()
        if words and all(_UUID.fullmatch(w) for w in words):
            out += words
        elif piece:
            out.append(piece)
    return out
