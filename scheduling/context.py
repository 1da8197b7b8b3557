"""What a registered handler receives besides its schedule, and how a handler is called."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync, sync_to_async
from django.utils import timezone

from .exceptions import ExecutionCancelled, ExecutionTimeout

if TYPE_CHECKING:
    from django.db.models import Model

# ``context.cancelled`` reads the execution's row at most this often (seconds).
CANCEL_POLL_INTERVAL = 1.0


@dataclass
class ExecutionContext:
    """The run-time context of one execution: handlers read it, never the scheduler."""

    # The context sits below the models (tests/test_layering.py) and cannot name them. The
    # execution (an Execution) stays Any so that a handler can store it in a foreign key
    # (ReportArtifact.execution); a handler gets its schedule, typed, as its first argument.
    execution: Any
    schedule: Model
    # None for a system schedule.
    tenant: Model | None
    scheduled_for: datetime
    timeout: float
    # The "scheduling.task" logger; the runner's carries the execution's fields on every line
    # (scheduling.logs.ExecutionLogger), so a handler's own lines are attributable.
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger] = field(
        default_factory=lambda: logging.getLogger("scheduling.task")
    )
    # The options of this run: the schedule's, with a manual run's own merged over them.
    options: dict[str, Any] = field(default_factory=dict)
    _started: float = field(default_factory=time.monotonic)
    _cancel_checked: float = 0.0
    _cancelled: bool = False

    @property
    def remaining(self) -> float:
        """Seconds left before the execution's timeout."""
        return max(0.0, self.timeout - (time.monotonic() - self._started))

    @property
    def cancelled(self) -> bool:
        """Whether an operator cancelled this execution; a long handler polls it and returns.

        Reads the execution's row (at most once a second); once true it stays true.
        """
        if self._cancelled:
            return True
        now = time.monotonic()
        if now - self._cancel_checked < CANCEL_POLL_INTERVAL or self.execution is None:
            return False
        self._cancel_checked = now
        model = type(self.execution)
        self._cancelled = bool(
            self.execution.pk
            and model._default_manager.filter(pk=self.execution.pk, status="cancelled").exists()
        )
        return self._cancelled

    def now(self) -> datetime:
        return timezone.now()

    def call(self, handler: Callable[..., Any], *args: Any) -> Any:
        """Call ``handler(*args, self)``; a coroutine it returns is awaited with the timeout.

        An ``async def`` handler runs on an event loop of its own and is cancelled (not only
        abandoned) when the execution's timeout passes or an operator cancels it.
        """
        result = handler(*args, self)
        if inspect.iscoroutine(result):
            return run_coroutine(result, timeout=self.remaining, cancelled=lambda: self.cancelled)
        return result


def run_coroutine(
    coroutine: Coroutine[Any, Any, Any],
    *,
    timeout: float,
    cancelled: Callable[[], bool] = lambda: False,
    poll: float = 0.2,
) -> Any:
    """Run ``coroutine`` to its end; cancel it at ``timeout`` or when ``cancelled()`` says so.

    Through ``async_to_sync``, as Django calls async code from sync code: the event loop runs
    on a thread of its own while this thread serves the coroutine's thread-sensitive
    ``sync_to_async`` calls, so its ORM calls use this thread's database connection (the one
    the executor manages) and none is left open elsewhere. ``cancelled()`` runs here too.
    Raises ``ExecutionTimeout`` or ``ExecutionCancelled`` once the coroutine is cancelled.
    """

    async def guarded() -> Any:
        task = asyncio.ensure_future(coroutine)
        check = sync_to_async(cancelled)
        deadline = time.monotonic() + timeout
        stop: type[Exception] | None = None
        while stop is None:
            left = deadline - time.monotonic()
            done, _pending = await asyncio.wait({task}, timeout=max(0.0, min(poll, left)))
            if done:
                return task.result()
            if left <= 0:
                stop = ExecutionTimeout
            elif await check():
                stop = ExecutionCancelled
        task.cancel()
        await asyncio.wait({task}, timeout=5.0)  # let it clean up; then it is abandoned
        if stop is ExecutionTimeout:
            raise ExecutionTimeout(f"The coroutine was cancelled after {timeout:g} s.")
        raise ExecutionCancelled("The coroutine was cancelled on request.")

    return async_to_sync(guarded)()
