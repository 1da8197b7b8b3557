"""The scheduler's side of the ``celery`` executor: publish claimed executions, look after them."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.core.checks import Error
from django.utils import timezone

from ...conf import conf
from ...models import Execution, Status
from ...scheduler.outage import OutageLog
from ..base import ExecutorContext
from ..choice import kinds_run_by
from ..heartbeats import LOST_WORKER
from ..queueing import Item, QueueingExecutor

if TYPE_CHECKING:
    from django.core.checks import CheckMessage

logger = logging.getLogger("scheduling.executors.celery")


TASK_NAME = "scheduling.execute"


# Celery's soft time limit comes this long after the watchdog recorded ``timed_out``, so the
# handler is interrupted only once the outcome is settled.
SOFT_LIMIT_DELAY = 1.0


# ``claimed_by`` of executions that a leader published to the broker: celery:<leader>.
PUBLISHED_PREFIX = "celery:"


publish_outage = OutageLog(logger)


# How far before its previous look ``revoke_cancelled`` looks again (commit delays, clock skew).
REVOKE_WINDOW = timedelta(seconds=60)


def task_id_of(execution_id: int) -> str:
    """Return the Celery task id of ``execution_id``'s message (every copy shares it)."""
    return f"scheduling-execution-{execution_id}"


def celery_kinds() -> list[str]:
    """Return the schedule kinds that run on Celery under the current settings."""
    return kinds_run_by(CeleryExecutor.name)


def time_limits(timeout: float) -> tuple[float, float]:
    """Return Celery's ``(soft_time_limit, time_limit)`` for a schedule's timeout."""
    return timeout + SOFT_LIMIT_DELAY, timeout + max(conf.CELERY_HARD_TIMEOUT_GRACE, 2.0)


class CeleryExecutor(QueueingExecutor):
    """Publishes claimed executions to Celery and keeps an eye on what the workers do.

    A ``QueueingExecutor``: the rows of a batch in the broker are marked
    ``celery:<leader>``. Besides, it revokes the tasks of runs that operators cancel.
    """

    name = "celery"
    mark_prefix = PUBLISHED_PREFIX
    queue_label = "the Celery broker"
    lost_worker_error = LOST_WORKER

    def __init__(self, context: ExecutorContext) -> None:
        super().__init__(context)
        # Cancelled executions finished since this instant are still to be revoked.
        self._revoked_up_to = timezone.now()
        self._revoked: dict[int, datetime] = {}  # execution id -> when it was revoked

    @classmethod
    def check(cls) -> list[CheckMessage]:
        """Check that Celery is installed, its app has a broker, and the queue is named."""
        errors: list[CheckMessage] = []
        queue = conf.CELERY_QUEUE
        if not isinstance(queue, str) or not queue:
            errors.append(
                Error(
                    f"SCHEDULING_CELERY_QUEUE must be a non-empty string; got {queue!r}.",
                    hint="Remove SCHEDULING_CELERY_QUEUE to use the default 'scheduling'.",
                    id="scheduling.E032",
                )
            )
        try:
            from celery import current_app
        except ImportError:
            return [
                *errors,
                Error(
                    "The celery executor is selected but Celery is not installed.",
                    hint="pip install 'django-tenant-scheduling[celery]'.",
                    id="scheduling.E033",
                ),
            ]
        if not current_app.conf.broker_url:
            errors.append(
                Error(
                    "The celery executor is selected but the Celery app has no broker.",
                    hint="Define a Celery app for the project (see Celery's 'First steps with "
                    "Django') and set CELERY_BROKER_URL, e.g. 'redis://127.0.0.1:6379/0'.",
                    id="scheduling.E034",
                )
            )
        return errors

    def requeue_after(self) -> float:
        return float(conf.CELERY_REQUEUE_AFTER)

    def tend(self) -> None:
        """The shared care (``QueueingExecutor.tend``), and revoking cancelled runs."""
        super().tend()
        self.revoke_cancelled()

    def revoke_cancelled(self) -> int:
        """Revoke (terminating the worker child) the published executions cancelled lately:
        ``runner.cancel`` has recorded them; stopping the handler is Celery's part.

        ``finished_at`` comes from the clock of the process that cancelled, stamped before its
        transaction committed: the look goes back ``REVOKE_WINDOW`` s before the last one, so
        a late commit or a clock a little behind is still seen; each id is revoked once.
        """
        now = timezone.now()
        since, self._revoked_up_to = self._revoked_up_to - REVOKE_WINDOW, now
        ids = [
            pk
            for pk in Execution.objects.filter(
                status=Status.CANCELLED,
                claimed_by=self.published_mark,
                finished_at__gte=since,
                started_at__isnull=False,
            ).values_list("pk", flat=True)
            if pk not in self._revoked
        ]
        # Forget what has left the window: it is never selected again.
        self._revoked = {pk: at for pk, at in self._revoked.items() if at >= since}
        if not ids:
            return 0
        from celery import current_app

        try:
            current_app.control.revoke(
                [task_id_of(pk) for pk in ids], terminate=True, signal="SIGTERM"
            )
        except Exception as exc:  # broker down: the handler may finish; its result is discarded
            logger.warning("Could not revoke %d cancelled execution(s): %s", len(ids), exc)
            return 0
        self._revoked.update(dict.fromkeys(ids, now))
        logger.info("Revoked %d cancelled Celery execution(s).", len(ids))
        return len(ids)

    def publish_many(self, items: list[Item]) -> int:
        """Publish ``items`` over one broker connection.

        Stops at the first failure; returns how many were published.
        """
        from celery import current_app

        published = 0
        try:
            with current_app.producer_or_acquire() as producer:
                for item in items:
                    soft, hard = time_limits(item.timeout)
                    # By name: the task (``scheduling.tasks.execute``) lives on the workers' side.
                    current_app.send_task(
                        TASK_NAME,
                        # One id per execution, so that a cancel can revoke every copy.
                        task_id=task_id_of(item.execution_id),
                        args=[item.execution_id],
                        kwargs={"timeout": item.timeout},
                        queue=conf.CELERY_QUEUE,
                        # As the task itself declares: a result backend is never asked.
                        ignore_result=True,
                        soft_time_limit=soft,
                        time_limit=hard,
                        producer=producer,
                        retry=True,
                        retry_policy={
                            "max_retries": 2,
                            "interval_start": 0.1,
                            "interval_step": 0.2,
                        },
                    )
                    self.published(item)
                    published += 1
        except Exception as exc:  # kombu raises its own and the transport's errors
            publish_outage.failed("publishing to the Celery broker", exc)
            return published
        publish_outage.ok()
        return published
