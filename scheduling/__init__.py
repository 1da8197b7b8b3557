"""Admin-managed, tenant-scoped schedules fired exactly once by APScheduler."""
