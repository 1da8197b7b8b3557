"""The one task of the ``django_tasks`` executor: ``execute(execution_id)``.

Workers import it by its path (``scheduling.executors.django_tasks.tasks.execute``, which
the backend stores with each enqueued task). Importing this module needs Django's task
framework (``django.tasks`` or the ``django_tasks`` backport) and a valid
``SCHEDULING_TASKS_BACKEND``/``SCHEDULING_TASKS_QUEUE``: the decorator validates the task
against that backend. The scheduler imports it only when it enqueues.
"""

from __future__ import annotations

from ...conf import conf
from .compat import framework
from .worker import run_in_worker


# The backend and queue given here are defaults: the scheduler enqueues through
# ``execute.using(backend=..., queue_name=..., ...)`` with the settings of the moment.
@framework().task(backend=conf.TASKS_BACKEND, queue_name=conf.TASKS_QUEUE)
def execute(execution_id: int, timeout: float | None = None) -> None:
    """Run execution ``execution_id`` (once: a duplicate finds it no longer queued)."""
    run_in_worker(execution_id, timeout=timeout)
