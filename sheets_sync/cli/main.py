"""The ``sheets-sync`` command.

Every subcommand is a thin shell over the engine; errors a person can act on are printed
as one line on stderr with a non-zero exit, never as a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from datetime import date
from typing import TYPE_CHECKING

from sheets_sync.config import Settings, load_settings
from sheets_sync.connection_rules import DEFAULT_WORKSHEET_TITLE, check_fields
from sheets_sync.errors import ConfigurationError, InvalidInput, SyncError

if TYPE_CHECKING:
    # For annotations only: the commands import the clients when they run.
    from sheets_sync.pipeline.instantly import InstantlyClient
    from sheets_sync.pipeline.sheets_writer import SheetsClient


def _client_factories(
    settings: Settings,
) -> tuple[Callable[[str], InstantlyClient], Callable[[], SheetsClient]]:
    from sheets_sync.pipeline.instantly import InstantlyClient
    from sheets_sync.pipeline.retry import RetryPolicy
    from sheets_sync.pipeline.sheets_writer import make_sheets_client

    retry = RetryPolicy(max_total_wait=settings.retry_max_wait)

    def instantly(api_key: str) -> InstantlyClient:
        return InstantlyClient(
            api_key,
            base_url=settings.instantly_api_url,
            timeout=settings.http_timeout,
            retry=retry,
        )

    def sheets() -> SheetsClient:
        return make_sheets_client(
            settings.google_application_credentials,
            api_url=settings.sheets_api_url,
            timeout=settings.http_timeout,
            retry=retry,
        )

    return instantly, sheets


def _adhoc_sync(args: argparse.Namespace, settings: Settings) -> int:
    from sheets_sync.links import parse_spreadsheet_url
    from sheets_sync.pipeline.refresh import SyncSpec, run_sync

    api_key = os.environ.get("INSTANTLY_API_KEY", "")
    if not api_key.strip():
        raise InvalidInput("Set INSTANTLY_API_KEY to the Instantly API key to read from.")
    if (args.start is None) != (args.end is None):
        raise InvalidInput("Give both --start and --end, or neither (all time).")
    # The same rules as a stored connection, so a one-off sync is refused for the same
    # reasons and with the same words as the form and the API.
    fields = check_fields(
        {
            "instantly_api_key": api_key, "spreadsheet_url": args.spreadsheet,
            "worksheet_title": args.worksheet, "campaign_ids": args.campaign,
            "date_range": {"start": str(args.start), "end": str(args.end)} if args.start else None,
        },
        creating=True,
    )
    spreadsheet_id, _gid = parse_spreadsheet_url(fields["spreadsheet_url"])
    spec = SyncSpec(
        spreadsheet_id=spreadsheet_id,
        worksheet_title=fields["worksheet_title"],
        campaign_ids=tuple(fields["campaign_ids"]),
        date_range=fields["date_range"],
        include_opportunities=args.opportunities,
    )
    make_instantly, make_sheets = _client_factories(settings)
    outcome = run_sync(spec, instantly=make_instantly(api_key), sheets=make_sheets())
    print(
        f"Wrote {outcome.rows_written} rows to tab {outcome.sheet_title!r}"
        f"{' (created)' if outcome.tab_created else ''}: {outcome.sheet_url}"
    )
    print(
        f"HTTP calls: {outcome.instantly_calls} to Instantly, "
        f"{outcome.sheets_calls} to Google Sheets"
    )
    if outcome.totals is not None:
        print(outcome.totals.text)
    return 0


def _stored_sync(args: argparse.Namespace, settings: Settings) -> int:
    from sheets_sync.cli.process import make_runtime
    from sheets_sync.jobs.sync import run_connection_now

    result = run_connection_now(make_runtime(settings, migrate=True), int(args.connection_id))
    print(result.summary)
    return 0 if result.ok else 1


def _cmd_sync(args: argparse.Namespace, settings: Settings) -> int:
    if args.spreadsheet:
        if args.connection_id:
            raise InvalidInput("Give either CONNECTION_ID or --spreadsheet, not both.")
        return _adhoc_sync(args, settings)
    if not args.connection_id:
        raise InvalidInput("Give a CONNECTION_ID, or --spreadsheet URL for a one-off sync.")
    if not args.connection_id.isdigit():
        raise InvalidInput("CONNECTION_ID is the number shown on the connection's page.")
    return _stored_sync(args, settings)


def _iso_day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError("use YYYY-MM-DD") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sheets-sync",
        description="Keep Instantly campaign step analytics in a Google Sheets tab.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("sync", help="run one sync in the foreground")
    p.add_argument("connection_id", nargs="?", help="a stored connection's id")
    p.add_argument("--spreadsheet", help="one-off sync to this Google Sheets link")
    p.add_argument("--worksheet", default=DEFAULT_WORKSHEET_TITLE, help="tab title")
    p.add_argument("--campaign", action="append", help="campaign id (repeatable); none = all")
    p.add_argument("--start", type=_iso_day, help="first day, YYYY-MM-DD (UTC)")
    p.add_argument("--end", type=_iso_day, help="last day, YYYY-MM-DD (UTC, inclusive)")
    p.add_argument("--opportunities", action="store_true", help="include opportunity counts")
    p.set_defaults(func=_cmd_sync)

    from sheets_sync.cli import admin as cli_admin

    cli_admin.add_commands(sub)
    from sheets_sync.cli import addon as cli_addon

    cli_addon.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        return int(args.func(args, settings) or 0)
    except SyncError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        # 2: the command or its configuration must change; 1: this sync failed.
        return 2 if isinstance(exc, (ConfigurationError, InvalidInput)) else 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
