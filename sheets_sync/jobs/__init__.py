"""Running syncs: one stored connection's sync, the scheduler, the workers, budgets and alerts."""
