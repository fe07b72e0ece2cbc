"""Before a connection is saved: does Instantly accept the key, and are the campaigns in
its workspace? Also finds the campaigns' names, so the page shows names at once.

One call per 100 campaigns of the workspace, stopping as soon as every wanted id was
seen (one call when none are wanted: that is enough to judge the key).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sheets_sync.errors import (
    InstantlyKeyRejected,
    InstantlyPaymentRequired,
    SyncError,
)
from sheets_sync.pipeline.instantly import InstantlyClient


@dataclass(frozen=True)
class KeyCheck:
    # False: Instantly refused the key (not worth saving). None: not known (Instantly
    # could not be asked), so the key is saved with ``warning``.
    key_accepted: bool | None
    key_error: str | None = None
    warning: str | None = None
    unknown_ids: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # wanted id -> campaign name


def unknown_campaigns_message(unknown: list[str]) -> str:
    shown = ", ".join(unknown[:5]) + (" …" if len(unknown) > 5 else "")
    noun = "this campaign id" if len(unknown) == 1 else "these campaign ids"
    return (
        f"The Instantly workspace of this key has no campaign with {noun}: {shown}. "
        "Press Test key to pick from its campaigns."
    )


def unchecked_warning(reason: str) -> str:
    return (
        f"Saved, but Instantly could not be asked whether the key and campaigns are right "
        f"({reason}). Press Refresh when Instantly answers again: it will say if anything "
        "is wrong."
    )


def check_key_and_campaigns(client: InstantlyClient, campaign_ids: Sequence[str]) -> KeyCheck:
    wanted = list(dict.fromkeys(campaign_ids))
    names: dict[str, str] = {}
    try:
        for campaign in client.iter_campaigns():
            if campaign.id in wanted:
                names[campaign.id] = campaign.name
            if len(names) == len(wanted):
                break
    except InstantlyKeyRejected as exc:
        return KeyCheck(False, key_error=exc.message)
    except InstantlyPaymentRequired as exc:
        # The key is right; the workspace must pay before a refresh works. Saving it
        # lets the owner upgrade and press Refresh without typing everything again.
        return KeyCheck(True, warning=f"Saved, but: {exc.message}")
    except SyncError as exc:
        # Unreachable, 5xx, timeout, 429, an answer we cannot read: not the key's fault.
        return KeyCheck(None, warning=unchecked_warning(_reason(exc)))
    return KeyCheck(True, unknown_ids=[c for c in wanted if c not in names], names=names)


def _reason(exc: SyncError) -> str:
    code = exc.code
    if code == "instantly_rate_limited":
        return "it asked us to slow down"
    if code == "instantly_malformed_response":
        return "its answer could not be read"
    return "it did not answer in time or had an error"
