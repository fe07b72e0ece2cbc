"""Google Sheets writer: gspread over a session we control.

gspread 6 sets no timeout and its back-off client retries forever, so this module gives
it a session with explicit timeouts, rewrites the API root when a local Sheets endpoint
is configured, and retries under ``retry.RetryPolicy``. A refresh of a tab whose id we
know is exactly one HTTP call: the ``batchUpdate`` that carries the whole tab.
"""

from __future__ import annotations

import copy
import json
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import google.auth.exceptions
import gspread
import requests
import urllib3
from google.auth.transport.requests import AuthorizedSession
from google.oauth2 import service_account
from gspread.exceptions import APIError
from gspread.urls import SPREADSHEET_BATCH_UPDATE_URL

from sheets_sync import USER_AGENT
from sheets_sync.config import DEFAULT_SHEETS_API_URL
from sheets_sync.errors import (
    GoogleApiDisabled,
    GoogleAuthUnavailable,
    GoogleCredentialsMissing,
    GoogleCredentialsRejected,
    SheetNotShared,
    SheetsQuotaExhausted,
    SheetsRequestRejected,
    SheetsUnavailable,
    SheetsWriteUnconfirmed,
    SpreadsheetFull,
    SpreadsheetNotFound,
    SyncError,
    scrub,
)
from sheets_sync.links import spreadsheet_link
from sheets_sync.pipeline import revision
from sheets_sync.pipeline.http_environment import keep_no_cookies, settle_environment
from sheets_sync.pipeline.request_body import batch_update_body
from sheets_sync.pipeline.retry import RetryPolicy, call_with_retry, parse_retry_after
from sheets_sync.pipeline.revision import Revision
from sheets_sync.pipeline.tcp_keepalive import probe_idle_connections

SCOPES = ("https://www.googleapis.com/auth/spreadsheets",)
_GOOGLE_ROOT = DEFAULT_SHEETS_API_URL
_METADATA_FIELDS = "sheets.properties(sheetId,title,index)"
# The one read of a steady-state refresh with features on: the managed tabs' ids and
# titles, our chart's id, and the cells' entered values (notes, keys, history dates).
_STATE_FIELDS = (
    "sheets(properties(sheetId,title),charts(chartId),"
    "developerMetadata(metadataId,metadataKey,metadataValue),"
    "data(startRow,startColumn,rowData(values(userEnteredValue))))"
)

# Problems with how sheets-sync itself is set up: the message says so, because the
# connection's owner can do nothing about them (and they never pause a schedule).
SETUP_PROBLEM = (
    "This is a problem with how sheets-sync is set up, not with this connection: whoever "
    "runs sheets-sync needs to fix it. Scheduled refreshes carry on and will work again "
    "once it is fixed."
)
CREDENTIALS_MISSING = (
    "Google credentials are not configured. Set GOOGLE_APPLICATION_CREDENTIALS to the path "
    "of a service-account JSON key file, then share each sheet with that service account. "
    + SETUP_PROBLEM
)
CREDENTIALS_REJECTED = (
    "Google did not accept the service-account key in GOOGLE_APPLICATION_CREDENTIALS (it "
    "may have been deleted or disabled): create a new key for the service account. "
    + SETUP_PROBLEM
)
API_DISABLED = (
    "The Google Sheets API is not enabled in the service account's Google Cloud project: "
    "enable it in the Google Cloud console. " + SETUP_PROBLEM
)
GOOGLE_AUTH_FAILED = (
    "Google's sign-in service answered with an error. The refresh will be tried again "
    "shortly; the sheet was not changed."
)
GOOGLE_AUTH_UNREACHABLE = (
    "Google's sign-in service could not be reached. The refresh will be tried again "
    "shortly; the sheet was not changed."
)


class _RebasedSession(AuthorizedSession):
    """An AuthorizedSession that sends Sheets calls to another root (emulator, tests)."""

    def __init__(self, credentials: Any, api_root: str, counter: Callable[[], None]) -> None:
        super().__init__(credentials)
        self._api_root = api_root.rstrip("/")
        self._count = counter
        self.headers["User-Agent"] = USER_AGENT

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        if isinstance(url, bytes):
            # requests takes bytes URLs too and decodes them the same way (gspread sends str).
            url = url.decode("utf-8")
        if self._api_root != _GOOGLE_ROOT and url.startswith(_GOOGLE_ROOT):
            url = self._api_root + url[len(_GOOGLE_ROOT) :]
        self._count()
        return super().request(method, url, *args, **kwargs)


_credentials_lock = threading.Lock()
_credentials_cache: dict[tuple[str, float], service_account.Credentials] = {}


def load_credentials(path: Path | None) -> service_account.Credentials:
    """Service-account credentials, cached per file so the access token is reused."""
    if path is None:
        raise GoogleCredentialsMissing(CREDENTIALS_MISSING)
    try:
        stamp = path.stat().st_mtime
    except OSError:
        raise GoogleCredentialsMissing(
            f"GOOGLE_APPLICATION_CREDENTIALS points to {path}, which cannot be read. "
            + SETUP_PROBLEM
        ) from None
    key = (str(path.resolve()), stamp)
    with _credentials_lock:
        cached = _credentials_cache.get(key)
        if cached is not None:
            return cached
        try:
            info = json.loads(path.read_text())
            creds = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
        except (ValueError, KeyError) as exc:
            raise GoogleCredentialsMissing(
                f"GOOGLE_APPLICATION_CREDENTIALS ({path}) is not a service-account key file "
                f"({type(exc).__name__}). " + SETUP_PROBLEM
            ) from None
        _credentials_cache[key] = creds
        return creds


def service_account_email(path: Path | None) -> str | None:
    """The address users must share their sheet with, or None when not configured."""
    try:
        return load_credentials(path).service_account_email
    except SyncError:
        return None


@dataclass(frozen=True)
class TabWanted:
    """A managed tab to read: by stored id (title as a hint), else found by title."""

    name: str
    title: str
    sheet_id: int | None
    columns: str = ""  # A1 columns to read, e.g. "A:B"; "" for the whole tab


@dataclass
class TabState:
    sheet_id: int
    title: str
    charts: set[int]
    rows: list[list[dict[str, Any]]]  # entered values, from A1 (empty rows as [])
    revision: Revision | None = None  # the write guard's last revision (revision.py)


@dataclass
class TabsRead:
    tabs: dict[str, TabState | None]  # by TabWanted.name; None = no such tab
    taken_ids: set[int]  # every sheet id seen (to pick a free one); may be partial


def a1_range(title: str, columns: str = "") -> str:
    quoted = "'" + title.replace("'", "''") + "'"
    return f"{quoted}!{columns}" if columns else quoted


def _grid_rows(sheet: dict[str, Any]) -> list[list[dict[str, Any]]]:
    data = (sheet.get("data") or [{}])[0]
    start_row, start_col = int(data.get("startRow", 0)), int(data.get("startColumn", 0))
    rows: list[list[dict[str, Any]]] = [[] for _ in range(start_row)]
    for row in data.get("rowData", []):
        rows.append([{}] * start_col + list(row.get("values", [])))
    return rows


@dataclass(frozen=True)
class TabWrite:
    sheet_id: int
    title: str
    created: bool
    url: str


def new_sheet_id() -> int:
    # Google sheet ids are positive int32; a random one avoids colliding with 0, 1, 2…
    # that the UI hands out.
    return random.randint(10_000_000, 2_147_483_647)


class SheetsClient:
    def __init__(
        self,
        credentials: service_account.Credentials,
        *,
        api_url: str = DEFAULT_SHEETS_API_URL,
        timeout: tuple[float, float] = (5.0, 30.0),
        retry: RetryPolicy | None = None,
    ) -> None:
        self.calls = 0
        self._credentials = credentials
        self._session = _RebasedSession(credentials, api_url, self._count_call)
        # Cached and reused for refreshes of other customers' sheets (``Runtime``).
        keep_no_cookies(settle_environment(probe_idle_connections(self._session), api_url))
        self._client = gspread.Client(auth=credentials, session=self._session)
        self._client.set_timeout(timeout)
        self._retry = retry or RetryPolicy()

    def _count_call(self) -> None:
        self.calls += 1

    def sharing_connections(self) -> SheetsClient:
        """A client with its own call count over this one's session, credentials (and
        token) and kept-alive connections. The session counts for the newest such client
        only: one refresh at a time per session (``Runtime`` keeps one per thread)."""
        fresh = copy.copy(self)
        fresh.calls = 0
        self._session._count = fresh._count_call
        return fresh

    @property
    def service_account_email(self) -> str:
        return str(self._credentials.service_account_email)

    # -- reads --

    def sheet_properties(self, spreadsheet_id: str) -> list[dict[str, Any]]:
        """``[{sheetId, title, index}, …]`` of every tab: one metadata read."""
        meta = self._call(
            spreadsheet_id,
            lambda: self._client.http_client.fetch_sheet_metadata(
                spreadsheet_id, params={"fields": _METADATA_FIELDS}
            ),
        )
        return [s["properties"] for s in meta.get("sheets", [])]

    def read_tabs(self, spreadsheet_id: str, wanted: list[TabWanted]) -> TabsRead:
        """The managed tabs' cells and charts, in one read when every id is known.

        Steady state: one ``spreadsheets.get`` with a range per tab (by its last known
        title) and a field mask for entered values and chart ids. If a tab was renamed or
        deleted (the range does not parse, or names another tab), or a tab's id is not
        known yet (first sync), one metadata read finds the tabs by id, then by title, and
        a second read fetches the cells of those that exist (none on a first sync).
        """
        if wanted and all(w.sheet_id is not None for w in wanted):
            try:
                found = self._read_ranges(spreadsheet_id, wanted)
            except SheetsRequestRejected:
                found = None
            if found is not None and all(
                (state := found.get(w.name)) is not None and state.sheet_id == w.sheet_id
                for w in wanted
            ):
                return TabsRead(dict(found), {t.sheet_id for t in found.values() if t})
        tabs = self.sheet_properties(spreadsheet_id)
        taken = {int(t["sheetId"]) for t in tabs}
        located: list[TabWanted] = []
        for w in wanted:
            by_id = next((t for t in tabs if int(t["sheetId"]) == w.sheet_id), None)
            by_title = next(
                (t for t in tabs if t["title"].casefold() == w.title.casefold()), None
            )
            tab = by_id or by_title
            if tab is not None:
                located.append(TabWanted(w.name, tab["title"], int(tab["sheetId"]), w.columns))
        result: dict[str, TabState | None] = dict.fromkeys((w.name for w in wanted), None)
        if located:
            found = self._read_ranges(spreadsheet_id, located)
            for w in located:
                result[w.name] = found.get(w.name)
        return TabsRead(result, taken)

    def _read_ranges(
        self, spreadsheet_id: str, wanted: list[TabWanted]
    ) -> dict[str, TabState | None]:
        meta = self._call(
            spreadsheet_id,
            lambda: self._client.http_client.fetch_sheet_metadata(
                spreadsheet_id,
                params={
                    "ranges": [a1_range(w.title, w.columns) for w in wanted],
                    "fields": _STATE_FIELDS,
                },
            ),
        )
        sheets = meta.get("sheets", [])
        out: dict[str, TabState | None] = {}
        for w in wanted:
            sheet = next(
                (s for s in sheets if s["properties"]["title"].casefold() == w.title.casefold()),
                None,
            )
            if sheet is None:
                out[w.name] = None
                continue
            out[w.name] = TabState(
                sheet_id=int(sheet["properties"]["sheetId"]),
                title=sheet["properties"]["title"],
                charts={int(c["chartId"]) for c in sheet.get("charts", [])},
                rows=_grid_rows(sheet),
                revision=revision.current(sheet.get("developerMetadata", [])),
            )
        return out

    def check_access(self, spreadsheet_id: str) -> list[str]:
        """Tab titles, proving the service account can read the spreadsheet."""
        return [p["title"] for p in self.sheet_properties(spreadsheet_id)]

    # -- the write --

    def batch_update(
        self, spreadsheet_id: str, requests_: list[dict[str, Any]], *, readable: bool = False
    ) -> Any:
        """One atomic write. ``readable``: the caller just read the spreadsheet, so a 403
        means a Viewer share without asking again."""
        # Encoded here, once, rather than by requests on every send (see request_body).
        body = batch_update_body(requests_)
        url = SPREADSHEET_BATCH_UPDATE_URL % spreadsheet_id

        def send() -> Any:
            response = self._client.http_client.request(
                "post", url, data=body, headers={"Content-Type": "application/json"}
            )
            return response.json()

        return self._call(spreadsheet_id, send, write=True, readable=readable)

    def write_tab(
        self,
        spreadsheet_id: str,
        *,
        title: str,
        sheet_id: int | None,
        tab_requests: Callable[[int], list[dict[str, Any]]],
        add_sheet: Callable[[int, str], dict[str, Any]],
        before_write: Callable[[], None] = lambda: None,
        attempts: int = 3,
    ) -> TabWrite:
        """Write the managed tab (no read needed) in one atomic ``batchUpdate``.

        With a known ``sheet_id`` this is one call, and the batch only sets absolute
        cells, sizes and formats, so applying it twice gives the same tab. Otherwise one
        metadata read finds the tab by title (or a fresh id is chosen and ``addSheet``
        joins the same batch). A stored id whose tab was deleted fails the whole batch,
        so nothing was written: re-read, then find-or-create as on a first sync. After an
        unconfirmed write, the tabs are read again and the batch planned again (an
        ``addSheet`` that did apply is not sent twice).
        """
        tabs: list[dict[str, Any]] | None = None  # None: not read, trust the stored id
        unconfirmed: SheetsWriteUnconfirmed | None = None
        created_unconfirmed = False  # a lost attempt may have added the tab itself
        for _ in range(attempts):
            if tabs is None and sheet_id is not None:
                link = spreadsheet_link(spreadsheet_id, sheet_id)
                target, batch = TabWrite(sheet_id, title, False, link), tab_requests(sheet_id)
            else:
                tabs = tabs if tabs is not None else self.sheet_properties(spreadsheet_id)
                target, batch = self._find_or_create(
                    spreadsheet_id, tabs, title, sheet_id, tab_requests, add_sheet
                )
            before_write()
            try:
                self.batch_update(spreadsheet_id, batch)
            except SheetsWriteUnconfirmed as exc:
                unconfirmed, sheet_id = exc, target.sheet_id
                created_unconfirmed = created_unconfirmed or target.created
                tabs = self._reread_after(exc, spreadsheet_id)
                continue
            except SheetsRequestRejected:
                if tabs is not None or sheet_id is None:
                    raise
                # Google words a missing tab differently per request kind, so ask the
                # spreadsheet rather than parse the message: is our tab still there?
                tabs = self.sheet_properties(spreadsheet_id)
                if any(int(t["sheetId"]) == sheet_id for t in tabs):
                    raise
                continue
            if created_unconfirmed and not target.created:
                target = TabWrite(target.sheet_id, target.title, True, target.url)
            return target
        assert unconfirmed is not None  # noqa: S101 - only unconfirmed writes loop
        raise unconfirmed

    def _find_or_create(
        self,
        spreadsheet_id: str,
        tabs: list[dict[str, Any]],
        title: str,
        sheet_id: int | None,
        tab_requests: Callable[[int], list[dict[str, Any]]],
        add_sheet: Callable[[int, str], dict[str, Any]],
    ) -> tuple[TabWrite, list[dict[str, Any]]]:
        found = next((t for t in tabs if int(t["sheetId"]) == sheet_id), None) or next(
            (t for t in tabs if t["title"].casefold() == title.casefold()), None
        )
        if found is not None:
            found_id = int(found["sheetId"])
            link = spreadsheet_link(spreadsheet_id, found_id)
            return TabWrite(found_id, found["title"], False, link), tab_requests(found_id)
        taken = {int(t["sheetId"]) for t in tabs}
        new_id = new_sheet_id()
        while new_id in taken:
            new_id = new_sheet_id()
        link = spreadsheet_link(spreadsheet_id, new_id)
        return TabWrite(new_id, title, True, link), [
            add_sheet(new_id, title),
            *tab_requests(new_id),
        ]

    def _reread_after(
        self, unconfirmed: SheetsWriteUnconfirmed, spreadsheet_id: str
    ) -> list[dict[str, Any]]:
        """The tabs as they are now; if even that fails, the write's outcome stays unknown."""
        try:
            return self.sheet_properties(spreadsheet_id)
        except SyncError:
            raise unconfirmed from None

    # -- plumbing --

    def _call(
        self,
        spreadsheet_id: str,
        fn: Callable[[], Any],
        *,
        write: bool = False,
        readable: bool = False,
    ) -> Any:
        """Run one API call under the retry policy.

        A read is always safe to repeat. A write is repeated only when Google certainly
        did not apply it (429, a token-endpoint failure or a refused connection, all
        before the body reached the Sheets API); after any other failure it may have
        applied, so it raises ``SheetsWriteUnconfirmed`` at once and the caller re-reads
        before deciding what to send.
        """

        def once() -> Any:
            try:
                return fn()
            except APIError as exc:
                if write and exc.response.status_code >= 500:
                    raise _unconfirmed(f"HTTP {exc.response.status_code}") from None
                raise self._translate(exc, spreadsheet_id, write=write, readable=readable) from None
            except google.auth.exceptions.RefreshError as exc:
                # google-auth marks 5xx, 429 and OAuth "temporarily unavailable" answers
                # retryable. An answer that is no OAuth error at all (a proxy's HTML page, a
                # body without a token) is not Google judging the key either. The token is
                # fetched before the Sheets request is sent, so retrying is always safe.
                data = exc.args[1] if len(exc.args) > 1 else None
                if exc.retryable or not (isinstance(data, dict) and "error" in data):
                    raise GoogleAuthUnavailable(GOOGLE_AUTH_FAILED) from None
                raise GoogleCredentialsRejected(CREDENTIALS_REJECTED) from None
            except google.auth.exceptions.TransportError:
                raise GoogleAuthUnavailable(GOOGLE_AUTH_UNREACHABLE) from None
            except requests.RequestException as exc:
                if write and not _never_sent(exc):
                    what = "no answer in time" if isinstance(exc, requests.Timeout) else (
                        "the connection broke before Google answered"
                    )
                    raise _unconfirmed(what) from None
                if isinstance(exc, requests.Timeout):
                    raise SheetsUnavailable(
                        "Google Sheets did not answer in time. The refresh will be tried "
                        "again shortly; the sheet was not changed."
                    ) from None
                raise SheetsUnavailable(
                    "Google Sheets could not be reached. The refresh will be tried again "
                    "shortly; the sheet was not changed."
                ) from None

        return call_with_retry(once, self._retry)

    def _translate(
        self, exc: APIError, spreadsheet_id: str, *, write: bool = False, readable: bool = False
    ) -> SyncError:
        response = exc.response
        status = response.status_code
        error = exc.error if isinstance(exc.error, dict) else {}
        # Google's text is copied into messages we store and show: scrub it first.
        message = scrub(str(error.get("message", "")))
        if status == 403 and self._api_disabled(error, message):
            # Also a 403, but the operator's Google Cloud project is at fault, not the
            # sharing of this sheet: it must not pause anyone.
            return GoogleApiDisabled(API_DISABLED)
        if status == 403 and write and (readable or self._can_read(spreadsheet_id)):
            # Readable but not writable: shared as Viewer (one read, only on this failure).
            return SheetNotShared(
                f"The sheet is shared with {self.service_account_email} as Viewer: change it "
                "to Editor (Share button in Google Sheets), then refresh again. The sheet was "
                "not changed."
            )
        if status == 403:
            return SheetNotShared(
                f"The service account cannot open this spreadsheet. Share the sheet with "
                f"{self.service_account_email} as Editor (Share button in Google Sheets), "
                "then refresh again."
            )
        if status == 404:
            return SpreadsheetNotFound(
                "Google Sheets has no spreadsheet at this link. It may have been deleted, or "
                "the link is incomplete: paste the sheet's address again."
            )
        if status == 429:
            return SheetsQuotaExhausted(
                "Google Sheets' write quota is used up for this minute. The refresh will be "
                "tried again shortly; the sheet was not changed.",
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        if status >= 500:
            return SheetsUnavailable(
                f"Google Sheets had an internal error (HTTP {status}). The refresh will be "
                "tried again shortly; the sheet was not changed."
            )
        if status == 401:
            return GoogleCredentialsRejected(CREDENTIALS_REJECTED)
        if "above the limit of 10000000 cells" in message:
            return SpreadsheetFull(
                "The spreadsheet is full (Google allows 10 million cells). Delete unused tabs "
                "or use another spreadsheet; the sheet was not changed."
            )
        return SheetsRequestRejected(
            f"Google Sheets rejected the update: {message[:300] or f'HTTP {status}'}. "
            "The sheet was not changed."
        )

    def _can_read(self, spreadsheet_id: str) -> bool:
        try:
            self.sheet_properties(spreadsheet_id)
        except SyncError:
            return False
        return True

    @staticmethod
    def _api_disabled(error: dict[str, Any], message: str) -> bool:
        listed = [*(error.get("details") or []), *(error.get("errors") or [])]
        reasons = {str(d.get("reason", "")) for d in listed if isinstance(d, dict)}
        return bool(reasons & {"SERVICE_DISABLED", "accessNotConfigured"}) or (
            "has not been used in project" in message
        )


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the request certainly never reached Google (no connection was made)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError):
        reason = getattr(exc.args[0] if exc.args else None, "reason", None)
        return isinstance(reason, urllib3.exceptions.NewConnectionError)
    return False


def _unconfirmed(what: str) -> SheetsWriteUnconfirmed:
    return SheetsWriteUnconfirmed(
        f"Google Sheets did not confirm this refresh's update ({what}), and the sheet could "
        "not be checked afterwards, so whether the new numbers reached the sheet is "
        "unknown. Nothing is lost: the next refresh reads the sheet first and completes "
        "or corrects it."
    )


def make_sheets_client(
    credentials_path: Path | None,
    *,
    api_url: str = DEFAULT_SHEETS_API_URL,
    timeout: tuple[float, float] = (5.0, 30.0),
    retry: RetryPolicy | None = None,
) -> SheetsClient:
    return SheetsClient(
        load_credentials(credentials_path), api_url=api_url, timeout=timeout, retry=retry
    )
