"""Test data builders shared by the pure tests."""

from __future__ import annotations

from sheets_sync.instantly import StepStats

_ZERO_METRICS = (
    "opened",
    "unique_opened",
    "replies",
    "unique_replies",
    "replies_automatic",
    "unique_replies_automatic",
    "clicks",
    "unique_clicks",
)


def step_stats(step: int | None, variant: int | None, sent: int = 100, **metrics: int) -> StepStats:
    """One parsed Instantly row; every metric not given is 0."""
    return StepStats.model_validate(
        {"step": step, "variant": variant, "sent": sent, **dict.fromkeys(_ZERO_METRICS, 0),
         **metrics}
    )
