"""The default executor, ``thread``: a bounded pool of threads fed by a fair queue.

- Tenants take turns (``FairQueue``): when a worker is free it takes the next item of the
  next tenant in turn that has work waiting and is under its limit, so a tenant with a large
  backlog, whatever its priority, cannot starve the others. System schedules (no tenant)
  take their turn as one more tenant.
- Within a tenant, higher ``priority`` runs first (ties: the earlier due time, then first
  come, first served).
- A tenant never has more than its concurrency limit running at once; its further work waits
  while other tenants' work proceeds. The default limit is half the workers, rounded up
  (``default_tenant_limit``), so one tenant never fills the pool by default: another
  tenant's work finds a free worker, not one it must wait for.
- A thread cannot be killed, so a timeout is enforced by a watchdog that marks the execution
  ``timed_out``; the conditional outcome write then discards the late result. Work submitted
  with ``isolated=True`` runs in a child process instead (see ``executors.process``), which the
  timeout really kills.
- Work submitted with ``not_before`` (an epoch time: the scheduler claims occurrences a moment
  ahead, ``SCHEDULING_CLAIM_AHEAD``) is held until then; a worker waits for the earliest.
- Before each item a worker drops its database connection if it is unusable or older than
  ``CONN_MAX_AGE`` (``close_old_connections``). On SQLite, where a connection is a file handle
  that no server can drop and opening one costs about as much as a trivial execution, a worker
  that runs items back to back keeps its connection until it waits for work again, a
  database error occurs or an item left the connection out of autocommit.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.db import DEFAULT_DB_ALIAS, close_old_connections, connection, connections

from .. import runner
from ..conf import conf
from .base import BaseExecutor, ExecutorContext, Leftovers

if TYPE_CHECKING:
    from ..models import Execution

logger = logging.getLogger("scheduling.executors.thread")


def default_tenant_limit(max_workers: int) -> int:
    """Return the per-tenant limit for tenants without their own (0: no limit).

    ``SCHEDULING_TENANT_CONCURRENCY``, or when it is None half of ``max_workers`` rounded up:
    one tenant cannot fill a pool of two or more workers.
    """
    setting = conf.TENANT_CONCURRENCY
    return max(1, (max_workers + 1) // 2) if setting is None else setting


@dataclass(order=True)
class WorkItem:
    # (-priority, due time, submission order): the order within one tenant.
    sort_key: tuple[int, float, int]
    execution_id: int = field(compare=False)
    tenant_id: object = field(compare=False, default=None)
    tenant_limit: int = field(compare=False, default=0)
    timeout: float | None = field(compare=False, default=None)


class FairQueue:
    """Work waiting for a worker: a priority heap per tenant, served in turn.

    ``take`` looks at the tenants in a ring, starting after the one it served (or skipped)
    last, and takes the best item of the first whose ``may_start`` accepts it. So while t
    tenants have work waiting, each one that may start work is served within the next t takes,
    however many items, and of whatever priority, the others hold. A take costs O(log n) for
    the heap plus O(t) at most for the tenants it skips (those at their limit).
    """

    def __init__(self) -> None:
        self._heaps: dict[object, list[WorkItem]] = {}
        self._turns: deque[object] = deque()  # tenants with work waiting; the next one first
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def push(self, item: WorkItem) -> None:
        heap = self._heaps.get(item.tenant_id)
        if heap is None:
            heap = self._heaps[item.tenant_id] = []
            self._turns.append(item.tenant_id)  # a newcomer's turn comes after the others'
        heapq.heappush(heap, item)
        self._size += 1

    def take(self, may_start: Callable[[WorkItem], bool]) -> WorkItem | None:
        """Remove and return the next tenant's best item that ``may_start``; None if none."""
        for _ in range(len(self._turns)):
            tenant_id = self._turns[0]
            self._turns.rotate(-1)  # served or skipped, its next turn comes after the others'
            heap = self._heaps[tenant_id]
            if not may_start(heap[0]):
                continue
            item = heapq.heappop(heap)
            self._size -= 1
            if not heap:
                del self._heaps[tenant_id]
                self._turns.pop()  # the tenant just moved to the back
            return item
        return None

    def clear(self) -> list[WorkItem]:
        """Remove and return every item, each tenant's in its order."""
        items = [item for heap in self._heaps.values() for item in sorted(heap)]
        self._heaps.clear()
        self._turns.clear()
        self._size = 0
        return items


class WorkerPool:
    """Threads that run execution ids by tenant turns, priority, per-tenant limits and times."""

    def __init__(
        self,
        *,
        max_workers: int,
        run: Callable[[int], object],
        on_timeout: Callable[[int], object],
        on_done: Callable[[int], object] | None = None,
    ) -> None:
        self.max_workers = max_workers
        self._run = run
        self._on_timeout = on_timeout
        self._on_done = on_done
        self._pending = FairQueue()
        self._held: list[tuple[float, int, WorkItem]] = []  # (not_before, seq, item)
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self._running: dict[int, object] = {}  # execution id -> tenant id
        self._per_tenant: Counter = Counter()
        self._deadlines: list[tuple[float, int]] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        for index in range(self.max_workers):
            thread = threading.Thread(
                target=self._work, name=f"scheduling-worker-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        self._watchdog = threading.Thread(
            target=self._watch, name="scheduling-watchdog", daemon=True
        )
        self._watchdog.start()

    def submit(
        self,
        execution_id: int,
        *,
        priority: int = 0,
        timeout: float | None = None,
        tenant_id: object = None,
        tenant_limit: int = 0,
        not_before: float | None = None,
    ) -> None:
        seq = next(self._seq)
        now = time.time()
        due = now if not_before is None else not_before
        item = WorkItem((-priority, due, seq), execution_id, tenant_id, tenant_limit, timeout)
        with self._cond:
            if not_before is not None and not_before > now:
                heapq.heappush(self._held, (not_before, seq, item))
                if self._held[0][2] is item:
                    # The workers sleep until the earliest held item: this one is earlier.
                    # (Waking them for every item of a burst of a thousand cost more than
                    # running the burst.)
                    self._cond.notify_all()
            else:
                self._pending.push(item)
                self._cond.notify()

    @property
    def busy(self) -> int:
        with self._cond:
            return len(self._running)

    @property
    def queued(self) -> int:
        """Items due and waiting for a worker (held ones not counted).

        Read without the lock (the workers take it for every item): a moment's reading,
        for decisions such as when to write a batch.
        """
        return len(self._pending)

    def running_ids(self) -> list[int]:
        with self._cond:
            return list(self._running)

    def _release_held(self) -> float:
        """Move held items that are due to the queue; return seconds to the next (lock held)."""
        now = time.time()
        released = 0
        while self._held and self._held[0][0] <= now:
            self._pending.push(heapq.heappop(self._held)[2])
            released += 1
        if released > 1:
            # One worker woke for the earliest item; the others' sleep ends at it too, but
            # may have started before it was held.
            self._cond.notify(released - 1)
        return self._held[0][0] - now if self._held else 0.5

    def _under_limit(self, item: WorkItem) -> bool:
        return not item.tenant_limit or self._per_tenant[item.tenant_id] < item.tenant_limit

    def _take(self) -> WorkItem | None:
        """Take the next item to run and count it as running (call with the lock held)."""
        item = self._pending.take(self._under_limit)
        if item is not None:
            self._running[item.execution_id] = item.tenant_id
            self._per_tenant[item.tenant_id] += 1
            if item.timeout:
                heapq.heappush(
                    self._deadlines, (time.monotonic() + item.timeout, item.execution_id)
                )
        return item

    def _finished(self, item: WorkItem) -> None:
        """Count ``item`` as no longer running (call with the lock held)."""
        self._running.pop(item.execution_id, None)
        at_limit = not self._under_limit(item)
        self._per_tenant[item.tenant_id] -= 1
        if not self._per_tenant[item.tenant_id]:
            del self._per_tenant[item.tenant_id]
        if at_limit:
            # A slot of this tenant is free: wake a worker that may have skipped its items.
            self._cond.notify()

    def _work(self) -> None:
        idle = True  # no connection yet, or the thread waited for work since its last item
        done: WorkItem | None = None  # the item just run, counted as running until the lock
        while True:
            with self._cond:
                if done is not None:
                    # One acquisition of the lock per item, for its end and the next take:
                    # eight workers taking it twice per item queued behind one another
                    # whenever the interpreter switched threads while one held it.
                    self._finished(done)
                    done = None
                item = None
                while not self._stop.is_set():
                    wait = self._release_held()
                    item = self._take()
                    if item is not None:
                        break
                    idle = True
                    self._cond.wait(min(0.5, wait))
                if item is None:
                    return
            try:
                db = connections[DEFAULT_DB_ALIAS]  # one thread-local lookup, not five
                if (
                    idle
                    or db.vendor != "sqlite"
                    or db.errors_occurred
                    or db.in_atomic_block
                    or not db.autocommit
                ):
                    close_old_connections()
                idle = False
                self._run(item.execution_id)
            except Exception:
                logger.exception("Execution %s crashed its worker thread.", item.execution_id)
                connection.close()
            finally:
                if self._on_done is not None:
                    try:
                        self._on_done(item.execution_id)
                    except Exception:
                        logger.exception("on_done hook failed for execution %s", item.execution_id)
                done = item

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            now = time.monotonic()
            expired = []
            with self._cond:
                while self._deadlines and self._deadlines[0][0] <= now:
                    _deadline, execution_id = heapq.heappop(self._deadlines)
                    if execution_id in self._running:
                        expired.append(execution_id)
                if len(self._deadlines) > 2 * len(self._running) + 64:
                    # Finished executions leave their deadline behind; drop them, or the heap
                    # would hold (executions per second x timeout) entries.
                    self._deadlines = [d for d in self._deadlines if d[1] in self._running]
                    heapq.heapify(self._deadlines)
            for execution_id in expired:
                try:
                    self._on_timeout(execution_id)
                except Exception:
                    logger.exception("Could not mark execution %s timed out.", execution_id)
                    connection.close()

    def drain(self, *, held: bool = True) -> list[int]:
        """Remove and return the ids of executions waiting in the queue (and held ones)."""
        with self._cond:
            ids = [item.execution_id for item in self._pending.clear()]
            if held:
                ids += [item.execution_id for _at, _seq, item in sorted(self._held)]
                self._held.clear()
        return ids

    def shutdown(self, *, grace: float) -> tuple[list[int], list[int]]:
        """Stop taking work; wait up to ``grace`` s for running executions.

        Work waiting for a worker is not started. Held work was claimed a moment ahead of its
        time (its occurrence was fired): it still starts at that time if it falls within the
        grace period. Returns ``(never_started, still_running)`` execution ids.
        """
        never_started = self.drain(held=False)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            with self._cond:
                if not (self._running or self._held or self._pending):
                    break
            time.sleep(0.02)
        never_started += self.drain()
        still_running = self.running_ids()
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        return never_started, still_running


class ThreadExecutor(BaseExecutor):
    """Run executions on a ``WorkerPool`` in the scheduler's process."""

    name = "thread"

    def __init__(self, context: ExecutorContext) -> None:
        super().__init__(context)
        # Loaded executions (with schedule and kind) by id, until a worker takes them. No
        # lock: setting and popping an int key are single, atomic dict operations.
        self._loaded: dict[int, tuple[Execution, float]] = {}
        self.pool = WorkerPool(
            max_workers=context.max_workers,
            run=self._run,
            on_timeout=runner.time_out,
            on_done=context.on_done,
        )

    def start(self) -> None:
        self.pool.start()

    def submit(
        self,
        execution: Execution,
        *,
        priority: int,
        timeout: float,
        not_before: float | None = None,
        track: bool = False,
    ) -> None:
        schedule = execution.schedule
        limit = getattr(schedule.tenant if schedule else None, "max_concurrent_executions", None)
        if limit is None:
            limit = default_tenant_limit(self.context.max_workers)
        self._loaded[execution.pk] = (execution, timeout)
        self.pool.submit(
            execution.pk,
            priority=priority,
            not_before=not_before,
            timeout=self.watchdog_timeout(timeout),
            tenant_id=execution.tenant_id,
            tenant_limit=limit,
        )

    def watchdog_timeout(self, timeout: float) -> float | None:
        """The timeout the pool's watchdog records (a thread cannot be stopped, only left)."""
        return timeout

    def _run(self, execution_id: int) -> None:
        execution, timeout = self._loaded.pop(execution_id, (None, float(conf.DEFAULT_TIMEOUT)))
        self.run(execution_id, execution, timeout)

    def run(self, execution_id: int, execution: Execution | None, timeout: float) -> None:
        """Run one execution in this worker thread."""
        runner.execute(
            execution_id,
            worker=self.context.worker,
            execution=execution,
            writer=self.context.writer,
        )

    def backlog(self) -> int:
        return self.pool.queued

    def shutdown(self, *, grace: float) -> Leftovers:
        never_started, still_running = self.pool.shutdown(grace=grace)
        return Leftovers(never_started, still_running)
