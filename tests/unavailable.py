"""What a test does when something it needs (PostgreSQL, Chromium) is missing."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(reason: str) -> NoReturn:
    """Skip with ``reason`` (which says how to provide what is missing), except in CI
    (``CI=true``), where ``.ci/run`` provides everything: a skip there would prove nothing,
    so the test fails instead."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: this test must run)", pytrace=False)
    pytest.skip(reason)
