"""The default executor: a bounded pool of threads fed by a priority queue.

Higher ``priority`` runs first when the pool is saturated (ties: first come, first served).
A thread cannot be killed, so a timeout is enforced by a watchdog that marks the execution
``timed_out``; the conditional outcome write then discards the late result.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable

from django.db import close_old_connections, connection

logger = logging.getLogger("scheduling.executors.thread")


class ThreadExecutor:
    name = "thread"

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
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self._running: dict[int, float] = {}  # execution id -> monotonic start
        self._deadlines: list[tuple[float, int]] = []
        self._lock = threading.Lock()
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

    def submit(self, execution_id: int, *, priority: int = 0, timeout: float | None = None) -> None:
        self._queue.put((-priority, next(self._seq), execution_id, timeout))

    @property
    def busy(self) -> int:
        with self._lock:
            return len(self._running)

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def running_ids(self) -> list[int]:
        with self._lock:
            return list(self._running)

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                _priority, _seq, execution_id, timeout = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if execution_id is None:
                break
            with self._lock:
                self._running[execution_id] = time.monotonic()
                if timeout:
                    heapq.heappush(self._deadlines, (time.monotonic() + timeout, execution_id))
            try:
                close_old_connections()
                self._run(execution_id)
            except Exception:
                logger.exception("Execution %s crashed its worker thread.", execution_id)
                connection.close()
            finally:
                with self._lock:
                    self._running.pop(execution_id, None)
                if self._on_done is not None:
                    try:
                        self._on_done(execution_id)
                    except Exception:
                        logger.exception("on_done hook failed for execution %s", execution_id)

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            now = time.monotonic()
            expired = []
            with self._lock:
                while self._deadlines and self._deadlines[0][0] <= now:
                    _deadline, execution_id = heapq.heappop(self._deadlines)
                    if execution_id in self._running:
                        expired.append(execution_id)
            for execution_id in expired:
                try:
                    self._on_timeout(execution_id)
                except Exception:
                    logger.exception("Could not mark execution %s timed out.", execution_id)
                    connection.close()

    def drain(self) -> list[int]:
        """Remove and return the ids of executions still waiting in the queue."""
        ids = []
        while True:
            try:
                _p, _s, execution_id, _t = self._queue.get_nowait()
            except queue.Empty:
                return ids
            if execution_id is not None:
                ids.append(execution_id)

    def shutdown(self, *, grace: float) -> tuple[list[int], list[int]]:
        """Stop taking work; wait up to ``grace`` s for running executions.

        Returns ``(never_started, still_running)`` execution ids.
        """
        never_started = self.drain()
        deadline = time.monotonic() + grace
        while self.busy and time.monotonic() < deadline:
            time.sleep(0.05)
        still_running = self.running_ids()
        self._stop.set()
        for _thread in self._threads:
            self._queue.put((float("inf"), next(self._seq), None, None))
        return never_started, still_running
