"""The executor interface: what the scheduler process asks of whatever runs its executions.

The scheduler claims an occurrence (the ``Execution`` insert) and hands the row to the
executor chosen for the schedule's kind (``SCHEDULING_EXECUTOR``, per kind
``SCHEDULING_EXECUTOR_OVERRIDES``). From there the executor owns the run: it starts the
execution at its time, enforces its timeout, records its outcome through the runner, and says
when it is done. The row stays the truth throughout, so an executor never has to be trusted
with more than "run this once".

An executor is a ``BaseExecutor`` subclass named in ``scheduling.executors.EXECUTORS``; the
scheduler talks to nothing else. Its class-level ``check()`` is run by the system checks for
every executor the settings select.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from django.core.checks import CheckMessage

    from ..models import Execution
    from ..runner import OutcomeWriter


@dataclass(frozen=True)
class ExecutorContext:
    """What the scheduler process gives every executor it starts."""

    # The lease holder (``Execution.claimed_by`` of what this scheduler claims).
    identity: str
    # ``host:pid`` of this process (``Execution.worker`` of what runs in it).
    worker: str
    # How executions run in this process record their start and outcome.
    writer: OutcomeWriter
    # Called with an execution id once an execution handed over with ``track=True`` (every
    # execution, for executors that run in this process) is no longer active.
    on_done: Callable[[int], None]
    # Whether this process still holds the lease: nothing starts once it does not.
    lease_valid: Callable[[], bool]
    max_workers: int = 4
    # Monotonic time of the scheduler loop's last database error (0.0: none yet).
    last_database_error: Callable[[], float] = field(default=lambda: 0.0)


@dataclass
class Leftovers:
    """What an executor had not finished when it shut down (execution ids)."""

    never_started: list[int] = field(default_factory=list)
    still_running: list[int] = field(default_factory=list)


class BaseExecutor(ABC):
    """Runs the executions the scheduler hands over. Subclasses implement ``submit``."""

    # The name in ``SCHEDULING_EXECUTOR`` (and the key in ``EXECUTORS``).
    name: ClassVar[str] = ""
    # True when work handed over outlives this process (a broker queue): at shutdown such
    # work stays queued for the executor's workers instead of being marked interrupted.
    durable: ClassVar[bool] = False
    # Seconds between ``tend()`` calls by the leader's loop; None: never called.
    tend_interval: ClassVar[float | None] = None

    def __init__(self, context: ExecutorContext) -> None:
        self.context = context

    @classmethod
    def check(cls) -> list[CheckMessage]:
        """Return system check messages about this executor's settings and dependencies."""
        return []

    def start(self) -> None:  # noqa: B027 (an optional hook; most executors start threads)
        """Start threads or connections; called once, before the first ``submit``."""

    @abstractmethod
    def submit(
        self,
        execution: Execution,
        *,
        priority: int,
        timeout: float,
        not_before: float | None = None,
        track: bool = False,
    ) -> None:
        """Run the claimed, queued ``execution`` once, not before the epoch time ``not_before``.

        Higher ``priority`` goes first where work waits; ``timeout`` (seconds) is recorded as
        ``timed_out`` when it passes. With ``track`` the executor calls ``context.on_done``
        when the execution is no longer active.
        """

    def backlog(self) -> int:
        """Return how many handed-over executions wait for a worker in this process."""
        return 0

    def tend(self) -> None:  # noqa: B027 (an optional hook, used where tend_interval is set)
        """Periodic care by the leader (every ``tend_interval`` seconds): lost work, retries."""

    def recover(self, orphans: list[Execution]) -> list[Execution]:
        """Take over what a previous leader left active; return the orphans it does not take.

        Those returned are marked ``interrupted`` (and retried per policy). The default takes
        nothing: work that ran in another scheduler process cannot be finished by this one.
        """
        return orphans

    def shutdown(self, *, grace: float) -> Leftovers:
        """Stop taking work; let running work finish within ``grace`` s; return the rest."""
        return Leftovers()
