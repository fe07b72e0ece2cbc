"""What every command that runs the service sets up: logging and the runtime."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sheets_sync.config import Settings

if TYPE_CHECKING:
    from sheets_sync.jobs.runtime import Runtime


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Alembic narrates every plugin it loads on each start; only its problems matter here.
    logging.getLogger("alembic").setLevel(logging.WARNING)


def make_runtime(settings: Settings, *, migrate: bool = False) -> Runtime:
    # Imported on use: ``sheets-sync --help`` should not load the database and HTTP stack.
    from sheets_sync.jobs.runtime import build_runtime
    from sheets_sync.store.migrate import upgrade

    if migrate:
        upgrade(settings.resolved_database_url)
    return build_runtime(settings)
