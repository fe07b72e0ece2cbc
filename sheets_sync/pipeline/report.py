"""Step statistics to labelled, ordered rows for people (pure: no I/O).

A report is plain data: columns with a kind (text, integer, percent) and rows of values.
The sheet renderer decides how it looks; this module decides what it says.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from operator import attrgetter
from typing import Literal

from sheets_sync.pipeline.instantly_models import Campaign, StepStats, Variant
from sheets_sync.pipeline.winners import (
    DEFAULT_MIN_SAMPLE,
    DEFAULT_THRESHOLD,
    SHADE_LEADING_FROM,
    Arm,
    Call,
    call_step,
)

ColumnKind = Literal["text", "int", "percent"]
RowKind = Literal["data", "unattributed", "total"]
Highlight = Literal["winner", "leading"]
RowKey = tuple[str, int | None, int | None]

UNATTRIBUTED_STEP = "No step (not attributed)"
UNATTRIBUTED_VARIANT = "No variant (not attributed)"
ALL_CAMPAIGNS = "All campaigns combined"
NO_SUBJECT = "(no subject: sent in the same thread)"
DISABLED_SUFFIX = " (disabled)"
# Label columns: frozen on the tab, and the row labels of the chart and history.
LABEL_KEYS = ("campaign", "step", "variant")
_CALLS: tuple[tuple[str, str, str], ...] = (
    ("reply_call", "Reply-rate call (chance the leader is best)", "unique_replies"),
    (
        "opportunity_call",
        "Opportunity-rate call (chance the leader is best)",
        "unique_opportunities",
    ),
)


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    kind: ColumnKind
    width: int = 110


@dataclass(frozen=True)
class Row:
    kind: RowKind
    # (campaign id or "", step index or None, variant index or None): stable across
    # refreshes, so later features can find "the same row" after rows move.
    key: RowKey
    values: tuple[str | int | float | None, ...]
    # Set when a winner call names this row the leader of its step: the renderer colours it.
    highlight: Highlight | None = None


@dataclass(frozen=True)
class CampaignSection:
    """The stats of one campaign (or of all combined, ``campaign_id`` None)."""

    campaign_id: str | None
    name: str
    stats: Sequence[StepStats]
    campaign: Campaign | None = None
    # A subsequence's rows: its own name (``name`` stays the parent campaign's, for the
    # Campaign column), ``campaign`` its own sequence, ``campaign_id`` its row-key part.
    subsequence: str | None = None
    # The campaign's subsequences were fetched (their rows follow): steps past the main
    # sequence are then not guessed to be subsequence steps.
    subsequences_fetched: bool = False


@dataclass(frozen=True)
class Report:
    title: str
    date_label: str
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    total: Row
    campaign_names: tuple[str, ...] = field(default=())
    # "How to read this tab": shown as a note on the header row.
    reading_note: str = ""
    # What the totals check against Instantly's campaign overview found (info line).
    totals_check: str = ""

    @property
    def all_rows(self) -> tuple[Row, ...]:
        return (*self.rows, self.total)


@lru_cache(maxsize=1024)
def variant_letter(index: int) -> str:
    """0 → A, 25 → Z, 26 → AA, 27 → AB, as spreadsheet columns are lettered."""
    if index < 0:
        raise ValueError("variant index must be >= 0")
    letters = ""
    n = index + 1
    while n:
        n, rem = divmod(n - 1, 26)
        letters = chr(ord("A") + rem) + letters
    return letters


def subsequence_row_id(campaign_id: str, subsequence_id: str) -> str:
    """The campaign part of a subsequence row's key: distinct from the parent's rows, and
    stable across refreshes so notes and history follow the row."""
    return f"{campaign_id}/sub:{subsequence_id}"


def step_label(
    index: int | None,
    campaign: Campaign | None = None,
    *,
    subsequence: str | None = None,
    guess_subsequences: bool = True,
) -> str:
    if subsequence is not None:
        prefix = f"Subsequence '{subsequence}'"
        return f"{prefix} · {UNATTRIBUTED_STEP}" if index is None else (
            f"{prefix} · Step {index + 1}"
        )
    if index is None:
        return UNATTRIBUTED_STEP
    main = len(campaign.main_steps) if campaign else None
    if main is not None and index >= main and not guess_subsequences:
        # The real subsequences are listed under their names: no guess at what this is.
        return f"Step {index + 1} (past the main sequence)"
    if main is not None and index >= main:
        # Past the main sequence: Instantly counts subsequence emails on from there.
        return f"Subsequence step {index - main + 1}"
    return f"Step {index + 1}"


def variant_label(index: int | None) -> str:
    return UNATTRIBUTED_VARIANT if index is None else variant_letter(index)


_COUNTS: tuple[tuple[str, str], ...] = (
    ("sent", "Sent"),
    ("opened", "Opens"),
    ("unique_opened", "Unique opens"),
    ("replies", "Replies"),
    ("unique_replies", "Unique replies"),
    ("replies_automatic", "Automatic replies"),
    ("unique_replies_automatic", "Unique automatic replies"),
    ("clicks", "Link clicks"),
    ("unique_clicks", "Unique link clicks"),
)
_OPPORTUNITY_COUNTS: tuple[tuple[str, str], ...] = (
    ("opportunities", "Opportunities"),
    ("unique_opportunities", "Unique opportunities"),
    ("meetings_booked", "Meetings booked"),
    ("won", "Won"),
)
# Rates are unique events per email sent: what a person means by "reply rate".
_RATES: tuple[tuple[str, str, str], ...] = (
    ("open_rate", "Open rate (unique opens / sent)", "unique_opened"),
    ("reply_rate", "Reply rate (unique replies / sent)", "unique_replies"),
    ("click_rate", "Click rate (unique clicks / sent)", "unique_clicks"),
)
_OPPORTUNITY_RATE = (
    "opportunity_rate",
    "Opportunity rate (unique opportunities / sent)",
    "unique_opportunities",
)


def columns_for(
    *,
    multi_campaign: bool,
    include_opportunities: bool,
    subjects: bool = False,
    winner_calls: bool = False,
) -> tuple[Column, ...]:
    cols: list[Column] = []
    if multi_campaign:
        cols.append(Column("campaign", "Campaign", "text", 220))
    cols += [Column("step", "Step", "text", 150), Column("variant", "Variant", "text", 110)]
    if subjects:
        cols.append(Column("subject", "Subject line", "text", 260))
    counts = list(_COUNTS) + (list(_OPPORTUNITY_COUNTS) if include_opportunities else [])
    cols += [Column(key, header, "int", 100) for key, header in counts]
    rates = list(_RATES) + ([_OPPORTUNITY_RATE] if include_opportunities else [])
    cols += [Column(key, header, "percent", 130) for key, header, _ in rates]
    if winner_calls:
        calls = _CALLS if include_opportunities else _CALLS[:1]
        cols += [Column(key, header, "text", 170) for key, header, _ in calls]
    return tuple(cols)


def _variant_of(
    campaign: Campaign | None, step: int | None, variant: int | None
) -> Variant | None:
    if campaign is None or step is None or variant is None:
        return None
    steps = campaign.main_steps
    if step >= len(steps) or variant >= len(steps[step].variants):
        return None
    return steps[step].variants[variant]


def _winner_calls(
    sections: Sequence[CampaignSection], *, include_opportunities: bool, min_sample: int
) -> dict[str, dict[RowKey, Call[RowKey]]]:
    """Per call column, the verdict of each attributed row in a step of 2+ variants."""
    out: dict[str, dict[RowKey, Call[RowKey]]] = {}
    calls = _CALLS if include_opportunities else _CALLS[:1]
    for column_key, _, source in calls:
        verdicts: dict[RowKey, Call[RowKey]] = {}
        for section in sections:
            by_step: dict[int, list[Arm[RowKey]]] = {}
            for stat in section.stats:
                if stat.step is None or stat.variant is None:
                    continue
                key: RowKey = (section.campaign_id or "", stat.step, stat.variant)
                if getattr(stat, source) is None:
                    # Not counted (subsequences have no opportunity counts): no call.
                    continue
                successes = int(getattr(stat, source))
                by_step.setdefault(stat.step, []).append(
                    Arm(key, variant_label(stat.variant), successes, int(stat.sent))
                )
            for arms in by_step.values():
                # Every arm has a variant (unattributed stats were skipped above).
                arms.sort(key=lambda a: a.key[2] or 0)
                verdicts.update(call_step(arms, min_sample=min_sample))
        out[column_key] = verdicts
    return out


def _rate(numerator: int | None, sent: int) -> float | None:
    if not sent or numerator is None:
        return None
    return numerator / sent


_RATE_SOURCE = {key: source for key, _, source in (*_RATES, _OPPORTUNITY_RATE)}
# A metric column: (key, None) for a count, (key, numerator's count) for a rate.
MetricPlan = tuple[tuple[str, str | None], ...]


def _metric_plan(columns: Sequence[Column]) -> MetricPlan:
    """Worked out once per report, not once per row."""
    return tuple(
        (col.key, _RATE_SOURCE[col.key] if col.kind == "percent" else None)
        for col in columns
        if col.kind in ("int", "percent")
    )


def _metric_values(
    plan: MetricPlan, totals: Mapping[str, int | None]
) -> list[str | int | float | None]:
    sent = totals.get("sent") or 0
    return [
        totals.get(key, 0) if source is None else _rate(totals.get(source), sent)
        for key, source in plan
    ]


def _counts_of(stat: StepStats, keys: Sequence[str]) -> dict[str, int | None]:
    # None stays None (an empty cell): a count Instantly does not give is not a 0.
    return {key: getattr(stat, key) for key in keys}


def _counts_reader(keys: Sequence[str]) -> Callable[[StepStats], dict[str, int | None]]:
    """``_counts_of`` for one report's count columns, reading every count in one call."""
    if len(keys) < 2:
        return lambda stat: _counts_of(stat, keys)
    read = attrgetter(*keys)
    return lambda stat: dict(zip(keys, read(stat), strict=True))


def _sort_key(stat: StepStats) -> tuple[bool, int, bool, int]:
    return (stat.step is None, stat.step or 0, stat.variant is None, stat.variant or 0)


def build_report(
    sections: Sequence[CampaignSection],
    *,
    include_opportunities: bool,
    date_label: str,
    subjects: bool = False,
    winner_calls: bool = False,
    min_sample: int = DEFAULT_MIN_SAMPLE,
) -> Report:
    """Rows ordered campaign (as selected), step, variant; unattributed rows last.

    ``subjects`` adds the variant's subject line (only when every section is a known
    campaign: the combined view has no single sequence) and marks disabled variants;
    ``winner_calls`` adds a call column per compared rate (see :mod:`winners`).
    """
    parents = [s for s in sections if s.subsequence is None]
    # A campaign's subsequences do not make it a multi-campaign tab.
    multi = len(parents) > 1
    subjects = subjects and bool(sections) and all(s.campaign is not None for s in sections)
    columns = columns_for(
        multi_campaign=multi,
        include_opportunities=include_opportunities,
        subjects=subjects,
        winner_calls=winner_calls,
    )
    calls = (
        _winner_calls(
            sections, include_opportunities=include_opportunities, min_sample=min_sample
        )
        if winner_calls
        else {}
    )
    call_keys = [c.key for c in columns if c.key.endswith("_call")]
    count_keys = [c.key for c in columns if c.kind == "int"]
    metrics = _metric_plan(columns)
    counts_of = _counts_reader(count_keys)
    rows: list[Row] = []
    grand: dict[str, int] = dict.fromkeys(count_keys, 0)
    for section in sections:
        for stat in sorted(section.stats, key=_sort_key):
            counts = counts_of(stat)
            for count_key, value in counts.items():
                grand[count_key] += value or 0
            labels: list[str | int | float | None] = []
            if multi:
                labels.append(section.name)
            variant_text = variant_label(stat.variant)
            found = _variant_of(section.campaign, stat.step, stat.variant) if subjects else None
            if found is not None and found.v_disabled:
                variant_text += DISABLED_SUFFIX
            labels += [
                step_label(
                    stat.step,
                    section.campaign,
                    subsequence=section.subsequence,
                    guess_subsequences=not section.subsequences_fetched,
                ),
                variant_text,
            ]
            if subjects:
                labels.append("" if found is None else found.subject.strip() or NO_SUBJECT)
            kind: RowKind = "unattributed" if stat.step is None or stat.variant is None else "data"
            key: RowKey = (section.campaign_id or "", stat.step, stat.variant)
            texts: list[str | int | float | None] = []
            highlight: Highlight | None = None
            for call_key in call_keys:
                call = calls[call_key].get(key)
                texts.append(call.text if call else "")
                if call is not None and call.verdict == "winner":
                    highlight = "winner"
                elif (
                    call is not None
                    and call.verdict == "leading"
                    and (call.probability or 0.0) >= SHADE_LEADING_FROM
                    and highlight is None
                ):
                    highlight = "leading"
            rows.append(
                Row(
                    kind,
                    key,
                    tuple(labels + _metric_values(metrics, counts) + texts),
                    highlight,
                )
            )
    label_count = sum(1 for c in columns if c.kind == "text") - len(call_keys)
    total_labels: list[str | int | float | None] = ["Total", *([""] * (label_count - 1))]
    total = Row(
        "total",
        ("", None, None),
        tuple(total_labels + _metric_values(metrics, grand) + [""] * len(call_keys)),
    )
    names = tuple(s.name for s in parents)
    title = (
        "Instantly step analytics: " + ", ".join(names)
        if names and sections[0].campaign_id is not None
        else f"Instantly step analytics: {ALL_CAMPAIGNS.lower()}"
    )
    return Report(
        title=title,
        date_label=date_label,
        columns=columns,
        rows=tuple(rows),
        total=total,
        campaign_names=names,
        reading_note=reading_note(columns, min_sample=min_sample),
    )


def reading_note(columns: Sequence[Column], *, min_sample: int = DEFAULT_MIN_SAMPLE) -> str:
    """What every rate on the tab divides, and how a winner call is made, in words.

    Built from the columns shown, so it never explains a column the tab does not have.
    """
    keys = {c.key for c in columns}
    lines = ["How to read this tab", ""]
    lines.append("Counts are Instantly's, per step and variant, for the dates above.")
    lines.append("Every rate is a share of emails sent:")
    for key, header, _ in (*_RATES, _OPPORTUNITY_RATE):
        if key in keys:
            lines.append(f"• {header}")
    lines.append("A rate is empty when nothing was sent.")
    calls = [header for key, header, _ in _CALLS if key in keys]
    if calls:
        threshold = round(DEFAULT_THRESHOLD * 100)
        shade = round(SHADE_LEADING_FROM * 100)
        lines += [
            "",
            "Winner calls (" + "; ".join(calls) + "): Bayesian Beta-Binomial. Each "
            "variant's rate gets the posterior Beta(1 + successes, 1 + sent − successes) "
            "(uniform prior); the leader has the highest posterior mean, and the call shows "
            "the smallest chance, computed exactly, that the leader's true rate beats each "
            "other variant's, rounded down.",
            f"• Winner (green): {threshold} % or more against every other variant.",
            f"• Leading: below {threshold} %; shaded yellow only from {shade} % (below "
            "that it is close to a coin flip).",
            "• Behind A (n %): the chance A beats this variant.",
            f"• Too early: some variant of the step has sent fewer than {min_sample:,}.",
        ]
    return "\n".join(lines)
