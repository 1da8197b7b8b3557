"""Change notification: wake the scheduler when schedules change, before its next poll.

Polling every ``SCHEDULING_SYNC_INTERVAL`` finds every change by itself; on PostgreSQL the
scheduler also listens on the channel ``scheduling_changes``, so a change reaches the job store
in milliseconds instead of up to one interval later. Triggers installed by migration
``0004`` send the notifications, from the database itself, so every writer is covered (admin,
API, CLI, import, a plain ``QuerySet.update()`` or SQL): a schedule inserted or deleted, a
schedule whose ``updated_at`` moved (the scheduler's own state updates leave it alone), and a
manual run queued. PostgreSQL delivers them at commit and folds duplicates within a
transaction.

A lost listener connection (server restart, terminated backend) is reopened with back-off;
meanwhile polling carries on, so nothing is missed, only later.

SQLite has no notifications; ``CommitWatch`` notices that another connection committed, which
is almost as good for the cost of a pragma.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.db import connection

logger = logging.getLogger("scheduling.notify")

CHANNEL = "scheduling_changes"

# The triggers that notify on this channel are installed by migration 0004 (PostgreSQL only).


class ChangeListener:
    """A thread that sets ``event`` whenever the database notifies a change.

    Only on PostgreSQL (``available()``); it holds a connection of its own, outside Django's.
    """

    def __init__(self, event: threading.Event, *, stopping: threading.Event) -> None:
        self.event = event
        self.stopping = stopping
        self.thread: threading.Thread | None = None
        self.connected = threading.Event()
        self._conn: Any = None

    @staticmethod
    def available() -> bool:
        """PostgreSQL through psycopg 3 (3.2+: ``notifies(timeout=...)``)."""
        # ``Database`` is the DB-API module of the backend (not on the base class).
        driver: Any = getattr(connection, "Database", None)
        if connection.vendor != "postgresql" or getattr(driver, "__name__", "") != "psycopg":
            return False
        major, minor = (int(part) for part in driver.__version__.split(".")[:2])
        return (major, minor) >= (3, 2)

    def start(self) -> None:
        self._params = connection.get_connection_params()
        self.thread = threading.Thread(target=self._run, name="scheduling-listener", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(5)

    def _run(self) -> None:
        import psycopg

        backoff = 0.5
        failing = False
        while not self.stopping.is_set():
            try:
                with psycopg.connect(**self._params, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    if failing:
                        logger.info("Listening for schedule changes again.")
                    failing, backoff = False, 0.5
                    self.connected.set()
                    # Changes made while the listener was away are found by the next poll.
                    self.event.set()
                    while not self.stopping.is_set():
                        for _notify in conn.notifies(timeout=0.5, stop_after=1):
                            self.event.set()
            except psycopg.Error as exc:
                self.connected.clear()
                if not failing:
                    logger.warning(
                        "Listening for schedule changes failed (%s); polling every sync "
                        "interval until the database is back.",
                        exc,
                    )
                failing = True
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 10.0)
        self.connected.clear()


class CommitWatch:
    """SQLite: notice commits made by other connections between two polls.

    ``PRAGMA data_version``, read on one connection, changes whenever another connection (of
    this process or another) has committed to the database since that connection last read it.
    Reading it takes microseconds and no disk access. The scheduler reads it every ``POLL``
    seconds and runs an incremental pass when it moved, so a change reaches the job store in
    about 0.1 s instead of up to one sync interval. Commits that are not schedule changes
    (executions being recorded) cost a pass that finds nothing: two small queries.
    """

    POLL = 0.1

    def __init__(self) -> None:
        self._version: int | None = None
        self._connection: Any = None

    @staticmethod
    def available() -> bool:
        return connection.vendor == "sqlite"

    def committed(self) -> bool:
        """Whether another connection committed since the last call (on this connection)."""
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA data_version")
            (version,) = cursor.fetchone()
        # The value is per connection: a reopened connection starts a new count. (The old one
        # is held, closed, only so that a new one cannot take its identity.)
        current = connection.connection
        moved = self._connection is current and version != self._version
        self._version, self._connection = version, current
        return moved
