"""The scheduler: ticks, the scheduling loop and backfills."""
