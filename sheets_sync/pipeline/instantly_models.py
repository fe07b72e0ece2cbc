"""Instantly's payloads as pydantic models (pure: parsing only, no HTTP).

Tolerant of new fields (Instantly adds them over time), strict about the ones we use:
pydantic's lax mode would read ``true`` as 1 and ``"12"`` or ``12.0`` as 12, and a count
that is not what Instantly documents is a sign the payload is not what we think it is.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, Strict, TypeAdapter, field_validator


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# A JSON integer >= 0: not a bool, not a numeric string, not a float (not even 12.0).
Count = Annotated[int, Strict(), Field(ge=0)]

_DIGITS = re.compile(r"[0-9]+")
INDEX_MESSAGE = "must be a non-negative whole number as text (\"0\", \"1\"…) or null"


def _index(value: Any) -> int | None:
    """Instantly documents step and variant as ``string | null`` ("0", "1"…); plain
    non-negative ints are accepted too (older answers and our own fixtures use them)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(INDEX_MESSAGE)
    if isinstance(value, int) and value >= 0:
        return value
    # ASCII digits only: str.isdigit() also accepts "²" and other digits int() refuses.
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return int(value)
    raise ValueError(INDEX_MESSAGE)


OPPORTUNITY_FIELDS = ("opportunities", "unique_opportunities", "meetings_booked", "won")


class StepStats(_Tolerant):
    step: int | None
    variant: int | None
    sent: Count
    opened: Count
    unique_opened: Count
    replies: Count
    unique_replies: Count
    replies_automatic: Count
    unique_replies_automatic: Count
    clicks: Count
    unique_clicks: Count
    # Sent only when asked for (``include_opportunities_count``); the client checks that
    # every one is there when it asked, so a missing one never reads as 0.
    opportunities: Count | None = None
    unique_opportunities: Count | None = None
    meetings_booked: Count | None = None
    won: Count | None = None

    _parse_step = field_validator("step", "variant", mode="before")(
        lambda cls, v: _index(v)  # noqa: ARG005
    )


class Variant(_Tolerant):
    subject: str = ""
    v_disabled: bool = False


class SequenceStep(_Tolerant):
    variants: list[Variant] = []


class Sequence(_Tolerant):
    steps: list[SequenceStep] = []


class CampaignSummary(_Tolerant):
    id: str
    name: str
    status: int | float | None = None


class Campaign(_Tolerant):
    id: str
    name: str
    status: int | float | None = None
    sequences: list[Sequence] = []

    @property
    def main_steps(self) -> list[SequenceStep]:
        # Instantly uses only the first sequence; the rest of the array is ignored.
        return self.sequences[0].steps if self.sequences else []


class CampaignPage(_Tolerant):
    items: list[CampaignSummary]
    next_starting_after: str | None = None


class Subsequence(_Tolerant):
    """One item of ``GET /subsequences``: its own name and sequence (subjects included)."""

    id: str
    name: str
    sequences: list[Sequence] = []

    def as_campaign(self) -> Campaign:
        # Subjects and disabled marks are looked up the same way as a campaign's.
        return Campaign(id=self.id, name=self.name, sequences=self.sequences)


class SubsequencePage(_Tolerant):
    items: list[Subsequence]
    next_starting_after: str | None = None


class CampaignOverview(_Tolerant):
    """One campaign's row of ``GET /campaigns/analytics``: only what the totals check
    compares. The ``*_by_step`` counts are optional in Instantly's document; they count
    a lead once per step, as the step rows do, so they are preferred when sent."""

    campaign_id: str
    emails_sent_count: Count
    reply_count_unique: Count | None = None
    reply_count_unique_by_step: Count | None = None
    link_click_count_unique: Count | None = None
    link_click_count_unique_by_step: Count | None = None
    total_opportunities: Count | None = None


STEP_LIST = TypeAdapter(list[StepStats])
OVERVIEW_LIST = TypeAdapter(list[CampaignOverview])
