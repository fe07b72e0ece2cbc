"""Tell a connection's owner when scheduled refreshes start failing, and when they recover.

One e-mail when a failure streak starts and one when it ends, never one per failed run:
``connections.failure_notified_at`` records that the owner was told about the current
streak (see ``sync._record_failure``). The e-mail carries the run's error message, which
is written for people and never contains a secret; as a second line of defence the
connection's Instantly key is redacted from anything sent.

``SHEETS_SYNC_SMTP_URL``: ``smtp://[user:password@]host[:port]`` (``?starttls=true`` to
upgrade), or ``smtps://…`` for implicit TLS. Unset = no e-mails.
"""

from __future__ import annotations

import logging
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage

from sheets_sync.config import Settings
from sheets_sync.errors import ConfigurationError, scrub
from sheets_sync.jobs.mail import deliver
from sheets_sync.jobs.mail import parse_smtp_url as parse_smtp_url

log = logging.getLogger("sheets_sync.alerts")


@dataclass(frozen=True)
class Alert:
    to: str
    connection_id: int
    connection_name: str
    spreadsheet_url: str
    run_id: int
    error_message: str | None = None  # None: recovery


def compose(alert: Alert, settings: Settings, *, redact: tuple[str, ...] = ()) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = settings.smtp_from
    msg["To"] = alert.to
    page = f"{settings.public_url.rstrip('/')}/" if settings.public_url else None
    if alert.error_message is not None:
        msg["Subject"] = f"sheets-sync: refreshing \u201c{alert.connection_name}\u201d failed"
        lines = [
            f"The scheduled refresh of \u201c{alert.connection_name}\u201d failed "
            f"(run {alert.run_id}). The sheet still shows the numbers of the last "
            "successful refresh.",
            "",
            f"What happened: {alert.error_message}",
            "",
            "sheets-sync keeps trying at the next scheduled time; after 3 failures in a row "
            "that need your action, the schedule pauses until you resume it. You will get "
            "one more e-mail when refreshing works again, not one per failed attempt.",
        ]
    else:
        msg["Subject"] = f"sheets-sync: \u201c{alert.connection_name}\u201d is refreshing again"
        lines = [
            f"\u201c{alert.connection_name}\u201d refreshed successfully again "
            f"(run {alert.run_id}). The sheet is up to date.",
        ]
    lines += ["", f"Sheet: {alert.spreadsheet_url}"]
    if page:
        lines.append(f"Connections: {page}")
    msg.set_content(scrub("\n".join(lines) + "\n", redact))
    msg.replace_header("Subject", scrub(str(msg["Subject"]), redact))
    return msg


def send(alert: Alert, settings: Settings, *, redact: tuple[str, ...] = ()) -> bool:
    """Send one alert; False (logged, never raised) when SMTP is off or fails."""
    if not settings.smtp_url:
        return False
    kind = "failure" if alert.error_message is not None else "recovery"
    try:
        deliver(compose(alert, settings, redact=redact), settings)
    except (OSError, smtplib.SMTPException, ConfigurationError) as exc:
        log.warning(
            "alert not sent kind=%s connection_id=%s run_id=%s error=%s",
            kind, alert.connection_id, alert.run_id, type(exc).__name__,
        )
        return False
    log.info(
        "alert sent kind=%s connection_id=%s run_id=%s", kind, alert.connection_id, alert.run_id
    )
    return True
