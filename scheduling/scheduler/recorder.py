"""Group commit of the execution writes of the scheduler's thread executor.

A worker of the thread executor does not write the start and the outcome of its execution
itself: it sets them on the execution in memory and hands them to the recorder, whose one
writer thread commits everything handed over since its last flush in one transaction, then
logs each execution's line and sends ``execution_finished``. Why:

- Starting costs the worker no database round trip, so a burst of due executions starts
  almost as fast as the pool can take them (``bench/fire.py``).
- One thread writes: on SQLite, eight workers writing at once queue on its single write lock
  and sleep in its busy handler; here nobody waits for the lock.
- One commit per batch instead of three per execution; the alert and dependents probes run
  once per batch too (``alerts.needing_rules``, ``runner.with_dependents``).

The writes keep their conditions: a start only turns a ``queued`` row ``running``, an outcome
only lands on a row still active, so a timeout or an interruption that got there first wins and
the late outcome is logged as discarded, as without the recorder. A worker starts an execution
only while ``may_start()`` (the scheduler's lease) holds, so it never runs what a new leader may
already have taken over.

A batch is flushed once the executor's queue is empty (``busy()`` false) or its oldest entry is
``max_delay`` seconds old, whichever comes first, and at once on ``flush()``. Starting due work
comes first: while executions wait for a worker, the writer holds back (up to a second), as
writing a batch takes the interpreter from the workers. At 500 executions due at once, writing
every 50 ms instead made the last of them start a third later (``bench/fire.py``). The dispatcher
does not wait for it: its overlap checks leave out the executions that ``finished_unwritten()``
names (ended, their rows not written yet). If the process dies before a flush,
the rows stay ``queued`` or ``running`` under its claim, and the next leader marks them
``interrupted`` exactly as it does for executions that were running when it died.

Follow-ups that may deliver alerts or queue dependents (rare: a failure of a tenant with
failure rules, a success of a schedule with a firing alert, an upstream of a chain) run on a
second thread, so a slow webhook never holds up the writes.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.utils import translation

from .. import alerts, runner
from ..models import ACTIVE_STATUSES, Execution, ExecutionCounter, Status
from .outage import outage

logger = logging.getLogger("scheduling.recorder")

MAX_DELAY = 1.0  # seconds an entry may wait for its batch while work waits to start
POLL = 0.002  # how often the writer looks at the executor while it holds a batch back
RETRY_AFTER = 1.0  # seconds between attempts while the database is unavailable


@dataclass
class _Entry:
    execution: Execution
    start: dict[str, Any] | None = None  # fields of the start, not written yet
    final: dict[str, Any] | None = None  # fields of the outcome, not written yet


class Recorder(runner.OutcomeWriter):
    """Batch the start and outcome writes of executions run in the scheduler's process."""

    def __init__(
        self,
        *,
        may_start: Callable[[], bool] = lambda: True,
        busy: Callable[[], bool] = lambda: False,
        max_delay: float = MAX_DELAY,
    ) -> None:
        self._may_start = may_start
        self._busy = busy
        self.max_delay = max_delay
        self._pending: dict[int, _Entry] = {}
        # Hand-overs not moved into ``_pending`` yet (``_drain``): ``(execution, start, final)``.
        self._inbox: deque[tuple[Execution, dict[str, Any] | None, dict[str, Any] | None]]
        self._inbox = deque()
        self._sleeping = False  # the writer waits for a first entry
        # Finished executions whose outcome is taken by the writer and not committed yet.
        self._writing: set[int] = set()
        self._first_at = 0.0  # monotonic time of the oldest pending entry
        self._handed = 0  # entries handed over so far
        self._written = 0  # of those, how many are written (or were given up at stop)
        self._urgent = False
        self._stopping = False
        self._stopped = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._follow_ups: queue.SimpleQueue[tuple[Execution, bool] | None] = queue.SimpleQueue()
        self._follow_thread: threading.Thread | None = None

    # -- the workers' side ------------------------------------------------------------------

    def start(self, execution: Execution, *, worker: str) -> bool:
        """Start ``execution`` in memory and hand its start over; False: do not run it."""
        if not self._may_start():
            return False
        values = execution.start_values(worker=worker)
        for key, value in values.items():
            setattr(execution, key, value)
        self._hand_over(execution, start=values)
        return True

    def finish(self, execution: Execution, status: str, **outcome: Any) -> None:
        """Set the outcome of a started ``execution`` in memory and hand it over."""
        values = execution.outcome_values(status, **outcome)
        for key, value in values.items():
            setattr(execution, key, value)
        self._hand_over(execution, final=values)

    def _hand_over(self, execution: Execution, **values: Any) -> None:
        # Without the lock: a worker appends to the inbox (one atomic deque operation), and
        # whoever reads the pending entries moves the inbox into them first (``_drain``).
        # Eight workers taking a lock twice per execution, and the pool's and the executor's
        # besides, queued behind one another whenever the interpreter switched threads while
        # one held it: a burst of trivial executions started at half the rate of one worker.
        handed = (execution, values.get("start"), values.get("final"))
        if not self._stopped:
            self._inbox.append(handed)
            if self._sleeping:
                # The writer waits for a first entry (it set ``_sleeping`` before it looked
                # at the inbox, so an entry appended before this read is one it saw).
                with self._cond:
                    self._cond.notify_all()
            if not self._stopped:
                return
            try:
                self._inbox.remove(handed)  # stop() came in between: write it here
            except ValueError:
                return  # stop() took it, and counted it among the entries given up
        # Stopped: a thread that outlived the shutdown grace writes its own outcome; it only
        # lands if the shutdown has not marked the execution interrupted already.
        try:
            self._commit([_Entry(*handed)])
        except DatabaseError as exc:
            logger.exception("Could not record execution %s (%s).", execution.pk, exc)
            connection.close()

    def _drain(self) -> None:
        """Move the inbox into the pending entries (call with the lock held)."""
        inbox = self._inbox
        if not inbox:
            return
        if not self._pending:
            self._first_at = time.monotonic()
        pending = self._pending
        while inbox:
            execution, start, final = inbox.popleft()
            entry = pending.get(execution.pk)
            if entry is None:
                pending[execution.pk] = _Entry(execution, start, final)
            else:
                entry.start = start or entry.start
                entry.final = final or entry.final
            self._handed += 1

    # -- control ------------------------------------------------------------------------------

    def begin(self) -> None:
        """Start the writer and follow-up threads."""
        self._thread = threading.Thread(target=self._write_loop, name="scheduling-recorder")
        self._thread.daemon = True
        self._thread.start()
        self._follow_thread = threading.Thread(
            target=self._follow_loop, name="scheduling-follow-ups"
        )
        self._follow_thread.daemon = True
        self._follow_thread.start()

    def flush(self, timeout: float = 5.0) -> bool:
        """Write everything handed over so far now; False if it is not written in ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._drain()
            target = self._handed
            if self._written >= target or self._thread is None:
                return True
            self._urgent = True
            self._cond.notify_all()
            while self._written < target:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._cond.wait(left)
        return True

    def finished_unwritten(self) -> set[int]:
        """The ids of executions that have finished, their outcome not committed yet.

        Their rows still say ``queued`` or ``running``: the dispatcher does not count them as
        active in its overlap checks (instead of waiting for the writer to commit them).
        """
        with self._cond:
            self._drain()
            pending = {pk for pk, entry in self._pending.items() if entry.final is not None}
            return pending | self._writing

    @property
    def backlog(self) -> int:
        """Executions whose start or outcome is not written yet."""
        with self._cond:
            self._drain()
            return len(self._pending)

    def stop(self, timeout: float = 5.0) -> int:
        """Write what is pending (up to ``timeout`` s) and stop; return the entries given up.

        Given-up entries leave their rows ``queued`` or ``running``: the caller (or the next
        leader) marks them ``interrupted``.
        """
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._cond:
            self._stopped = True
            self._drain()  # a hand-over that comes later is written by its worker
            lost = len(self._pending)
            self._pending.clear()
            self._written = self._handed
            self._cond.notify_all()
        if lost:
            logger.error("Gave up writing the state of %d execution(s) at shutdown.", lost)
        if self._follow_thread is not None:
            self._follow_ups.put(None)
            self._follow_thread.join(max(0.1, timeout))
        return lost

    # -- the writer thread --------------------------------------------------------------------

    def _take(self) -> tuple[list[_Entry], int] | None:
        """Wait for a batch that is due; return it with the hand-over count it covers.

        The executor is asked whether it is busy without this lock held: it takes the
        executor's own lock, and the workers handing their outcomes over would queue behind
        the writer while it waits for that one.
        """
        while True:
            with self._cond:
                self._drain()
                while not self._pending and not self._stopping:
                    self._sleeping = True
                    self._drain()
                    if not self._pending:
                        self._cond.wait(0.5)
                    self._sleeping = False
                    self._drain()
                if not self._pending:
                    return None
                if (
                    self._urgent
                    or self._stopping
                    or time.monotonic() - self._first_at >= self.max_delay
                ):
                    return self._take_batch()
            if not self._busy():
                with self._cond:
                    self._drain()
                    return self._take_batch()
            time.sleep(POLL)

    def _take_batch(self) -> tuple[list[_Entry], int]:
        """Take every pending entry (call with the lock held)."""
        batch, self._pending = list(self._pending.values()), {}
        self._writing = {entry.execution.pk for entry in batch if entry.final is not None}
        self._urgent = False
        return batch, self._handed

    def _write_loop(self) -> None:
        reconnected = False
        try:
            while True:
                taken = self._take()
                if taken is None:
                    return
                batch, covered = taken
                try:
                    self._commit(batch)
                except DatabaseError as exc:
                    connection.close()
                    self._put_back(batch)
                    if not reconnected:
                        # This thread's connection may have been idle through a database
                        # restart that is over: try once more on a new one before waiting.
                        reconnected = True
                        continue
                    outage.failed("execution recorder", exc)
                    with self._cond:
                        if not self._stopping:
                            self._cond.wait(RETRY_AFTER)
                        if self._stopping:
                            return
                    continue
                except Exception:
                    # A bug must not end the thread with the batch in it: log, drop, go on.
                    logger.exception("Could not record %d execution(s).", len(batch))
                    connection.close()
                reconnected = False
                with self._cond:
                    self._writing = set()
                    self._written = max(self._written, covered)
                    self._cond.notify_all()
        finally:
            connection.close()

    def _put_back(self, batch: list[_Entry]) -> None:
        with self._cond:
            self._drain()
            if not self._pending:
                self._first_at = time.monotonic()
            for entry in batch:
                newer = self._pending.get(entry.execution.pk)
                if newer is not None:
                    entry.start = entry.start or newer.start
                    entry.final = newer.final or entry.final
                self._pending[entry.execution.pk] = entry

    def _commit(self, batch: list[_Entry]) -> None:
        """Write ``batch`` in one transaction, then announce and queue follow-ups."""
        finished: list[Execution] = []
        discarded: list[Execution] = []
        with transaction.atomic():
            statuses = runner.lock_statuses([entry.execution.pk for entry in batch])
            writes: list[tuple[Execution, dict[str, Any]]] = []
            for entry in batch:
                execution = entry.execution
                status = statuses.get(execution.pk)
                if entry.final is None:
                    # Not queued: a timeout or interruption came first; the outcome will lose
                    # too.
                    if status == Status.QUEUED:
                        writes.append((execution, entry.start or {}))
                    continue
                if status in ACTIVE_STATUSES:
                    writes.append((execution, {**(entry.start or {}), **entry.final}))
                    finished.append(execution)
                else:
                    discarded.append(execution)
            runner.write_rows(writes)
            retried = runner.record_outcomes(finished)
            # One counter update for the batch, committed with the outcomes it counts; last,
            # so that the shared counter rows stay locked as briefly as possible.
            ExecutionCounter.objects.count_finished(finished)
        try:
            for execution in discarded:
                runner.log_discarded(execution)
            language = translation.get_language()  # once for the batch's lines
            for execution in finished:
                runner.announce(execution, language=language)
            if finished:
                last = [e for e in finished if e.pk not in retried]
                chained = {e.pk for e in runner.with_dependents(last)}
                alerting = {e.pk for e in alerts.needing_rules(finished)}
                for execution in finished:
                    if execution.pk in chained or execution.pk in alerting:
                        self._follow_up(execution, execution.pk in chained)
        except Exception:
            logger.exception("Could not announce %d recorded execution(s).", len(finished))
            connection.close()

    # -- the follow-up thread -----------------------------------------------------------------

    def _follow_up(self, execution: Execution, chained: bool) -> None:
        if self._stopped:
            # The follow-up thread is gone: an outcome written after stop() follows up here.
            self._run_follow_up(execution, chained)
        else:
            self._follow_ups.put((execution, chained))

    def _run_follow_up(self, execution: Execution, chained: bool) -> None:
        try:
            alerts.on_execution_finished(execution)  # never raises
            if chained and execution.schedule is not None:
                runner.trigger_dependents(execution.schedule, execution.scheduled_for)
        except Exception:
            logger.exception("Follow-ups of execution %s failed.", execution.pk)
            connection.close()

    def _follow_loop(self) -> None:
        try:
            while (item := self._follow_ups.get()) is not None:
                self._run_follow_up(*item)
        finally:
            connection.close()
