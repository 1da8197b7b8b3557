"""Database outages: log each once when it starts and once when it is over."""

from __future__ import annotations

import logging
import threading
import time

from django.db import connection

logger = logging.getLogger("scheduling.jobstore")


class OutageLog:
    """Log a database outage once when it starts and once when it is over.

    While a SQLite database is locked, reads may still succeed between failing writes; the
    outage is over only after ``quiet`` seconds without a failure, not at the first success.
    """

    def __init__(self, log: logging.Logger, quiet: float = 2.0) -> None:
        self.log = log
        self.quiet = quiet
        self.since: float | None = None
        self.last_failure = 0.0
        self._lock = threading.Lock()

    def failed(self, where: str, exc: BaseException) -> None:
        with self._lock:
            self.last_failure = time.monotonic()
            if self.since is None:
                self.since = self.last_failure
                self.log.error("Database unavailable (%s: %s); retrying.", where, exc)

    def ok(self) -> None:
        if self.since is None:
            return
        with self._lock:
            now = time.monotonic()
            if self.since is not None and now - self.last_failure >= self.quiet:
                self.log.warning(
                    "Database available again after %.1f s.", self.last_failure - self.since
                )
                self.since = None


outage = OutageLog(logger)


def reset_connection() -> None:
    # A broken connection stays broken; drop it so the next query opens a new one.
    if connection.in_atomic_block:
        return  # the caller's transaction owns the connection and will roll back
    try:
        connection.close()
    except Exception:  # closing an already-broken connection may itself fail
        logger.debug("closing a broken connection failed", exc_info=True)
