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
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

from sheets_sync.config import Settings
from sheets_sync.errors import ConfigurationError, scrub

log = logging.getLogger("sheets_sync.alerts")

SMTP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Alert:
    to: str
    connection_id: int
    connection_name: str
    spreadsheet_url: str
    run_id: int
    error_message: str | None = None  # None: recovery


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    tls: bool
    starttls: bool
    username: str | None
    password: str | None


def parse_smtp_url(url: str) -> SmtpTarget:
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigurationError(
            "SHEETS_SYNC_SMTP_URL must look like smtp://host:25 or smtps://user:pass@host:465"
        )
    query = parse_qs(parts.query)
    tls = parts.scheme == "smtps"
    return SmtpTarget(
        host=parts.hostname,
        port=parts.port or (465 if tls else 25),
        tls=tls,
        starttls=(query.get("starttls", ["false"])[0].lower() in ("1", "true", "yes")),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


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
        target = parse_smtp_url(settings.smtp_url)
        msg = compose(alert, settings, redact=redact)
        smtp: smtplib.SMTP
        if target.tls:
            smtp = smtplib.SMTP_SSL(
                target.host, target.port, timeout=SMTP_TIMEOUT,
                context=ssl.create_default_context(),
            )
        else:
            smtp = smtplib.SMTP(target.host, target.port, timeout=SMTP_TIMEOUT)
        with smtp:
            if target.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if target.username:
                smtp.login(target.username, target.password or "")
            smtp.send_message(msg)
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
