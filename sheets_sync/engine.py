"""The pipeline for one refresh: fetch everything, build the report, write it once.

All fetching finishes before any writing starts, so an Instantly failure or a malformed
payload raises before Google is called and the sheet keeps its previous contents.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .date_ranges import resolve
from .instantly import Campaign, InstantlyClient
from .render import add_sheet_request, render
from .report import ALL_CAMPAIGNS, CampaignSection, Report, build_report
from .sheets import SheetsClient


@dataclass(frozen=True)
class SyncSpec:
    spreadsheet_id: str
    worksheet_title: str
    sheet_id: int | None = None
    campaign_ids: Sequence[str] = ()
    date_range: Mapping[str, Any] | None = None
    include_opportunities: bool = False
    # Campaign names and sequences known from an earlier refresh: saves one Instantly
    # call per campaign on the steady-state path.
    known_campaigns: Mapping[str, Campaign] = field(default_factory=dict)


@dataclass(frozen=True)
class SyncOutcome:
    rows_written: int
    sheet_id: int
    sheet_title: str
    sheet_url: str
    tab_created: bool
    instantly_calls: int
    sheets_calls: int
    campaigns: Mapping[str, Campaign]
    report: Report


def fetch_sections(
    spec: SyncSpec, instantly: InstantlyClient, now: datetime
) -> tuple[list[CampaignSection], dict[str, Campaign], str]:
    """Instantly data for every selected campaign (or all combined, in one call)."""
    dates = resolve(dict(spec.date_range or {}), now.astimezone(UTC).date())
    common: dict[str, Any] = {
        "start": dates.start_instant,
        "end": dates.end_instant,
        "include_opportunities": spec.include_opportunities,
    }
    if not spec.campaign_ids:
        stats = instantly.step_analytics(None, **common)
        return [CampaignSection(None, ALL_CAMPAIGNS, stats)], {}, dates.label
    sections: list[CampaignSection] = []
    campaigns: dict[str, Campaign] = {}
    for campaign_id in dict.fromkeys(spec.campaign_ids):
        campaign = spec.known_campaigns.get(campaign_id) or instantly.campaign(campaign_id)
        campaigns[campaign_id] = campaign
        stats = instantly.step_analytics(campaign_id, **common)
        sections.append(CampaignSection(campaign_id, campaign.name, stats, campaign))
    return sections, campaigns, dates.label


def run_sync(
    spec: SyncSpec,
    *,
    instantly: InstantlyClient,
    sheets: SheetsClient,
    now: datetime | None = None,
) -> SyncOutcome:
    now = now or datetime.now(UTC)
    instantly_before, sheets_before = instantly.calls, sheets.calls
    sections, campaigns, date_label = fetch_sections(spec, instantly, now)
    report = build_report(
        sections, include_opportunities=spec.include_opportunities, date_label=date_label
    )
    written = sheets.write_tab(
        spec.spreadsheet_id,
        title=spec.worksheet_title,
        sheet_id=spec.sheet_id,
        tab_requests=lambda sid: render(report, sheet_id=sid, synced_at=now),
        add_sheet=lambda sid, title: add_sheet_request(report, sheet_id=sid, title=title),
    )
    return SyncOutcome(
        rows_written=len(report.all_rows),
        sheet_id=written.sheet_id,
        sheet_title=written.title,
        sheet_url=written.url,
        tab_created=written.created,
        instantly_calls=instantly.calls - instantly_before,
        sheets_calls=sheets.calls - sheets_before,
        campaigns=campaigns,
        report=report,
    )
