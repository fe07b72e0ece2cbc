"""Sending one e-mail through ``SHEETS_SYNC_SMTP_URL``: failure alerts and reset links.

``smtp://[user:password@]host[:port]`` (``?starttls=true`` to upgrade), or
``smtps://…`` for implicit TLS. Unset = no e-mails.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

from sheets_sync.config import Settings
from sheets_sync.errors import ConfigurationError

SMTP_TIMEOUT = 10.0


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


def deliver(msg: EmailMessage, settings: Settings) -> None:
    """Send ``msg``; raises ``OSError``/``smtplib.SMTPException``/``ConfigurationError``."""
    if not settings.smtp_url:
        raise ConfigurationError("SHEETS_SYNC_SMTP_URL is not set: e-mail is off.")
    target = parse_smtp_url(settings.smtp_url)
    smtp: smtplib.SMTP
    if target.tls:
        smtp = smtplib.SMTP_SSL(
            target.host, target.port, timeout=SMTP_TIMEOUT, context=ssl.create_default_context()
        )
    else:
        smtp = smtplib.SMTP(target.host, target.port, timeout=SMTP_TIMEOUT)
    with smtp:
        if target.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if target.username:
            smtp.login(target.username, target.password or "")
        smtp.send_message(msg)


def reset_message(to: str, link: str, settings: Settings, *, hours: int = 1) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = settings.smtp_from
    msg["To"] = to
    msg["Subject"] = "sheets-sync: reset your password"
    msg.set_content(
        "Someone (hopefully you) asked to reset the password of your sheets-sync account.\n\n"
        f"Choose a new password here (the link works once, for {hours} hour"
        f"{'s' if hours != 1 else ''}):\n{link}\n\n"
        "Setting a new password signs you out everywhere. If you did not ask for this, "
        "ignore this e-mail: your password stays as it is.\n"
    )
    return msg
