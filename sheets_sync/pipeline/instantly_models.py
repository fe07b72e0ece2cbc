"""Instantly's payloads as pydantic models (pure: parsing only, no HTTP).

Tolerant of new fields (Instantly adds them over time), strict about the ones we use.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


def _index(value: Any) -> int | None:
    """Instantly documents step and variant as ``string | null`` ("0", "1"…); accept ints."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("must be a number as text or null")
    if isinstance(value, int):
        index = value
    elif isinstance(value, str) and value.strip().isdigit():
        index = int(value.strip())
    else:
        raise ValueError("must be a number as text or null")
    return index


class StepStats(_Tolerant):
    step: int | None
    variant: int | None
    sent: int = Field(ge=0)
    opened: int
    unique_opened: int
    replies: int
    unique_replies: int
    replies_automatic: int
    unique_replies_automatic: int
    clicks: int
    unique_clicks: int
    opportunities: int | None = None
    unique_opportunities: int | None = None
    meetings_booked: int | None = None
    won: int | None = None

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


STEP_LIST = TypeAdapter(list[StepStats])
