"""Do the step rows add up to Instantly's own campaign overview? (pure: no I/O)

Instantly serves the same numbers twice: per step and variant
(``/campaigns/analytics/steps``, what the tab shows) and per campaign
(``/campaigns/analytics``, what its dashboard shows). When the two disagree, a team
should hear it from the tab rather than find it in a meeting. The check never fails a
refresh: it only says what it found, or that it could not look.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sheets_sync.errors import InstantlyMalformedResponse, InstantlyRateLimited, SyncError
from sheets_sync.pipeline.instantly_models import CampaignOverview, StepStats

MATCH = "Totals match Instantly's campaign overview"


@dataclass(frozen=True)
class Metric:
    step_field: str
    # Overview fields, best first: the first one present is compared.
    overview_fields: tuple[str, ...]
    label: str


METRICS: tuple[Metric, ...] = (
    Metric("sent", ("emails_sent_count",), "sent"),
    Metric("unique_replies", ("reply_count_unique_by_step", "reply_count_unique"),
           "unique replies"),
    Metric("unique_clicks", ("link_click_count_unique_by_step", "link_click_count_unique"),
           "unique clicks"),
)
OPPORTUNITIES = Metric("unique_opportunities", ("total_opportunities",), "unique opportunities")


@dataclass(frozen=True)
class TotalsCheck:
    """``matches`` is None when the check could not be made."""

    matches: bool | None
    text: str


def _overview_total(rows: Sequence[CampaignOverview], metric: Metric) -> int | None:
    total = 0
    for row in rows:
        value = next(
            (v for v in (getattr(row, f) for f in metric.overview_fields) if v is not None),
            None,
        )
        if value is None:
            # One campaign without the field makes the sum incomparable, not smaller.
            return None
        total += value
    return total


def _difference(steps: int, overview: int, label: str) -> str:
    said = f"Steps add up to {steps:,} {label}; Instantly's overview says {overview:,}"
    if steps == 0:
        return said
    share = abs(overview - steps) / steps * 100
    return f"{said} ({share:.1f} % {'more' if overview > steps else 'fewer'})"


def compare(
    stats: Sequence[StepStats],
    overview: Sequence[CampaignOverview],
    *,
    include_opportunities: bool,
) -> TotalsCheck:
    """The step rows' sums (every row, unattributed ones included) against the overview's
    rows summed, for each metric both sides have."""
    metrics = (*METRICS, OPPORTUNITIES) if include_opportunities else METRICS
    differences: list[str] = []
    for metric in metrics:
        theirs = _overview_total(overview, metric)
        if theirs is None:
            continue
        ours = sum(getattr(s, metric.step_field) or 0 for s in stats)
        if ours != theirs:
            differences.append(_difference(ours, theirs, metric.label))
    if not differences:
        return TotalsCheck(True, MATCH)
    return TotalsCheck(False, ". ".join(differences))


def not_made(error: SyncError) -> TotalsCheck:
    """Why the overview could not be compared, in a few words for the info line."""
    if isinstance(error, InstantlyRateLimited):
        reason = "Instantly was rate-limiting"
    elif isinstance(error, InstantlyMalformedResponse):
        reason = "its answer could not be read"
    else:
        reason = "Instantly did not answer"
    return TotalsCheck(
        None, f"Could not check the totals against Instantly's campaign overview ({reason})"
    )
