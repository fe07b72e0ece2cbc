"""Everything one refresh asks Instantly, in as few rounds of waiting as it can.

The calls of a refresh, in the order a failure is reported (``overlap.side_by_side``):

1. the first call alone (``first_call_alone``): the first campaign's details (when not
   known from an earlier refresh) or its step analytics (all campaigns combined: their
   step analytics). A bad key, a lapsed plan or an outage fails it, and the refresh
   stops there: the other calls are not spent on a workspace that refuses them (each
   takes a permit from the workspace's rate budget, and a struggling Instantly gets one
   caller, not ten). A refresh whose key and workspace worked last time skips this
   round and sends the first call with round 2: one wait on Instantly fewer, and a
   failure then costs the calls of one round at most once, before the next refresh
   probes alone again;
2. side by side: every other campaign's details and step analytics, each campaign's
   subsequence list, the campaign overview (for the totals check) and each history
   day's step analytics;
3. side by side: each subsequence's step analytics (they need the lists of round 2).

The overview's failure is kept as a value, never raised: the tab's numbers do not
depend on it, and its info line says the check was not made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from functools import partial
from typing import Any

from sheets_sync.date_ranges import DateRange, resolve
from sheets_sync.errors import SyncError
from sheets_sync.pipeline.instantly import InstantlyClient
from sheets_sync.pipeline.instantly_models import (
    Campaign,
    CampaignOverview,
    StepStats,
    Subsequence,
)
from sheets_sync.pipeline.overlap import side_by_side
from sheets_sync.pipeline.report import ALL_CAMPAIGNS, CampaignSection, subsequence_row_id


@dataclass(frozen=True)
class Fetched:
    """What Instantly said for one refresh."""

    dates: DateRange
    sections: list[CampaignSection]
    campaigns: dict[str, Campaign]
    # The overview rows, or why they could not be had.
    overview: list[CampaignOverview] | SyncError
    # Each history day's step analytics, per campaign (None: all campaigns combined).
    history_days: dict[date, list[tuple[str | None, list[StepStats]]]]


def fetch(
    instantly: InstantlyClient,
    *,
    campaign_ids: Sequence[str],
    known_campaigns: Mapping[str, Campaign],
    date_range: Mapping[str, Any] | None,
    include_opportunities: bool,
    subsequences: bool,
    history_days: Sequence[date],
    now: datetime,
    first_call_alone: bool = True,
) -> Fetched:
    dates = resolve(dict(date_range or {}), now.astimezone(UTC).date())
    ids = list(dict.fromkeys(campaign_ids))
    # None: all campaigns combined, asked in one call.
    askers: list[str | None] = [*ids] if ids else [None]
    steps = partial(instantly.step_analytics, include_opportunities=include_opportunities)

    # Every call of rounds 1 and 2, keyed by what it answers, in the order a failure of
    # one is reported (the order one after another would have sent them).
    calls: dict[tuple[Any, ...], Callable[[], Any]] = {}
    for cid in askers:
        if cid is not None and cid not in known_campaigns:
            calls["campaign", cid] = partial(instantly.campaign, cid)
        calls["steps", cid] = partial(steps, cid, start=dates.start_instant, end=dates.end_instant)
        if cid is not None and subsequences:
            calls["subsequences", cid] = partial(instantly.subsequences, cid)
    calls["overview", None] = partial(
        _overview, instantly, ids, start=dates.start_instant, end=dates.end_instant
    )
    for day in history_days:
        for cid in askers:
            calls["day", day, cid] = partial(
                steps,
                cid,
                start=datetime.combine(day, time.min, UTC),
                end=datetime.combine(day, time(23, 59, 59, 999000), UTC),
            )
    keys = list(calls)
    if first_call_alone:
        first = calls[keys[0]]()
        answers = [first, *side_by_side([calls[k] for k in keys[1:]])]
    else:
        # Still the first failure in order is the one raised, as one by one.
        answers = side_by_side([calls[k] for k in keys])
    got = dict(zip(keys, answers, strict=True))

    campaigns = {cid: known_campaigns.get(cid) or got["campaign", cid] for cid in ids}
    lists: dict[str, list[Subsequence]] = {
        cid: got["subsequences", cid] for cid in ids if ("subsequences", cid) in got
    }
    wanted = [(cid, sub) for cid, subs in lists.items() for sub in subs]
    sub_stats = side_by_side([
        partial(
            instantly.subsequence_step_analytics, sub.id,
            start=dates.start_instant, end=dates.end_instant,
        )
        for _, sub in wanted
    ])
    by_campaign: dict[str, list[CampaignSection]] = {}
    for (cid, sub), stats in zip(wanted, sub_stats, strict=True):
        by_campaign.setdefault(cid, []).append(
            CampaignSection(
                subsequence_row_id(cid, sub.id), campaigns[cid].name, stats,
                sub.as_campaign(), subsequence=sub.name,
            )
        )

    sections: list[CampaignSection] = []
    for cid in askers:
        sections.append(
            campaign_section(cid, got["steps", cid], campaigns, subsequences_fetched=subsequences)
        )
        sections += by_campaign.get(cid, []) if cid is not None else []
    return Fetched(
        dates=dates,
        sections=sections,
        campaigns=campaigns,
        overview=got["overview", None],
        history_days={
            day: [(cid, got["day", day, cid]) for cid in askers] for day in history_days
        },
    )


def campaign_section(
    campaign_id: str | None,
    stats: list[StepStats],
    campaigns: Mapping[str, Campaign],
    **extra: Any,
) -> CampaignSection:
    """One campaign's step rows as a report section (None: all campaigns combined, which
    has no name, sequence or subsequences of its own)."""
    if campaign_id is None:
        return CampaignSection(None, ALL_CAMPAIGNS, stats)
    campaign = campaigns[campaign_id]
    return CampaignSection(campaign_id, campaign.name, stats, campaign, **extra)


def _overview(
    instantly: InstantlyClient, ids: list[str], *, start: Any, end: Any
) -> list[CampaignOverview] | SyncError:
    try:
        return instantly.campaign_overview(ids, start=start, end=end)
    except SyncError as exc:
        return exc

