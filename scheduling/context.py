"""What a registered handler receives besides its schedule, and how a handler is called."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

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
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("scheduling.task"))
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
    """Run ``coroutine`` to its end on a new event loop; cancel it at ``timeout`` or on request.

    The loop runs on a thread of its own while this thread watches the clock and
    ``cancelled()`` (which may query the database: this thread is synchronous). ORM calls
    through ``sync_to_async`` work inside the coroutine. Raises ``ExecutionTimeout`` or
    ``ExecutionCancelled`` once the coroutine has been cancelled.
    """
    loop = asyncio.new_event_loop()
    task = loop.create_task(coroutine)
    outcome: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            outcome["result"] = loop.run_until_complete(task)
        except BaseException as exc:  # the caller re-raises it
            outcome["error"] = exc
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    thread = threading.Thread(target=run, name="scheduling-async-handler", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    stop: type[Exception] | None = None
    while thread.is_alive():
        left = deadline - time.monotonic()
        if left <= 0:
            stop = ExecutionTimeout
        elif cancelled():
            stop = ExecutionCancelled
        if stop is not None:
            loop.call_soon_threadsafe(task.cancel)
            thread.join(5.0)  # a coroutine that swallows the cancellation is abandoned
            break
        thread.join(min(poll, left))
    if stop is ExecutionTimeout:
        raise ExecutionTimeout(f"The coroutine was cancelled after {timeout:g} s.")
    if stop is ExecutionCancelled:
        raise ExecutionCancelled("The coroutine was cancelled on request.")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")
