"""What every command that runs the service sets up: logging and the runtime."""

from __future__ import annotations

import gc
import logging
from typing import TYPE_CHECKING

from sheets_sync.config import Settings

if TYPE_CHECKING:
    from sheets_sync.jobs.runtime import Runtime


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Alembic narrates every plugin it loads on each start; only its problems matter here.
    logging.getLogger("alembic").setLevel(logging.WARNING)


# A refresh builds its one write as 10,000-100,000 small dicts and lists that all live
# until the write is sent. With Python's default thresholds (a collection every 700 new
# objects) the cyclic collector walks them, and every long-lived object of the process,
# again and again: measured, a third of a worker's CPU per 100-row refresh
# (benchmarks/worker_cpu.py). Nothing a refresh builds is a reference cycle, so
# collecting once per ~50,000 new objects loses nothing but that work.
GC_THRESHOLDS = (50_000, 20, 20)


def settle_garbage_collector() -> None:
    """Call once started: what the process has loaded so far (modules, the runtime, its
    engine) lives as long as the process, so it is frozen out of the collector's sight,
    and collections come at ``GC_THRESHOLDS``."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def make_runtime(settings: Settings, *, migrate: bool = False) -> Runtime:
    # Imported on use: ``sheets-sync --help`` should not load the database and HTTP stack.
    from sheets_sync.jobs.runtime import build_runtime

    if migrate:
        # Alembic only when asked: it is a sixth of a worker's start-up imports.
        from sheets_sync.store.migrate import upgrade

        upgrade(settings.resolved_database_url)
    return build_runtime(settings)
