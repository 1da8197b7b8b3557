"""Signals: the app's outward API for events. Our own code calls services directly."""

from django.dispatch import Signal

# Sent when an execution starts running.
# kwargs: execution (Execution), schedule (Schedule | None)
execution_started = Signal()

# Sent when an execution reaches a final status (succeeded, failed, timed_out, skipped,
# missed, interrupted).
# kwargs: execution (Execution), schedule (Schedule | None), status (str)
execution_finished = Signal()

# Sent when the scheduler process becomes the leader or loses the lease.
# kwargs: holder (str), leader (bool)
leadership_changed = Signal()
