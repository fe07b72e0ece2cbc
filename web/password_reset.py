"""E-mailed password-reset links, sent off the request thread.

The forgot-password page answers the same words, at the same speed, whether or not the
address has an account: looking the user up, making the token and talking to the SMTP
server all happen on a background thread, so neither the answer nor its timing says
which addresses are registered.
"""

from __future__ import annotations

import logging
import smtplib
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait

from sqlalchemy.orm import Session, sessionmaker

from sheets_sync import store
from sheets_sync.config import Settings
from sheets_sync.errors import ConfigurationError
from sheets_sync.jobs.mail import deliver, reset_message
from sheets_sync.store.db import session_scope
from sheets_sync.store.users import RESET_TOKEN_LIFETIME

log = logging.getLogger("sheets_sync.password_reset")


def reset_mail_enabled(settings: Settings) -> bool:
    # The link must point at the address people really use: never built from the
    # request's Host header, which whoever asks for the reset controls.
    return bool(settings.smtp_url and settings.public_url)


class ResetMailer:
    def __init__(self, settings: Settings, session_factory: sessionmaker[Session]) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="reset-mail")
        self._pending: set[Future[bool]] = set()
        self._lock = threading.Lock()

    def request(self, email: str) -> None:
        """Send a reset link to ``email`` if it has an account (on a background thread)."""
        future = self._pool.submit(self._send, email)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[bool]) -> None:
        with self._lock:
            self._pending.discard(future)

    def drain(self, timeout: float = 30.0) -> None:
        """Wait for the e-mails asked for so far (tests, shutdown)."""
        with self._lock:
            pending = set(self._pending)
        wait(pending, timeout=timeout)

    def _send(self, email: str) -> bool:
        with session_scope(self.session_factory, write=True) as s:
            user = store.get_user_by_email(s, email)
            if user is None:
                return False
            token = store.create_reset_token(s, user)
            to, user_id = user.email, user.id
        base = (self.settings.public_url or "").rstrip("/")
        link = f"{base}/reset-password/{token}"
        hours = int(RESET_TOKEN_LIFETIME.total_seconds() // 3600)
        try:
            deliver(reset_message(to, link, self.settings, hours=hours), self.settings)
        except (OSError, smtplib.SMTPException, ConfigurationError) as exc:
            log.warning("reset e-mail not sent user_id=%s error=%s", user_id, type(exc).__name__)
            return False
        log.info("reset e-mail sent user_id=%s", user_id)
        return True
