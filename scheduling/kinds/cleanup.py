"""Deleting a tenant's old rows of a registered cleanup target, in batches.

Each batch selects at most ``batch_size`` primary keys and deletes those rows in its own short
transaction, then (on SQLite) leaves the write lock free for a moment, so a purge of millions of
rows never holds a long lock nor starves other writers (the scheduler's own writes wait for at
most about one batch) and stops cleanly between batches when its execution's time runs out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.apps import apps
from django.db import connections, router, transaction
from django.db.models import QuerySet, signals

from ..conf import conf
from ..context import ExecutionContext
from ..exceptions import SchedulingError
from ..models import CleanupConfig
from ..registry import TaskType, cleanup_targets
from ..retention import retention_days


def target_queryset(entry: TaskType, tenant: Any) -> QuerySet:
    """Return every row of cleanup target ``entry`` that belongs to ``tenant``.

    With no tenant (a system cleanup config) every row: every tenant's and the system's.
    """
    if entry.queryset is not None:
        queryset = entry.queryset(tenant)
    else:
        model = apps.get_model(entry.model or "")
        # The base manager: ``tenant_path`` does the scoping, and a host's default manager may
        # filter by a context (django-scopes, django-multitenant) a system cleanup runs without.
        queryset = model._base_manager.all()
    if entry.tenant_path and tenant is not None:
        # Applied even on top of a custom queryset: tenant scoping must never hinge on one
        # callable remembering to filter.
        queryset = queryset.filter(**{entry.tenant_path: tenant})
    return queryset


def purgeable(entry: TaskType, *, tenant: Any, older_than: datetime) -> QuerySet:
    """Return the rows of ``entry`` that ``tenant`` keeps strictly from before ``older_than``.

    For a target with an ``expiry_field``, ``older_than`` is the current instant: the rows
    whose expiry is strictly before it.
    """
    field_name = entry.expiry_field or entry.datetime_field
    return target_queryset(entry, tenant).filter(**{f"{field_name}__lt": older_than})


def _max_batch(queryset: QuerySet) -> int | None:
    # ``pk__in`` takes one query parameter per key; stay under the backend's limit (SQLite's
    # is 999 on old builds, 32766 on current ones).
    limit = connections[queryset.db].features.max_query_params
    return None if limit is None else max(1, limit - 100)


def purge(
    entry: TaskType,
    *,
    tenant: Any,
    older_than: datetime,
    batch_size: int,
    progress: Callable[[int, int], object] | None = None,
) -> int:
    """Delete the tenant's rows of ``entry`` older than ``older_than``; return how many.

    ``progress(deleted_in_batch, deleted_so_far)`` is called after each batch; when it
    returns ``False`` the purge stops before the next batch (a caller out of time uses that).
    Rows deleted by cascade are not counted, only rows of the target's model.
    """
    queryset = purgeable(entry, tenant=tenant, older_than=older_than)
    model = queryset.model
    limit = _max_batch(queryset)
    size = max(1, min(batch_size, limit) if limit else batch_size)
    using = router.db_for_write(model)
    listened = signals.pre_delete.has_listeners(model) or signals.post_delete.has_listeners(model)
    total = 0
    last_pk: Any = None
    while True:
        batch = queryset if last_pk is None else queryset.filter(pk__gt=last_pk)
        # Selected before the write transaction: a read does not take the write lock.
        pks = list(batch.order_by("pk").values_list("pk", flat=True)[:size])
        if not pks:
            break
        started = time.monotonic()
        doomed = queryset.filter(pk__in=pks)
        if not listened:
            # Django loads each row it deletes (for signals and cascades); with nobody
            # listening, the keys do: a thousand executions' results and tracebacks decoded
            # in Python held the GIL the scheduler's own threads need, and took longer than
            # the DELETE itself.
            doomed = doomed.select_related(None).only("pk")
        with transaction.atomic(using=using):
            # Deleting through the filtered queryset re-applies the conditions, so a row that
            # changed since it was selected (an execution retried) is left alone.
            _count, per_model = doomed.delete()
        held = time.monotonic() - started
        deleted = per_model.get(model._meta.label, 0)
        total += deleted
        # Keys only ever grow past the last batch: a row that could not be deleted is not
        # selected again, so the loop always ends.
        last_pk = pks[-1]
        if progress is not None and progress(deleted, total) is False:
            break
        if len(pks) < size:
            break
        _let_writers_in(using, held)
    return total


def _let_writers_in(using: str, held: float) -> None:
    """On SQLite, leave the write lock free for a moment after a batch.

    SQLite has one write lock and no queue: a writer that finds it taken sleeps and retries
    (1, 2, 5 ... 25 ms apart at first, up to 100 ms apart later; see sqlite3_busy_timeout). A
    purge that starts its next batch right after a commit would win the lock again and again
    and keep such a writer waiting for as long as it runs. A pause about as long as the
    batch held the lock (25 to 100 ms) spans at least one retry of every waiting writer.
    """
    connection = connections[using]
    if connection.vendor != "sqlite" or connection.in_atomic_block:
        return  # other databases lock rows, not the database; inside a transaction: no use
    time.sleep(min(0.1, max(0.025, held)))


def run_cleanup_config(cleanup: CleanupConfig, context: ExecutionContext) -> dict:
    """Run one cleanup config: purge its target's rows older than ``retain_days``.

    A target with an ``expiry_field`` purges its rows whose expiry has passed instead; a
    target with its own ``purge`` (files) does the whole run.
    """
    entry = cleanup_targets.get(cleanup.cleanup_target)
    options = entry.validate_options(cleanup.options)
    if entry.system_only and cleanup.tenant_id is not None:
        raise SchedulingError(
            f"The cleanup target {entry.key!r} runs only as a system schedule (no tenant)."
        )
    if entry.purge is not None:
        return entry.purge(cleanup, context, options)
    retain_days = cleanup.retain_days
    if options.get("use_tenant_retention"):
        # The tenant's current retention, not a copy taken when the schedule was saved (a
        # system schedule has no tenant: the setting's).
        tenant = cleanup.tenant
        retain_days = retention_days(tenant) if tenant else int(conf.EXECUTION_RETENTION_DAYS)
    # Rows with an expiry field go once it has passed, whatever retain_days says.
    age = timedelta(0) if entry.expiry_field else timedelta(days=retain_days)
    cutoff = context.now() - age
    batch_size = cleanup.batch_size or conf.CLEANUP_BATCH_SIZE
    batches = 0
    complete = True
    last = time.monotonic()

    def progress(deleted: int, total: int) -> bool:
        nonlocal batches, complete, last
        batches += 1
        now = time.monotonic()
        took, last = now - last, now
        # Stop while the next batch, as slow as the last one, still fits in the timeout: the
        # execution then ends "succeeded" with what it did, and the next run continues.
        if context.remaining <= 2 * took:
            complete = False
            context.logger.info(
                "Cleanup %s of tenant %s stopped after %s rows: out of time.",
                entry.key,
                cleanup.tenant_id,
                total,
            )
            return False
        return True

    deleted = purge(
        entry,
        tenant=cleanup.tenant,
        older_than=cutoff,
        batch_size=batch_size,
        progress=progress,
    )
    if not complete:
        # The last batch may have been the final one after all.
        complete = not purgeable(entry, tenant=cleanup.tenant, older_than=cutoff).exists()
    result = {
        "target": entry.key,
        "deleted": deleted,
        "batches": batches,
        "retain_days": retain_days,
        "cutoff": cutoff.isoformat(),
        "complete": complete,
    }
    if entry.expiry_field:
        # Expired rows go whatever retain_days says.
        del result["retain_days"]
        result["expiry_field"] = entry.expiry_field
    return result
