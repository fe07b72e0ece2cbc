"""Instantly API v2 client: fetch functions only, no saving and no formatting.

Parsing is tolerant of new fields (Instantly adds them over time) and strict about the
ones we use: a missing or mistyped metric is a ``InstantlyMalformedResponse`` raised
before anything is written, so a bad payload can never reach the sheet.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

import requests
from pydantic import TypeAdapter, ValidationError
from requests.structures import CaseInsensitiveDict

from sheets_sync import USER_AGENT
from sheets_sync.config import DEFAULT_INSTANTLY_API_URL
from sheets_sync.errors import (
    InstantlyKeyRejected,
    InstantlyMalformedResponse,
    InstantlyNotFound,
    InstantlyPaymentRequired,
    InstantlyRateLimited,
    InstantlyRequestRejected,
    InstantlyUnavailable,
    InvalidInput,
    scrub,
)
from sheets_sync.pipeline.http_environment import keep_no_cookies, settle_environment
from sheets_sync.pipeline.instantly_models import (
    OPPORTUNITY_FIELDS,
    OVERVIEW_LIST,
    STEP_LIST,
    Campaign,
    CampaignOverview,
    CampaignPage,
    CampaignSummary,
    StepStats,
    Subsequence,
    SubsequencePage,
)
from sheets_sync.pipeline.retry import RetryPolicy, call_with_retry, parse_retry_after
from sheets_sync.pipeline.tcp_keepalive import probe_idle_connections

CAMPAIGN = TypeAdapter(Campaign)
CAMPAIGN_PAGE = TypeAdapter(CampaignPage)
SUBSEQUENCE_PAGE = TypeAdapter(SubsequencePage)

# --- client ----------------------------------------------------------------------------

KEY_REJECTED = (
    "The Instantly API key was rejected. Create a new API key in Instantly "
    "(Settings → Integrations → API Keys) with access to campaigns and analytics, "
    "then paste it into this connection."
)
SCOPE_MISSING = (
    "The Instantly API key is not allowed to read campaign analytics. Create a key with "
    "the campaigns:read (or all:read) scope in Instantly and paste it into this connection."
)
PAYMENT_REQUIRED = (
    "Instantly refused the request because the workspace has no paid plan that includes "
    "API access. Check the workspace's billing in Instantly."
)
# Shown after a refresh and after "Test key" alike, so they say what happens next in
# both cases: scheduled refreshes retry by themselves, a person can simply try again.
RATE_LIMITED = (
    "Instantly is rate-limiting this workspace right now. Try again in a minute; scheduled "
    "refreshes retry by themselves. No action is needed unless this keeps happening."
)
UNAVAILABLE = (
    "Instantly could not be reached or answered with an error ({detail}). Try again in a "
    "few minutes; scheduled refreshes retry by themselves."
)
MALFORMED = (
    "Instantly sent analytics this tool cannot read ({detail}). The sheet was left as it "
    "was; scheduled refreshes retry by themselves. If this persists, Instantly may have "
    "changed its API: contact support."
)


def _format_date(value: date | datetime | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value.isoformat()


def _shown(value: Any) -> str:
    # As JSON, so a person sees ``true`` and ``"12"`` the way Instantly sent them.
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _describe_validation(exc: ValidationError, *, rows: bool = False) -> str:
    """The first problem, in words: ``row 3, field sent: …`` for a list of rows (rows
    counted from 1, as a person reads the answer), else the dotted field path."""
    first = exc.errors()[0]
    loc = list(first["loc"])
    if first["type"] == "missing":
        problem = "missing"
    elif first["type"] == "int_type":
        got = _shown(first.get("input"))
        problem = f"must be a whole number (not text, true/false or 12.0), got {got}"
    else:
        message = first["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        problem = f"{message[:1].lower()}{message[1:]}, got {_shown(first.get('input'))}"
    where: list[str] = []
    if rows and loc and isinstance(loc[0], int):
        row = loc.pop(0)
        where.append(f"row {int(row) + 1}")
    if loc:
        where.append("field " + ".".join(str(p) for p in loc))
    return f"{', '.join(where)}: {problem}" if where else problem


class InstantlyClient:
    """A small, typed view of the six Instantly endpoints the product needs."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_INSTANTLY_API_URL,
        timeout: tuple[float, float] = (5.0, 30.0),
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
    ) -> None:
        if not api_key or not api_key.strip():
            raise InvalidInput("No Instantly API key is stored for this connection.")
        self._base = base_url.rstrip("/")
        self._timeout = timeout
        self._retry = retry or RetryPolicy()
        # Instantly's own words end up in messages we store and show; this client is the
        # one place that knows the key, so it takes it out of them.
        self._secrets = (api_key.strip(),)
        # The session may be shared by clients of other workspaces (``Runtime`` keeps one
        # per thread, for its kept-alive connections): the key travels with each request,
        # never in the session.
        self._session = keep_no_cookies(
            settle_environment(session or probe_idle_connections(requests.Session()), self._base)
        )
        # Each call is prepared with these and handed to ``Session.send``: ``Session.get``
        # would merge the session's settings into every call again (0.45 ms of CPU per
        # call, measured), and a settled session without auth or kept cookies has
        # nothing else to merge.
        self._headers = CaseInsensitiveDict(self._session.headers)
        self._headers.update({
            "Authorization": f"Bearer {api_key.strip()}",
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
        })
        self._count_lock = threading.Lock()
        self.calls = 0

    # -- endpoints --

    def step_analytics(
        self,
        campaign_id: str | None = None,
        *,
        start: date | datetime | None = None,
        end: date | datetime | None = None,
        include_opportunities: bool = False,
    ) -> list[StepStats]:
        """``GET /campaigns/analytics/steps``; no campaign means all campaigns combined."""
        params: dict[str, str] = {}
        if campaign_id:
            params["campaign_id"] = campaign_id
        if start is not None:
            params["start_date"] = _format_date(start) or ""
        if end is not None:
            params["end_date"] = _format_date(end) or ""
        if include_opportunities:
            params["include_opportunities_count"] = "true"
        rows: list[StepStats] = self._get_parsed(
            STEP_LIST, "/campaigns/analytics/steps", params, "step analytics"
        )
        if include_opportunities:
            # Asked for and absent is not zero: a 0.0 % opportunity rate would be a lie.
            for number, row in enumerate(rows, start=1):
                for name in OPPORTUNITY_FIELDS:
                    if getattr(row, name) is None:
                        raise InstantlyMalformedResponse(
                            MALFORMED.format(
                                detail=f"step analytics row {number}, field {name}: missing, "
                                "though opportunity counts were asked for"
                            )
                        )
        return rows

    def campaign_overview(
        self,
        campaign_ids: Sequence[str] = (),
        *,
        start: date | datetime | None = None,
        end: date | datetime | None = None,
    ) -> list[CampaignOverview]:
        """``GET /campaigns/analytics``: one row per campaign, for all the given ids in
        one call (``ids`` repeated); no ids means every campaign of the workspace."""
        params: dict[str, str | list[str]] = {
            # Instantly: leaving the lead total out "considerably" speeds the answer up.
            "exclude_total_leads_count": "true",
        }
        if campaign_ids:
            params["ids"] = list(dict.fromkeys(campaign_ids))
        if start is not None:
            params["start_date"] = _format_date(start) or ""
        if end is not None:
            params["end_date"] = _format_date(end) or ""
        overview: list[CampaignOverview] = self._get_parsed(
            OVERVIEW_LIST, "/campaigns/analytics", params, "campaign overview"
        )
        return overview

    def iter_campaigns(self, search: str | None = None) -> Iterator[CampaignSummary]:
        """Every campaign of the workspace, following ``next_starting_after`` to the end."""
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            params = {"limit": "100"}
            if cursor:
                params["starting_after"] = cursor
            if search:
                params["search"] = search
            page = self._get_parsed(CAMPAIGN_PAGE, "/campaigns", params, "campaign list")
            yield from page.items
            cursor = page.next_starting_after
            # A cursor we have already followed would loop forever: treat it as the end.
            if not cursor or not page.items or cursor in seen:
                return
            seen.add(cursor)

    def list_campaigns(self, search: str | None = None) -> list[CampaignSummary]:
        return list(self.iter_campaigns(search))

    def campaign(self, campaign_id: str) -> Campaign:
        """``GET /campaigns/{id}``: name and the sequence (steps, variants, subjects)."""
        path = f"/campaigns/{quote(campaign_id, safe='')}"
        campaign: Campaign = self._get_parsed(CAMPAIGN, path, {}, "campaign")
        return campaign

    def subsequences(self, campaign_id: str) -> list[Subsequence]:
        """``GET /subsequences?parent_campaign=…``: every page, as ``iter_campaigns``."""
        cursor: str | None = None
        seen: set[str] = set()
        found: list[Subsequence] = []
        while True:
            params = {"limit": "100", "parent_campaign": campaign_id}
            if cursor:
                params["starting_after"] = cursor
            page = self._get_parsed(SUBSEQUENCE_PAGE, "/subsequences", params, "subsequence list")
            found += page.items
            cursor = page.next_starting_after
            if not cursor or not page.items or cursor in seen:
                return found
            seen.add(cursor)

    def subsequence_step_analytics(
        self,
        subsequence_id: str,
        *,
        start: date | datetime | None = None,
        end: date | datetime | None = None,
    ) -> list[StepStats]:
        """``GET /subsequences/{id}/analytics/steps``: Instantly documents no opportunity
        counts here, so the rows never have them."""
        params: dict[str, str] = {}
        if start is not None:
            params["start_date"] = _format_date(start) or ""
        if end is not None:
            params["end_date"] = _format_date(end) or ""
        path = f"/subsequences/{quote(subsequence_id, safe='')}/analytics/steps"
        rows: list[StepStats] = self._get_parsed(
            STEP_LIST, path, params, "subsequence step analytics"
        )
        return rows

    # -- plumbing --

    # The answer is parsed straight from its bytes by pydantic (one pass, no Python
    # objects of the JSON in between): json.loads and then validating the objects cost
    # about twice the CPU.

    def _get_parsed(
        self,
        schema: TypeAdapter[Any],
        path: str,
        params: Mapping[str, str | list[str]],
        what: str,
    ) -> Any:
        """The answer as ``schema`` reads it. For a bare JSON array of rows, errors name
        the row number a person can look up."""
        rows = schema in (STEP_LIST, OVERVIEW_LIST)
        try:
            return self._get_json(path, params, schema)
        except ValidationError as exc:
            raise self._malformed(f"{what} {_describe_validation(exc, rows=rows)}") from None

    def _malformed(self, detail: str) -> InstantlyMalformedResponse:
        return InstantlyMalformedResponse(MALFORMED.format(detail=scrub(detail, self._secrets)))

    def _get_json(
        self, path: str, params: Mapping[str, str | list[str]], schema: TypeAdapter[Any]
    ) -> Any:
        """The answer, validated by ``schema``. A body that is not JSON at all (cut short
        in transit, an HTML error page) is asked again; JSON that does not fit the schema
        raises its ``ValidationError`` at once, for the caller to describe."""
        return call_with_retry(lambda: self._get_once(path, params, schema), self._retry)

    def _get_once(
        self, path: str, params: Mapping[str, str | list[str]], schema: TypeAdapter[Any]
    ) -> Any:
        with self._count_lock:  # the client may be used from several threads at once
            self.calls += 1
        try:
            request = requests.Request(
                "GET", self._base + path, params=params, headers=self._headers
            ).prepare()
            response = self._session.send(request, timeout=self._timeout)
        except requests.Timeout:
            raise InstantlyUnavailable(UNAVAILABLE.format(detail="timed out")) from None
        except requests.RequestException:
            raise InstantlyUnavailable(UNAVAILABLE.format(detail="connection failed")) from None
        _raise_for_status(response, path, self._secrets)
        try:
            return schema.validate_json(response.content)
        except ValidationError as exc:
            if exc.errors()[0]["type"] != "json_invalid":
                raise
        # What pydantic's parser refuses and Python's accepts is read as it always was:
        # a lone surrogate escape (a text cut in the middle of an emoji), bytes that are
        # not UTF-8 (replaced), another declared charset.
        try:
            payload = response.json()
        except (json.JSONDecodeError, ValueError):
            raise InstantlyMalformedResponse(MALFORMED.format(detail="not valid JSON")) from None
        return schema.validate_python(payload)


def _server_message(response: requests.Response, secrets: tuple[str, ...]) -> str:
    """Instantly's own error text, scrubbed of the key and anything credential-like, then
    shortened (in that order: a key cut in half would no longer match)."""
    try:
        body = response.json()
    except ValueError:
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    return scrub(str(message), secrets)[:200] if message else ""


def _raise_for_status(
    response: requests.Response, path: str, secrets: tuple[str, ...] = ()
) -> None:
    status = response.status_code
    if status < 400:
        return
    if status == 401:
        raise InstantlyKeyRejected(KEY_REJECTED)
    if status == 402:
        raise InstantlyPaymentRequired(PAYMENT_REQUIRED)
    if status == 403:
        raise InstantlyKeyRejected(SCOPE_MISSING)
    if status == 404 and path.startswith("/campaigns"):
        raise InstantlyNotFound(
            "Instantly has no campaign with the selected id in this workspace. "
            "It may have been deleted: pick the campaigns again for this connection."
        )
    if status == 429:
        raise InstantlyRateLimited(
            RATE_LIMITED, retry_after=parse_retry_after(response.headers.get("Retry-After"))
        )
    if status >= 500 or status == 408:
        raise InstantlyUnavailable(UNAVAILABLE.format(detail=f"HTTP {status}"))
    detail = _server_message(response, secrets)
    raise InstantlyRequestRejected(
        f"Instantly rejected the request (HTTP {status}{': ' + detail if detail else ''}). "
        "Check the connection's campaigns and date range."
    )
