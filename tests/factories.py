"""Test data builders shared by the pure tests."""

from __future__ import annotations

from sheets_sync.pipeline.instantly_models import StepStats

# Every required count of the model (so a new metric needs no edit here).
_ZERO_METRICS = tuple(
    name
    for name, field in StepStats.model_fields.items()
    if field.is_required() and name not in ("step", "variant", "sent")
)


def step_stats(step: int | None, variant: int | None, sent: int = 100, **metrics: int) -> StepStats:
    """One parsed Instantly row; every metric not given is 0."""
    return StepStats.model_validate(
        {"step": step, "variant": variant, "sent": sent, **dict.fromkeys(_ZERO_METRICS, 0),
         **metrics}
    )
