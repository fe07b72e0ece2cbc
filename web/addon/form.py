"""The connect form as the open spreadsheet and the person's time zone fill it."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from . import cards
from .cards import FormValues
from .guard import current_event, urls


def event_timezone() -> str:
    """The person's time zone as Google reports it (UTC if it names none we know)."""
    zone = current_event().timezone or "UTC"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return "UTC"
    return zone


def form_defaults() -> FormValues:
    title = current_event().spreadsheet_title.strip()
    return FormValues(name=(title or "Instantly steps")[:120])


def form_card(values: FormValues, **kwargs: Any) -> dict[str, Any]:
    return cards.connect_form_card(urls(), values, timezone=event_timezone(), **kwargs)
