"""A stateful fake of the Instantly.ai API v2, served over real HTTP on 127.0.0.1.

Why a real server rather than requests-mock: the product's whole HTTP stack (session,
``Authorization`` header, ``User-Agent``, timeouts, retries on 429/5xx, connection reuse)
is part of what must work, and only a socket exercises all of it. The JSON payloads in
``tests/fixtures/instantly/`` cover the pure parsing paths with requests-mock.

Payload shapes follow Instantly's OpenAPI document for ``GET /api/v2/campaigns``,
``GET /api/v2/campaigns/{id}``, ``GET /api/v2/campaigns/analytics/steps`` and
``GET /api/v2/campaigns/analytics`` (the campaign overview, computed from the same daily
events, so its totals match the steps' unless a test calls ``Workspace.skew_overview``),
``GET /api/v2/subsequences`` and ``GET /api/v2/subsequences/{id}/analytics/steps``
(from daily events recorded per subsequence with ``Workspace.record_subsequence``). Where the
document is silent the fake makes a choice and says so in the docstring of the handler.
Errors use Fastify's ``{"statusCode", "error", "message"}`` shape, like the real service.

Typical use::

    with FakeInstantlyServer() as server:
        ws = server.add_workspace("key-123")
        cid = ws.add_campaign("Q1 outbound")
        ws.record(cid, datetime.date(2026, 1, 5), step=0, variant=1, sent=40, replies=2)
        settings = load_settings(instantly_api_url=server.url)
        ...
        server.fail_next(429, headers={"Retry-After": "1"})
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Literal
from wsgiref.types import StartResponse, WSGIEnvironment

from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from tests.fakes.keep_alive import drop_connection, keeping_connections_open

__all__ = [
    "API_PREFIX",
    "BASE_METRICS",
    "OPPORTUNITY_METRICS",
    "Call",
    "FakeInstantlyServer",
    "Workspace",
]

_log = logging.getLogger(__name__)

API_PREFIX: Final = "/api/v2"

#: Always present on every steps-analytics row (the schema's ``required`` list).
BASE_METRICS: Final[tuple[str, ...]] = (
    "sent",
    "opened",
    "unique_opened",
    "replies",
    "unique_replies",
    "replies_automatic",
    "unique_replies_automatic",
    "clicks",
    "unique_clicks",
)
#: Present only when ``include_opportunities_count=true``.
OPPORTUNITY_METRICS: Final[tuple[str, ...]] = (
    "opportunities",
    "unique_opportunities",
    "meetings_booked",
    "won",
)
_ALL_METRICS: Final = BASE_METRICS + OPPORTUNITY_METRICS

# Campaign.status enum from the schema (0 draft, 1 active, 2 paused, 3 completed, ...).
_CAMPAIGN_STATUSES: Final = frozenset({-99, -1, -2, 0, 1, 2, 3, 4})

# Instantly sits behind a CDN that rejects default library User-Agents with an HTML page,
# before the API (and its JSON errors) is ever reached. Matched case-insensitively because
# urllib sends "Python-urllib/3.x" and urllib3 "python-urllib3/2.x".
_BLOCKED_USER_AGENT_PREFIXES: Final = ("python-requests", "python-urllib")
_CDN_BLOCK_PAGE: Final = (
    "<!DOCTYPE html>\n<html><head><title>Access denied</title></head>"
    "<body><h1>Access denied</h1><p>The owner of this website has banned your access "
    "based on your browser's signature.</p></body></html>\n"
)

_STEPS_PATH: Final = f"{API_PREFIX}/campaigns/analytics/steps"
_OVERVIEW_PATH: Final = f"{API_PREFIX}/campaigns/analytics"
_CAMPAIGNS_PATH: Final = f"{API_PREFIX}/campaigns"
_CAMPAIGN_DETAIL: Final = re.compile(rf"^{re.escape(API_PREFIX)}/campaigns/(?P<id>[^/]+)$")
_SUBSEQUENCES_PATH: Final = f"{API_PREFIX}/subsequences"
_SUBSEQUENCE_STEPS: Final = re.compile(
    rf"^{re.escape(API_PREFIX)}/subsequences/(?P<id>[^/]+)/analytics/steps$"
)

_DATE_ONLY: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_INSTANT: Final = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?$"
)

_DEFAULT_MESSAGES: Final[dict[int, str]] = {
    400: "Bad Request",
    401: "Invalid API key",
    402: "Workspace does not have an active paid plan",
    403: "API key does not have the required scope",
    404: "Resource not found",
    429: "Rate limit exceeded",
}

_VARIANT_KEYS: Final = frozenset({"subject", "body", "v_disabled"})

# Overview field -> the steps metric it sums (None: the fake has no per-lead notion, so
# lead-level counts are 0). Per-lead "unique" and "unique by step" coincide here because
# the fake records events, not leads.
_OVERVIEW_SOURCES: Final[dict[str, str | None]] = {
    "contacted_count": None,
    "emails_sent_count": "sent",
    "new_leads_contacted_count": None,
    "open_count": "opened",
    "open_count_unique": "unique_opened",
    "open_count_unique_by_step": "unique_opened",
    "reply_count": "replies",
    "reply_count_unique": "unique_replies",
    "reply_count_unique_by_step": "unique_replies",
    "reply_count_automatic": "replies_automatic",
    "reply_count_automatic_unique": "unique_replies_automatic",
    "reply_count_automatic_unique_by_step": "unique_replies_automatic",
    "link_click_count": "clicks",
    "link_click_count_unique": "unique_clicks",
    "link_click_count_unique_by_step": "unique_clicks",
    "bounced_count": None,
    "unsubscribed_count": None,
    "completed_count": None,
    "total_opportunities": "unique_opportunities",
}

_FAIL: Final = frozenset({"fail"})
_BODY: Final = frozenset({"truncate", "malform"})
_DELAY: Final = frozenset({"delay"})
_DROP: Final = frozenset({"drop"})
DROPPED: Final = -1  # the call log's status for a call whose connection was dropped


def _utc_iso(moment: dt.datetime) -> str:
    """Format like Instantly's timestamps: ``2026-01-05T09:30:00.000Z``."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}Z"
    )


def _error_payload(status: int, message: str | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "error": HTTP_STATUS_CODES.get(status, "Error"),
        "message": message or _DEFAULT_MESSAGES.get(status, HTTP_STATUS_CODES.get(status, "")),
    }


def _json_response(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
    response = Response(
        json.dumps(payload, separators=(",", ":")),
        status=status,
        content_type="application/json; charset=utf-8",
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _error(status: int, message: str | None = None) -> Response:
    return _json_response(status, _error_payload(status, message))


def _bearer_token(header: str | None) -> str | None:
    """The key from ``Authorization: Bearer <key>`` (scheme case-insensitive, per RFC 7235)."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class _BadRequest(Exception):
    """A query-string problem the handler turns into a 400."""


def _parse_instant(raw: str | None, name: str) -> dt.datetime | None:
    """``YYYY-MM-DD`` (UTC midnight) or an ISO 8601 date-time; a naive one is taken as UTC."""
    if raw is None or raw == "":
        return None
    if _DATE_ONLY.match(raw):
        try:
            return dt.datetime.combine(dt.date.fromisoformat(raw), dt.time(), tzinfo=dt.UTC)
        except ValueError:
            pass
    elif _INSTANT.match(raw):
        try:
            moment = dt.datetime.fromisoformat(raw)
        except ValueError:
            pass
        else:
            return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    raise _BadRequest(f"Invalid {name} '{raw}': expected YYYY-MM-DD or an ISO 8601 timestamp")


def _parse_bool(raw: str | None, name: str) -> bool:
    """Fastify/ajv coercion: only ``true`` and ``false`` become booleans.

    Why strict: ``requests`` encodes Python ``True`` as ``"True"``, which the real API
    rejects; the fake must catch that bug rather than paper over it.
    """
    if raw is None:
        return False
    if raw == "true":
        return True
    if raw == "false":
        return False
    raise _BadRequest(f"querystring/{name} must be boolean")


def _parse_limit(raw: str | None) -> int:
    if raw is None:
        return 10
    try:
        limit = int(raw)
    except ValueError:
        raise _BadRequest("querystring/limit must be integer") from None
    if limit < 1:
        raise _BadRequest("querystring/limit must be >= 1")
    if limit > 100:
        raise _BadRequest("querystring/limit must be <= 100")
    return limit


def _day_in_range(day: dt.date, start: dt.datetime | None, end: dt.datetime | None) -> bool:
    midnight = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    return (start is None or start <= midnight) and (end is None or midnight <= end)


def _index(value: Any, name: str) -> int | None:
    """A step/variant index: ``None`` or a non-negative int (bool is rejected on purpose)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int or None, got {value!r}")
    return value


@dataclass(frozen=True)
class Call:
    """One request as the fake saw it. The API key is reduced to its last 4 characters."""

    method: str
    path: str
    query: dict[str, str]
    api_key_hint: str | None
    user_agent: str | None
    status: int
    # The request's Cookie header (Instantly needs none; a client that sends one back has
    # kept what an earlier answer set).
    cookie: str | None = None


@dataclass
class _Fault:
    kind: Literal["fail", "truncate", "malform", "delay", "drop"]
    remaining: int
    path_contains: str | None
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    # Exact path below the API prefix ("/campaigns/analytics"), for endpoints whose
    # paths contain one another.
    path_is: str | None = None

    def response(self) -> Response:
        response = Response(self.body, status=self.status)
        for name, value in self.headers.items():
            response.headers[name] = value
        return response


@dataclass
class _Campaign:
    id: str
    name: str
    status: int
    steps: list[list[dict[str, Any]]]
    created: str

    def to_json(self) -> dict[str, Any]:
        """A ``Campaign`` object: every required field plus a few common optional ones.

        The schema has ``additionalProperties: false``, so only documented keys appear.
        """
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "campaign_schedule": {
                "schedules": [
                    {
                        "name": "Weekdays",
                        "timing": {"from": "09:00", "to": "17:00"},
                        "days": {str(d): d in range(1, 6) for d in range(7)},
                        "timezone": "America/Chicago",
                    }
                ]
            },
            "sequences": [
                {
                    "steps": [
                        {"type": "email", "delay": 2, "variants": copy.deepcopy(variants)}
                        for variants in self.steps
                    ]
                }
            ],
            "pl_value": None,
            "is_evergreen": False,
            "email_list": [],
            "daily_limit": 50,
            "stop_on_reply": True,
            "link_tracking": False,
            "open_tracking": True,
            "text_only": False,
            "timestamp_created": self.created,
            "timestamp_updated": self.created,
        }


def _default_steps() -> list[list[dict[str, Any]]]:
    return [
        [
            {
                "subject": f"Step {s + 1}{'AB'[v]}: quick question, {{{{firstName}}}}",
                "body": f"Hi {{{{firstName}}}},<br/><br/>Step {s + 1} variant {'AB'[v]}.",
            }
            for v in range(2)
        ]
        for s in range(2)
    ]


def _normalise_steps(steps: Sequence[Sequence[Mapping[str, Any]]]) -> list[list[dict[str, Any]]]:
    """Copy and check the sequence so a typo in a test fails loudly, not as a wrong sheet."""
    result: list[list[dict[str, Any]]] = []
    for s, variants in enumerate(steps):
        if not variants:
            raise ValueError(f"step {s} has no variants")
        normalised: list[dict[str, Any]] = []
        for v, variant in enumerate(variants):
            unknown = set(variant) - _VARIANT_KEYS
            if unknown:
                raise ValueError(f"step {s} variant {v}: unknown keys {sorted(unknown)}")
            item: dict[str, Any] = {
                # subject and body are required by the schema, so always emit them.
                "subject": str(variant.get("subject", f"Step {s + 1} variant {v}")),
                "body": str(variant.get("body", "")),
            }
            # v_disabled is optional in the schema; keep it absent unless the test set it,
            # so the product is exercised on both shapes.
            if "v_disabled" in variant:
                item["v_disabled"] = bool(variant["v_disabled"])
            normalised.append(item)
        result.append(normalised)
    return result


@dataclass
class _Subsequence:
    id: str
    parent: str
    name: str
    steps: list[list[dict[str, Any]]]
    created: str
    workspace: str

    def to_json(self) -> dict[str, Any]:
        """A ``CampaignSubsequence``: its required fields plus its sequence (the copy)."""
        return {
            "id": self.id,
            "timestamp_created": self.created,
            "parent_campaign": self.parent,
            "workspace": self.workspace,
            "status": 1,
            "timestamp_leads_updated": self.created,
            "name": self.name,
            "conditions": {"crm_status": [1]},
            "sequences": [
                {
                    "steps": [
                        {"type": "email", "delay": 2, "variants": copy.deepcopy(variants)}
                        for variants in self.steps
                    ]
                }
            ],
        }


class Workspace:
    """One Instantly workspace (one API key): campaigns and daily analytics events.

    ``paid`` and ``scopes_ok`` may be flipped mid-test (a workspace stops paying, a key's
    scopes are narrowed); they are read on every request.
    """

    def __init__(self, api_key: str, *, paid: bool, scopes_ok: bool, lock: threading.RLock) -> None:
        self.api_key = api_key
        self.paid = paid
        self.scopes_ok = scopes_ok
        self._lock = lock
        self._campaigns: dict[str, _Campaign] = {}
        # (campaign_id, day, step, variant) -> metric totals. Dict order is first-insertion
        # order, which the steps endpoint reverses so the product cannot rely on sorted rows.
        self._events: dict[tuple[str, dt.date, int | None, int | None], dict[str, int]] = {}
        # campaign_id -> overview field -> amount added to what the events give.
        self._overview_skew: dict[str, dict[str, int]] = {}
        self._subsequences: dict[str, _Subsequence] = {}
        # (subsequence_id, day, step, variant) -> base metric totals.
        self._sub_events: dict[tuple[str, dt.date, int | None, int | None], dict[str, int]] = {}
        self._id = str(uuid.uuid4())

    def add_campaign(
        self,
        name: str,
        steps: list[list[dict[str, Any]]] | None = None,
        campaign_id: str | None = None,
        status: int = 1,
    ) -> str:
        """Create a campaign; ``steps`` is the main sequence: per step, its variants.

        Each variant is ``{"subject", "body", "v_disabled"?}``; the default is 2 steps x 2
        variants with generated subjects. Returns the (UUIDv4) campaign id.
        """
        if status not in _CAMPAIGN_STATUSES:
            raise ValueError(f"status must be one of {sorted(_CAMPAIGN_STATUSES)}")
        normalised = _normalise_steps(steps) if steps is not None else _default_steps()
        cid = campaign_id or str(uuid.uuid4())
        with self._lock:
            if cid in self._campaigns:
                raise ValueError(f"campaign {cid} already exists")
            self._campaigns[cid] = _Campaign(
                id=cid,
                name=name,
                status=status,
                steps=normalised,
                created=_utc_iso(dt.datetime.now(dt.UTC)),
            )
        return cid

    def record(
        self,
        campaign_id: str,
        day: dt.date,
        step: int | None,
        variant: int | None,
        sent: int = 0,
        opened: int = 0,
        unique_opened: int = 0,
        replies: int = 0,
        unique_replies: int = 0,
        replies_automatic: int = 0,
        unique_replies_automatic: int = 0,
        clicks: int = 0,
        unique_clicks: int = 0,
        opportunities: int = 0,
        unique_opportunities: int = 0,
        meetings_booked: int = 0,
        won: int = 0,
    ) -> None:
        """Add one day's events for (step, variant); repeated calls accumulate.

        ``step`` may exceed the main sequence length: that is how subsequence steps show
        up in the real analytics. ``None`` step/variant is the "could not attribute" row.
        """
        self._record(
            campaign_id,
            day,
            _index(step, "step"),
            _index(variant, "variant"),
            {
                "sent": sent,
                "opened": opened,
                "unique_opened": unique_opened,
                "replies": replies,
                "unique_replies": unique_replies,
                "replies_automatic": replies_automatic,
                "unique_replies_automatic": unique_replies_automatic,
                "clicks": clicks,
                "unique_clicks": unique_clicks,
                "opportunities": opportunities,
                "unique_opportunities": unique_opportunities,
                "meetings_booked": meetings_booked,
                "won": won,
            },
        )

    def add_subsequence(
        self,
        campaign_id: str,
        name: str,
        steps: list[list[dict[str, Any]]] | None = None,
        subsequence_id: str | None = None,
    ) -> str:
        """A subsequence of ``campaign_id``; ``steps`` as in :meth:`add_campaign`."""
        normalised = _normalise_steps(steps) if steps is not None else _default_steps()
        sid = subsequence_id or str(uuid.uuid4())
        with self._lock:
            if campaign_id not in self._campaigns:
                raise ValueError(f"unknown campaign {campaign_id} in workspace")
            if sid in self._subsequences:
                raise ValueError(f"subsequence {sid} already exists")
            self._subsequences[sid] = _Subsequence(
                sid, campaign_id, name, normalised, _utc_iso(dt.datetime.now(dt.UTC)), self._id
            )
        return sid

    def record_subsequence(
        self,
        subsequence_id: str,
        day: dt.date,
        step: int | None,
        variant: int | None,
        **metrics: int,
    ) -> None:
        """Add one day's events of a subsequence step (base metrics only: the document
        has no opportunity counts for subsequences). They are not in the parent campaign's
        step analytics or overview (our choice; the document does not say)."""
        unknown = set(metrics) - set(BASE_METRICS)
        if unknown:
            raise ValueError(f"unknown metrics {sorted(unknown)}")
        if isinstance(day, dt.datetime) or not isinstance(day, dt.date):
            raise TypeError(f"day must be a datetime.date, got {day!r}")
        for name, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        key = (subsequence_id, day, _index(step, "step"), _index(variant, "variant"))
        with self._lock:
            if subsequence_id not in self._subsequences:
                raise ValueError(f"unknown subsequence {subsequence_id} in workspace")
            totals = self._sub_events.setdefault(key, dict.fromkeys(BASE_METRICS, 0))
            for name, value in metrics.items():
                totals[name] += value

    def skew_overview(self, campaign_id: str, **deltas: int) -> None:
        """Make ``GET /campaigns/analytics`` disagree with the step analytics: add
        ``deltas`` (e.g. ``emails_sent_count=181``) to the campaign's overview row, as
        Instantly's two endpoints sometimes disagree. Repeated calls accumulate."""
        unknown = set(deltas) - set(_OVERVIEW_SOURCES)
        if unknown:
            raise ValueError(f"unknown overview fields {sorted(unknown)}")
        with self._lock:
            if campaign_id not in self._campaigns:
                raise ValueError(f"unknown campaign {campaign_id} in workspace")
            skew = self._overview_skew.setdefault(campaign_id, {})
            for name, value in deltas.items():
                skew[name] = skew.get(name, 0) + value

    def _record(
        self,
        campaign_id: str,
        day: dt.date,
        step: int | None,
        variant: int | None,
        metrics: Mapping[str, int],
    ) -> None:
        # datetime is a date subclass; accepting it would silently drop the time of day.
        if isinstance(day, dt.datetime) or not isinstance(day, dt.date):
            raise TypeError(f"day must be a datetime.date, got {day!r}")
        for name, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        with self._lock:
            if campaign_id not in self._campaigns:
                raise ValueError(f"unknown campaign {campaign_id} in workspace")
            totals = self._events.setdefault(
                (campaign_id, day, step, variant), dict.fromkeys(_ALL_METRICS, 0)
            )
            for name, value in metrics.items():
                totals[name] += value

    # --- used by the server, under its lock ----------------------------------------------

    def _step_rows(
        self,
        campaign_id: str | None,
        start: dt.datetime | None,
        end: dt.datetime | None,
        include_opportunities: bool,
    ) -> list[dict[str, Any]]:
        totals: dict[tuple[int | None, int | None], dict[str, int]] = {}
        for (cid, day, step, variant), metrics in self._events.items():
            if campaign_id is not None and cid != campaign_id:
                continue
            if not _day_in_range(day, start, end):
                continue
            acc = totals.setdefault((step, variant), dict.fromkeys(_ALL_METRICS, 0))
            for name, value in metrics.items():
                acc[name] += value
        names = _ALL_METRICS if include_opportunities else BASE_METRICS
        rows: list[dict[str, Any]] = []
        for (step, variant), acc in reversed(totals.items()):
            row: dict[str, Any] = {
                "step": None if step is None else str(step),
                "variant": None if variant is None else str(variant),
            }
            row.update({name: acc[name] for name in names})
            rows.append(row)
        return rows


    def _subsequence_rows(
        self, subsequence_id: str, start: dt.date | None, end: dt.date | None
    ) -> list[dict[str, Any]]:
        totals: dict[tuple[int | None, int | None], dict[str, int]] = {}
        for (sid, day, step, variant), metrics in self._sub_events.items():
            if sid != subsequence_id or (start and day < start) or (end and day > end):
                continue
            acc = totals.setdefault((step, variant), dict.fromkeys(BASE_METRICS, 0))
            for name, value in metrics.items():
                acc[name] += value
        return [
            {
                "step": None if step is None else str(step),
                "variant": None if variant is None else str(variant),
                **acc,
            }
            for (step, variant), acc in reversed(totals.items())
        ]

    def _overview_rows(
        self,
        campaign_ids: Sequence[str] | None,
        start: dt.datetime | None,
        end: dt.datetime | None,
        include_leads: bool,
    ) -> list[dict[str, Any]]:
        chosen = [c for c in self._campaigns.values()
                  if campaign_ids is None or c.id in campaign_ids]
        rows: list[dict[str, Any]] = []
        for campaign in chosen:
            totals = dict.fromkeys(_ALL_METRICS, 0)
            for (cid, day, _step, _variant), metrics in self._events.items():
                if cid == campaign.id and _day_in_range(day, start, end):
                    for name, value in metrics.items():
                        totals[name] += value
            row: dict[str, Any] = {
                "campaign_name": campaign.name,
                "campaign_id": campaign.id,
                "campaign_status": campaign.status,
                "campaign_is_evergreen": False,
            }
            if include_leads:
                row["leads_count"] = totals["sent"]
            for name, source in _OVERVIEW_SOURCES.items():
                row[name] = totals[source] if source else 0
            row["total_opportunity_value"] = 0
            for name, value in self._overview_skew.get(campaign.id, {}).items():
                row[name] += value
            rows.append(row)
        return rows


class _QuietHandler(WSGIRequestHandler):
    """Send werkzeug's per-request access log to DEBUG instead of stderr."""

    def log(self, type: str, message: str, *args: Any) -> None:
        _log.debug("%s: %s", type, message % args if args else message)


class FakeInstantlyServer:
    """The fake API on ``http://127.0.0.1:<random port>/api/v2`` (see :attr:`url`).

    Request pipeline, in order (each stage may answer and stop):

    1. ``delay_next`` / ``latency``: decided on arrival, slept *after* the answer has been
       computed and the call logged, just before it is sent. So a client that times out
       still sees its call in :attr:`calls`, without racing the server thread.
    2. CDN: a ``python-requests*`` / ``python-urllib*`` User-Agent gets 403 HTML.
    3. ``fail_next``: the injected status/body/headers (no auth check; think load balancer).
    4. Auth: missing/unknown key 401, unpaid workspace 402, insufficient scope 403.
    5. Routing to the six endpoints; anything else is Fastify's 404 route-not-found.
    6. ``truncate_next`` / ``malform_next``: replace the body of a response that would
       have been a 200 (they wait for one, so they compose with ``fail_next``).
    7. ``drop_next``: decided on arrival like a delay; instead of the answer, the
       connection is closed (logged with status ``DROPPED``).
    """

    def __init__(self, *, keep_alive: bool = False) -> None:
        # Connections left open between requests, as Instantly's are (``keep_alive.py``).
        self.keep_alive = keep_alive
        # One re-entrant lock guards all state: workspaces, faults, call log. Requests are
        # tiny, so serialising them costs nothing and rules out torn reads.
        self._lock = threading.RLock()
        self._workspaces: dict[str, Workspace] = {}
        self._faults: list[_Fault] = []
        self._calls: list[Call] = []
        #: Seconds added to every call (before the answer is sent).
        self.latency: float = 0.0
        #: Answers set a cookie naming the key's workspace, as CDNs and load balancers in
        #: front of an API may (``Call.cookie`` shows whether a client sends it back).
        self.set_cookies: bool = False
        self._server: BaseWSGIServer | None = None
        self._close_idle: Callable[[], int] = lambda: 0
        self._thread: threading.Thread | None = None
        # Set by stop() so pending delays end at once instead of holding a thread.
        self._stopping = threading.Event()

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeInstantlyServer:
        if self._server is not None:
            raise RuntimeError("FakeInstantlyServer is already running")
        self._stopping.clear()
        handler = (
            keeping_connections_open(_QuietHandler) if self.keep_alive else _QuietHandler
        )
        self._close_idle = getattr(handler, "close_idle", lambda: 0)
        server = make_server(
            "127.0.0.1", 0, self._wsgi_app, threaded=True, request_handler=handler
        )
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.01},  # bounds how long stop() waits
            name=f"fake-instantly-{server.server_port}",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeInstantlyServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeInstantlyServer is not running; call start()")
        return self._server.server_port

    @property
    def url(self) -> str:
        """The API base exactly as the product configures it (``.../api/v2``)."""
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    # --- state ----------------------------------------------------------------------------

    def add_workspace(
        self, api_key: str, *, paid: bool = True, scopes_ok: bool = True
    ) -> Workspace:
        if not api_key:
            raise ValueError("api_key must be non-empty")
        with self._lock:
            if api_key in self._workspaces:
                raise ValueError("a workspace with this API key already exists")
            workspace = Workspace(api_key, paid=paid, scopes_ok=scopes_ok, lock=self._lock)
            self._workspaces[api_key] = workspace
            return workspace

    def workspace(self, api_key: str) -> Workspace:
        with self._lock:
            return self._workspaces[api_key]

    # --- fault injection ------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        body: str | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        count: int = 1,
        path_contains: str | None = None,
        path_is: str | None = None,
    ) -> None:
        """Answer the next ``count`` matching calls with ``status``.

        ``body``: a dict is sent as JSON, a str as-is (text/plain unless ``headers`` set a
        Content-Type, e.g. an HTML 502 page), None gives Instantly's JSON error for
        ``status``. ``path_contains`` limits the fault to paths containing that text,
        ``path_is`` to one path below ``/api/v2`` exactly.
        """
        if not 100 <= status <= 599:
            raise ValueError("status must be an HTTP status code")
        if body is None:
            payload = json.dumps(_error_payload(status)).encode()
            content_type = "application/json; charset=utf-8"
        elif isinstance(body, str):
            payload, content_type = body.encode(), "text/plain; charset=utf-8"
        else:
            payload = json.dumps(body).encode()
            content_type = "application/json; charset=utf-8"
        merged = {"Content-Type": content_type}
        for name, value in (headers or {}).items():
            # Case-insensitive override so {"content-type": ...} replaces the default.
            merged = {k: v for k, v in merged.items() if k.lower() != name.lower()}
            merged[name] = value
        self._add_fault(
            _Fault("fail", count, path_contains, status=status, body=payload, headers=merged,
                   path_is=path_is)
        )

    def truncate_next(self, count: int = 1, path_contains: str | None = None) -> None:
        """Answer 200 with the real JSON body cut in half (a connection cut mid-body that
        a proxy still framed as complete): the product must report it, not crash."""
        self._add_fault(_Fault("truncate", count, path_contains))

    def malform_next(
        self,
        body: Any,
        count: int = 1,
        path_contains: str | None = None,
        path_is: str | None = None,
    ) -> None:
        """Answer 200 with ``body`` instead of the real JSON (a str is sent verbatim)."""
        payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self._add_fault(
            _Fault(
                "malform",
                count,
                path_contains,
                body=payload,
                headers={"Content-Type": "application/json; charset=utf-8"},
                path_is=path_is,
            )
        )

    def delay_next(self, seconds: float, count: int = 1, path_contains: str | None = None) -> None:
        """Sleep ``seconds`` before answering the next ``count`` matching calls."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        self._add_fault(_Fault("delay", count, path_contains, seconds=seconds))

    def drop_next(self, count: int = 1, path_contains: str | None = None) -> None:
        """Close the connection of the next ``count`` matching calls without a byte of
        answer, as a restarting server or a load balancer does (RemoteDisconnected)."""
        self._add_fault(_Fault("drop", count, path_contains))

    def close_idle_connections(self) -> int:
        """Close the connections kept open for a next request (with ``keep_alive``), as a
        server's idle timeout does: a client's pooled connection goes stale."""
        return int(self._close_idle())

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _add_fault(self, fault: _Fault) -> None:
        if fault.remaining < 1:
            raise ValueError("count must be >= 1")
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self, kinds: frozenset[str], path: str) -> _Fault | None:
        """Consume one use of the oldest matching fault among ``kinds`` (FIFO)."""
        for fault in self._faults:
            if fault.kind not in kinds:
                continue
            if fault.path_contains is not None and fault.path_contains not in path:
                continue
            if fault.path_is is not None and path != API_PREFIX + fault.path_is:
                continue
            fault.remaining -= 1
            if fault.remaining == 0:
                self._faults.remove(fault)
            return fault
        return None

    # --- call log -------------------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def count(self, path_contains: str | None = None) -> int:
        with self._lock:
            return sum(1 for c in self._calls if path_contains is None or path_contains in c.path)

    def reset_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    # --- HTTP -----------------------------------------------------------------------------

    def _wsgi_app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        key = _bearer_token(request.headers.get("Authorization"))
        with self._lock:
            delay_fault = self._take_fault(_DELAY, request.path)
            dropped = self._take_fault(_DROP, request.path) is not None
            response = self._respond(request, key)
            self._calls.append(
                Call(
                    method=request.method,
                    path=request.path,
                    query=request.args.to_dict(),
                    api_key_hint=key[-4:] if key else None,
                    user_agent=request.headers.get("User-Agent"),
                    status=DROPPED if dropped else response.status_code,
                    cookie=request.headers.get("Cookie"),
                )
            )
            if self.set_cookies and key:
                response.set_cookie("workspace", key[-4:], path="/")
        # Sleep outside the lock so one slow call never stalls the others.
        delay = self.latency + (delay_fault.seconds if delay_fault else 0.0)
        if delay > 0:
            self._stopping.wait(delay)
        if dropped:
            drop_connection(environ)
        return response(environ, start_response)

    def _respond(self, request: Request, key: str | None) -> Response:
        user_agent = (request.headers.get("User-Agent") or "").lower()
        if user_agent.startswith(_BLOCKED_USER_AGENT_PREFIXES):
            return Response(_CDN_BLOCK_PAGE, status=403, content_type="text/html; charset=utf-8")

        failure = self._take_fault(_FAIL, request.path)
        if failure is not None:
            return failure.response()

        workspace = self._workspaces.get(key) if key else None
        if workspace is None:
            return _error(401, "Invalid API key")
        if not workspace.paid:
            return _error(402)
        if not workspace.scopes_ok:
            return _error(403)

        response = self._route(request, workspace)
        if response.status_code != 200:
            return response
        # One FIFO for both body faults, so their relative order is what the test queued.
        body_fault = self._take_fault(_BODY, request.path)
        if body_fault is None:
            return response
        if body_fault.kind == "truncate":  # keep the real status and type, halve the bytes
            data = response.get_data()
            response.set_data(data[: len(data) // 2])
            return response
        return body_fault.response()

    def _route(self, request: Request, workspace: Workspace) -> Response:
        if request.method == "GET":
            if request.path == _STEPS_PATH:
                return self._steps_analytics(request, workspace)
            # Before the detail route, whose pattern would take "analytics" for an id.
            if request.path == _OVERVIEW_PATH:
                return self._campaign_overview(request, workspace)
            if request.path == _CAMPAIGNS_PATH:
                return self._list_campaigns(request, workspace)
            match = _CAMPAIGN_DETAIL.match(request.path)
            if match:
                return self._get_campaign(match["id"], workspace)
            if request.path == _SUBSEQUENCES_PATH:
                return self._list_subsequences(request, workspace)
            match = _SUBSEQUENCE_STEPS.match(request.path)
            if match:
                return self._subsequence_steps(match["id"], request, workspace)
        # Fastify's default not-found answer (also used for unsupported methods).
        return _error(404, f"Route {request.method}:{request.path} not found")

    def _steps_analytics(self, request: Request, workspace: Workspace) -> Response:
        """``GET /campaigns/analytics/steps`` -> bare JSON array of per-(step, variant) rows.

        Date filter (our choice; the document only defines how dates are parsed): events
        are stored per UTC day, and a day's events count when that day's midnight UTC lies
        in the closed interval ``[start_date, end_date]``. So ``start=end=2026-01-05``
        returns exactly 5 January, ``end_date=2026-01-05T12:00:00Z`` still includes
        5 January, and ``start_date=2026-01-05T00:00:01Z`` excludes it. A missing bound is
        open. ``start_date`` after ``end_date`` is a 400 (the document's own example).

        ``campaign_id`` omitted or empty: all the workspace's campaigns, summed per
        (step, variant). Only (step, variant) pairs with recorded events in range appear
        (a never-sent variant has no row). Rows come in reverse first-recorded order,
        deliberately unsorted, so the product has to sort them itself.
        """
        args = request.args
        campaign_id = args.get("campaign_id") or None
        try:
            start = _parse_instant(args.get("start_date"), "start_date")
            end = _parse_instant(args.get("end_date"), "end_date")
            include = _parse_bool(
                args.get("include_opportunities_count"), "include_opportunities_count"
            )
        except _BadRequest as exc:
            return _error(400, str(exc))
        if start is not None and end is not None and start > end:
            return _error(400, "Start Date must be earlier than End Date")
        if campaign_id is not None and campaign_id not in workspace._campaigns:
            return _error(404, "Campaign not found")
        rows = workspace._step_rows(campaign_id, start, end, include)
        return _json_response(200, rows)

    def _campaign_overview(self, request: Request, workspace: Workspace) -> Response:
        """``GET /campaigns/analytics`` -> bare JSON array, one object per campaign.

        ``id`` and/or ``ids`` (repeated) select campaigns; neither means every campaign of
        the workspace. Our choices where the document is silent: an id the workspace does
        not have is left out (no 404), a campaign with no events in range gets a row of
        zeros, and dates filter as in the steps endpoint. ``leads_count`` is left out when
        ``exclude_total_leads_count=true``, as the document says.
        """
        args = request.args
        wanted = [v for v in [args.get("id"), *args.getlist("ids")] if v]
        try:
            start = _parse_instant(args.get("start_date"), "start_date")
            end = _parse_instant(args.get("end_date"), "end_date")
            exclude_leads = _parse_bool(
                args.get("exclude_total_leads_count"), "exclude_total_leads_count"
            )
        except _BadRequest as exc:
            return _error(400, str(exc))
        if start is not None and end is not None and start > end:
            return _error(400, "Start Date must be earlier than End Date")
        rows = workspace._overview_rows(wanted or None, start, end, not exclude_leads)
        return _json_response(200, rows)

    def _list_campaigns(self, request: Request, workspace: Workspace) -> Response:
        """``GET /campaigns`` -> ``{"items": [...], "next_starting_after"?: id}``.

        Keyset pagination ordered by id (string order): ``starting_after`` returns the
        campaigns whose id sorts after it, so a deleted cursor still works as in a real
        keyset API. ``next_starting_after`` (the page's last id) is omitted on the last
        page; the schema types it as a non-null string, so we never send null.
        """
        try:
            limit = _parse_limit(request.args.get("limit"))
        except _BadRequest as exc:
            return _error(400, str(exc))
        cursor = request.args.get("starting_after") or None
        search = (request.args.get("search") or "").casefold()
        matching = [
            campaign
            for cid, campaign in sorted(workspace._campaigns.items())
            if (cursor is None or cid > cursor) and search in campaign.name.casefold()
        ]
        page = matching[:limit]
        payload: dict[str, Any] = {"items": [campaign.to_json() for campaign in page]}
        if len(matching) > limit:
            payload["next_starting_after"] = page[-1].id
        return _json_response(200, payload)

    def _list_subsequences(self, request: Request, workspace: Workspace) -> Response:
        """``GET /subsequences`` -> ``{"items", "next_starting_after"?}``, paged by id as
        ``GET /campaigns``; ``parent_campaign`` filters (an unknown one: no items)."""
        try:
            limit = _parse_limit(request.args.get("limit"))
        except _BadRequest as exc:
            return _error(400, str(exc))
        cursor = request.args.get("starting_after") or None
        parent = request.args.get("parent_campaign") or None
        matching = [
            sub
            for sid, sub in sorted(workspace._subsequences.items())
            if (cursor is None or sid > cursor) and (parent is None or sub.parent == parent)
        ]
        page = matching[:limit]
        payload: dict[str, Any] = {"items": [sub.to_json() for sub in page]}
        if len(matching) > limit:
            payload["next_starting_after"] = page[-1].id
        return _json_response(200, payload)

    def _subsequence_steps(
        self, subsequence_id: str, request: Request, workspace: Workspace
    ) -> Response:
        """``GET /subsequences/{id}/analytics/steps`` -> bare array, as the campaign steps.

        The document: both bounds inclusive, timestamps "normalized to their UTC calendar
        date"; so unlike the campaign endpoint, ``start_date=…T00:00:01Z`` keeps that day.
        """
        try:
            start = _parse_instant(request.args.get("start_date"), "start_date")
            end = _parse_instant(request.args.get("end_date"), "end_date")
        except _BadRequest as exc:
            return _error(400, str(exc))
        first = start.astimezone(dt.UTC).date() if start else None
        last = end.astimezone(dt.UTC).date() if end else None
        if first is not None and last is not None and first > last:
            return _error(400, "Start Date must be earlier than End Date")
        if subsequence_id not in workspace._subsequences:
            return _error(404, "Subsequence not found")
        return _json_response(200, workspace._subsequence_rows(subsequence_id, first, last))

    def _get_campaign(self, campaign_id: str, workspace: Workspace) -> Response:
        campaign = workspace._campaigns.get(campaign_id)
        if campaign is None:
            return _error(404, "Campaign not found")
        return _json_response(200, campaign.to_json())
