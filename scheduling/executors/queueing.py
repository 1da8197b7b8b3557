"""What the executors that hand executions to an outside queue share (``celery``, ``django_tasks``).

The leader claims an occurrence as always and, once the claim commits, a publisher thread
hands the execution id to the queue (so neither APScheduler's loop nor the lease renewals wait
for it), then marks the row ``claimed_by = <prefix><leader>``. Workers run it through
``runner.execute``. The row stays the truth, which keeps delivery simple:

- a copy delivered twice runs nothing (``mark_started`` only moves a ``queued`` row);
- what is still ``queued`` some time after it was handed over is handed over again;
- a successor hands over again what a dead leader had claimed but not marked as handed over;
- ``running`` executions whose worker's heartbeat expired are interrupted (``heartbeats``).

A subclass says how to hand a batch over (``publish_many``), with which mark, after how long
it hands over again, and how a lost worker is described.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from abc import abstractmethod
from collections import deque
from dataclasses import dataclass
from typing import ClassVar

from django.db import DatabaseError, connection, transaction

from .. import runner
from ..conf import conf
from ..models import ACTIVE_STATUSES, Execution, SchedulerLease, Status
from .base import BaseExecutor, ExecutorContext, Leftovers
from .choice import kinds_run_by
from .heartbeats import WORKER_LEASE_PREFIX, reap_lost_workers, worker_lease_name

logger = logging.getLogger("scheduling.executors")

# Rows per query where a takeover may bring thousands of ids.
CHUNK = 1000
# Executions handed over next after a stale one that are asked whether the queue moved on.
MOVED_PAST = 200
# Seconds before stale executions the workers have not reached yet are looked at again.
RECHECK_BEHIND = 5.0


@dataclass(frozen=True)
class Item:
    """One execution to hand over, with what the queue is told about it."""

    execution_id: int
    timeout: float
    priority: int = 0
    # Epoch seconds before which it must not start (its scheduled time), or None.
    not_before: float | None = None


def item_of(execution: Execution) -> Item:
    """Return the ``Item`` of a queued ``execution`` (loaded with its schedule)."""
    schedule = execution.schedule
    return Item(
        execution.pk,
        schedule.effective_timeout if schedule else conf.DEFAULT_TIMEOUT,
        schedule.priority if schedule else 0,
        execution.scheduled_for.timestamp(),
    )


class QueueingExecutor(BaseExecutor):
    """Hands claimed executions to an outside queue and looks after what its workers do."""

    durable = True
    tend_interval = 1.0
    # At shutdown, handing over what is waiting gets this long at most.
    SHUTDOWN_PUBLISH = 5.0
    # ``claimed_by`` of what a leader handed over is ``<mark_prefix><leader>``.
    mark_prefix: ClassVar[str] = ""
    # The queue, in log lines ("the Celery broker").
    queue_label: ClassVar[str] = ""
    # What an execution interrupted because its worker was lost records as its error.
    lost_worker_error: ClassVar[str] = ""

    def __init__(self, context: ExecutorContext) -> None:
        super().__init__(context)
        self.claimed_by = context.identity
        self.published_mark = f"{self.mark_prefix}{self.claimed_by}"
        # Executions whose end the scheduler waits for (overlap=queue): ``tend`` reports them.
        self._tracked: set[int] = set()
        self._lock = threading.Lock()
        self._queue: deque[Item] = deque()  # to hand over
        self._sending: list[Item] = []  # taken from the queue, not published and marked yet
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Execution id -> (monotonic hand-over time, item); pruned by ``requeue_stale``.
        self._published: dict[int, tuple[float, Item]] = {}
        # Stale executions the workers had not reached yet, looked at again at ``_behind_check``.
        self._behind: dict[int, Item] = {}
        self._behind_check = 0.0

    @abstractmethod
    def publish_many(self, items: list[Item]) -> int:
        """Hand ``items`` over; stop at the first failure; return how many went.

        Calls ``published(item)`` for each one that did.
        """

    @abstractmethod
    def requeue_after(self) -> float:
        """Seconds after which an execution still ``queued`` is handed over again."""

    def kinds(self) -> list[str]:
        """The schedule kinds this executor runs under the current settings."""
        return kinds_run_by(self.name)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"scheduling-{self.name}-publisher", daemon=True
        )
        self._thread.start()

    def shutdown(self, *, grace: float) -> Leftovers:
        """Hand over what is waiting (5 s at most); the rest never started.

        What reached the queue stays there: a worker runs it whether or not a scheduler is up.
        """
        deadline = time.monotonic() + min(self.SHUTDOWN_PUBLISH, grace)
        while self.pending_ids() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        return Leftovers(never_started=self.pending_ids())

    def submit(
        self,
        execution: Execution,
        *,
        priority: int,
        timeout: float,
        not_before: float | None = None,
        track: bool = False,
    ) -> None:
        """Hand ``execution`` over once the transaction that claimed it commits."""
        # Claimed ahead while others of its schedule ran: decided now, a moment before its
        # time (CLAIM_AHEAD at most), since the worker cannot see the claim's in-memory mark.
        if runner.skipped_for_overlap(execution, self.context.writer):
            return
        item = Item(execution.pk, timeout, priority, not_before)
        if track:
            with self._lock:
                self._tracked.add(execution.pk)
        transaction.on_commit(lambda: self._put([item]))

    def tend(self) -> None:
        """Hand over again what stayed queued; interrupt lost workers' runs; report ends."""
        self.requeue_stale()
        # Right after a database outage, workers' heartbeats are stale because they could
        # not write either: give them one heartbeat period to catch up before judging them.
        if time.monotonic() - self.context.last_database_error() > conf.CELERY_HEARTBEAT_TTL:
            reap_lost_workers(reason=self.lost_worker_error)
        with self._lock:
            tracked = list(self._tracked)
        if not tracked:
            return
        done = set(
            Execution.objects.filter(pk__in=tracked)
            .exclude(status__in=ACTIVE_STATUSES)
            .values_list("pk", flat=True)
        )
        with self._lock:
            self._tracked -= done
        for execution_id in done:
            self.context.on_done(execution_id)

    def recover(self, orphans: list[Execution]) -> list[Execution]:
        """Take over this executor's executions among ``orphans``; return the others.

        Queued ones are handed over again (a worker runs each once); running ones are left
        to their workers while those beat (``reap_lost_workers`` decides about the others).
        """
        kinds = set(self.kinds())
        beating = set(
            SchedulerLease.objects.filter(name__startswith=WORKER_LEASE_PREFIX).values_list(
                "name", flat=True
            )
        )
        queued = [e for e in orphans if e.status == Status.QUEUED and e.schedule_kind in kinds]
        queued_ids = {e.pk for e in queued}  # a takeover may find thousands: no list scans
        taken = set(_still_queued([e.pk for e in queued]))
        if taken:
            now = self.adopt([e for e in queued if e.pk in taken])
            logger.warning(
                "Took over %d queued execution(s) of %s; %d of them go out again now.",
                len(taken),
                self.queue_label,
                now,
            )
        return [
            e
            for e in orphans
            if e.pk not in queued_ids
            and not (e.status == Status.RUNNING and worker_lease_name(e.worker) in beating)
        ]

    def adopt(self, executions: list[Execution]) -> int:
        """Take over the queued executions of a leader that stopped.

        Those it had handed over (marked ``<prefix><leader>``) are in the queue: like our
        own, they go again only if still queued ``requeue_after()`` s from now. The others
        may never have reached it: they go now (a copy runs nothing twice). Returns how many
        go now.
        """
        handed = [e for e in executions if e.claimed_by.startswith(self.mark_prefix)]
        unhanded = [e for e in executions if not e.claimed_by.startswith(self.mark_prefix)]
        for rows, mark in ((handed, self.published_mark), (unhanded, self.claimed_by)):
            ids = [e.pk for e in rows]
            for start in range(0, len(ids), CHUNK):
                Execution.objects.filter(
                    pk__in=ids[start : start + CHUNK], status=Status.QUEUED
                ).update(claimed_by=mark)
        now = time.monotonic()
        with self._lock:
            for execution in handed:
                self._published[execution.pk] = (now, item_of(execution))
        self._put([item_of(e) for e in unhanded])
        return len(unhanded)

    def requeue_stale(self, *, now: float | None = None) -> int:
        """Hand over again executions still ``queued`` ``requeue_after()`` s after handing over.

        One lost on the way (a worker killed with prefetched work, a queue without
        persistence) would otherwise stay queued for ever; a copy runs nothing twice. But
        only once the queue has moved past it (some execution handed over after it has
        started) or nothing went out since: when the workers are merely behind, the queue
        still holds it, and copies of a whole backlog would only slow them down further.
        Those are looked at again a few seconds later.
        """
        now = time.monotonic() if now is None else now
        after = self.requeue_after()
        cutoff = now - after
        with self._lock:
            old = {pk: item for pk, (at, item) in self._published.items() if at <= cutoff}
            for pk in old:
                del self._published[pk]
            if self._behind and now >= self._behind_check:
                old.update(self._behind)
                self._behind = {}
            # What remains was handed over later: the first of it tells whether the workers
            # got past the stale ones.
            younger = heapq.nsmallest(
                MOVED_PAST, ((at, pk) for pk, (at, _item) in self._published.items())
            )
        if not old:
            return 0
        waiting = _still_queued(list(old))
        if waiting and younger and not _any_started([pk for _at, pk in younger]):
            with self._lock:
                self._behind.update((pk, old[pk]) for pk in waiting)
                self._behind_check = now + min(after, RECHECK_BEHIND)
            return 0
        self._put([old[pk] for pk in waiting])
        if waiting:
            logger.warning(
                "Handing over again %d execution(s) still queued after %s s.", len(waiting), after
            )
        return len(waiting)

    def pending_ids(self) -> list[int]:
        """Ids that were claimed for this queue but have not reached it yet."""
        with self._lock:
            return [item.execution_id for item in [*self._queue, *self._sending]]

    def published(self, item: Item) -> None:
        """Note that ``item`` reached the queue now (``publish_many`` calls it)."""
        now = time.monotonic()
        with self._lock:
            self._published[item.execution_id] = (now, item)

    def _put(self, items: list[Item]) -> None:
        with self._lock:
            self._queue.extend(items)
        self._wake.set()

    def _run(self) -> None:
        delay = 0.1
        try:
            while not self._stop.is_set():
                self._wake.wait(0.5)
                self._wake.clear()
                while not self._stop.is_set():
                    with self._lock:
                        batch = [self._queue.popleft() for _ in range(min(len(self._queue), 500))]
                        # Still pending until published and marked (``pending_ids``).
                        self._sending = batch
                    if not batch:
                        break
                    done = self.publish_many(batch)
                    self._mark_published([item.execution_id for item in batch[:done]])
                    with self._lock:
                        self._sending = []
                        if done < len(batch):
                            self._queue.extendleft(reversed(batch[done:]))
                    if done < len(batch):
                        self._stop.wait(delay)  # the queue is unavailable: back off
                        delay = min(delay * 2, 5.0)
                        break
                    delay = 0.1
        finally:
            connection.close()

    def _mark_published(self, ids: list[int]) -> None:
        if not ids:
            return
        try:
            # Whatever their status: a worker may have started (or even finished) one before
            # this mark; unmarked, a started run would not be known as handed over (Celery
            # would not revoke it when cancelled). Rows another leader adopted keep theirs.
            for start in range(0, len(ids), CHUNK):
                Execution.objects.filter(
                    pk__in=ids[start : start + CHUNK], claimed_by=self.claimed_by
                ).update(claimed_by=self.published_mark)
        except DatabaseError as exc:
            # Unmarked, a successor would hand them over again: harmless, a copy runs nothing.
            logger.warning("Could not mark %d handed-over execution(s): %s", len(ids), exc)
            connection.close()


def _still_queued(ids: list[int]) -> list[int]:
    """Return those of ``ids`` whose execution is still ``queued``, in chunks of queries."""
    waiting: list[int] = []
    for start in range(0, len(ids), CHUNK):
        waiting += Execution.objects.filter(
            pk__in=ids[start : start + CHUNK], status=Status.QUEUED
        ).values_list("pk", flat=True)
    return waiting


def _any_started(ids: list[int]) -> bool:
    """Whether any of ``ids`` has left ``queued`` (a worker took it, or it ended)."""
    return Execution.objects.filter(pk__in=ids).exclude(status=Status.QUEUED).exists()
