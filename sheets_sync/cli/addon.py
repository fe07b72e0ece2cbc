"""``sheets-sync addon deployment``: print the Sheets add-on's deployment resource."""

from __future__ import annotations

import argparse
import json

from sheets_sync.addon_deployment import base_url_of, deployment_resource
from sheets_sync.config import Settings
from sheets_sync.errors import InvalidInput

LOCAL_BASE_URL = "http://127.0.0.1:8000"


def _cmd_deployment(args: argparse.Namespace, settings: Settings) -> int:
    base = args.base_url or settings.public_url or LOCAL_BASE_URL
    try:
        base = base_url_of(base)
    except ValueError as exc:
        raise InvalidInput(f"--base-url: {exc}") from None
    print(json.dumps(deployment_resource(base), indent=2))
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    addon = sub.add_parser("addon", help="the Google Sheets add-on").add_subparsers(
        dest="addon_command", required=True
    )
    p = addon.add_parser(
        "deployment",
        help="print the deployment resource for gcloud workspace-add-ons deployments create",
    )
    p.add_argument(
        "--base-url",
        help="the https address Google reaches the app at (default SHEETS_SYNC_PUBLIC_URL)",
    )
    p.set_defaults(func=_cmd_deployment)
