"""The event object Google POSTs to every add-on endpoint, read defensively.

Everything in it except the verified tokens is data, not authority: the spreadsheet id
decides which connections are shown, and each connection id in the parameters is checked
against it (and, for changes, against the verified person).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_SPREADSHEET_ID = re.compile(r"^[A-Za-z0-9_-]{20,200}$")


class BadEvent(Exception):
    """Not an event Google would send."""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class Event:
    user_id_token: str
    user_oauth_token: str
    spreadsheet_id: str | None
    spreadsheet_title: str
    has_file_scope: bool
    timezone: str | None
    parameters: dict[str, str] = field(default_factory=dict)
    form: dict[str, list[str]] = field(default_factory=dict)

    def param(self, name: str) -> str:
        return self.parameters.get(name, "")

    def value(self, name: str) -> str:
        values = self.form.get(name) or []
        return values[0].strip() if values else ""

    def values(self, name: str) -> list[str]:
        return [v.strip() for v in self.form.get(name) or [] if v.strip()]


def parse_event(payload: Any) -> Event:
    if not isinstance(payload, dict):
        raise BadEvent("the body is not a JSON object")
    common = _dict(payload.get("commonEventObject"))
    auth = _dict(payload.get("authorizationEventObject"))
    sheets = _dict(payload.get("sheets"))
    host = common.get("hostApp")
    if host not in (None, "SHEETS"):
        raise BadEvent("only Google Sheets is supported")
    form: dict[str, list[str]] = {}
    for name, raw in _dict(common.get("formInputs")).items():
        values = _dict(_dict(raw).get("stringInputs")).get("value")
        if isinstance(name, str) and isinstance(values, list):
            form[name] = [v for v in values if isinstance(v, str)][:500]
    parameters = {
        k: v for k, v in _dict(common.get("parameters")).items()
        if isinstance(k, str) and isinstance(v, str)
    }
    spreadsheet_id = sheets.get("id")
    if not isinstance(spreadsheet_id, str) or not _SPREADSHEET_ID.match(spreadsheet_id):
        spreadsheet_id = None
    title = sheets.get("title")
    zone = _dict(common.get("timeZone")).get("id")
    user_token = auth.get("userIdToken")
    oauth = auth.get("userOAuthToken")
    return Event(
        user_id_token=user_token if isinstance(user_token, str) else "",
        user_oauth_token=oauth if isinstance(oauth, str) else "",
        spreadsheet_id=spreadsheet_id,
        spreadsheet_title=title if isinstance(title, str) else "",
        has_file_scope=sheets.get("addonHasFileScopePermission") is True,
        timezone=zone if isinstance(zone, str) and zone else None,
        parameters=parameters,
        form=form,
    )
