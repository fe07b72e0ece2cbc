"""Transactions and locks: on SQLite, reads never wait for a writer and read-then-write
units never fail with "database is locked"; on both dialects, SQL parameters never show
up in exception text.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from sheets_sync.db import session_scope
from sheets_sync.models import User

# --- parameters stay out of error text -------------------------------------------------


def test_sql_parameters_never_show_in_exception_text(
    db_engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    secret_hash = "scrypt:32768:8:1$NotARealSalt$0123456789abcdef-secret-hash"
    with session_scope(session_factory) as s:
        s.add(User(email="ann@example.com", password_hash="first"))
    with pytest.raises(IntegrityError) as duplicate:
        with session_scope(session_factory) as s:
            s.add(User(email="ann@example.com", password_hash=secret_hash))
    assert secret_hash not in str(duplicate.value)
    assert "hidden due to hide_parameters" in str(duplicate.value)

    with pytest.raises(DBAPIError) as failing:
        with db_engine.connect() as conn:
            conn.execute(
                text("SELECT * FROM no_such_table WHERE secret = :secret"),
                {"secret": secret_hash},
            )
    assert secret_hash not in str(failing.value)
    assert secret_hash not in repr(failing.value)
