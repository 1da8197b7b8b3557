"""Deleting a tenant's old rows of a registered cleanup target, in batches.

Each batch selects at most ``batch_size`` primary keys and deletes those rows (the rows of that
key range that still match; ``links_to_clear``) in its own short
transaction, then (on SQLite) leaves the write lock free for a moment, so a purge of millions of
rows never holds a long lock nor starves other writers (the scheduler's own writes wait for at
most about one batch) and stops cleanly between batches when its execution's time runs out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

from django.apps import apps
from django.db import connections, router, transaction
from django.db.models import (
    DO_NOTHING,
    SET_NULL,
    Exists,
    Field,
    ForeignObjectRel,
    Model,
    OuterRef,
    QuerySet,
    deletion,
    signals,
)

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
    links = links_to_clear(model, using)
    total = 0
    last_pk: Any = None
    while True:
        batch = queryset if last_pk is None else queryset.filter(pk__gt=last_pk)
        # Selected before the write transaction: a read does not take the write lock.
        pks = list(batch.order_by("pk").values_list("pk", flat=True)[:size])
        if not pks:
            break
        started = time.monotonic()
        with transaction.atomic(using=using):
            # Deleting through the filtered queryset re-applies the conditions, so a row that
            # changed since it was selected (an execution retried) is left alone.
            if links is None:
                deleted = _delete_collected(queryset.filter(pk__in=pks), model)
            else:
                deleted = _delete_range(
                    batch.filter(pk__lte=pks[-1]), links, last_pk, pks[-1], using
                )
        held = time.monotonic() - started
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


def links_to_clear(model: type[Model], using: str) -> list[Field] | None:
    """The foreign keys to ``model`` that a purge sets to NULL itself; None: Django must collect.

    Django's ``delete()`` loads the rows it deletes, their related rows, and sends every row's
    key back in lists (``IN (...)``), a hundred at a time: for a batch of a thousand rows most
    of the purge's time was Python building and parsing those lists, holding the GIL the
    scheduler's threads need (``bench/history.py``). Without signal receivers, parent models
    or generic relations, and with only ``DO_NOTHING`` or ``SET_NULL`` (on the key) pointing
    to the model, one ``DELETE`` of the batch's key range does the same, followed by one
    ``UPDATE`` per ``SET_NULL`` link. That order needs foreign keys checked at commit, as
    Django creates them on PostgreSQL and SQLite.
    """
    if not connections[using].features.can_defer_constraint_checks:
        return None
    opts = model._meta
    if signals.pre_delete.has_listeners(model) or signals.post_delete.has_listeners(model):
        return None
    if (opts.concrete_model or model)._meta.parents:
        return None
    if any(hasattr(field, "bulk_related_objects") for field in opts.private_fields):
        return None
    # Django 6.1's database-level actions (DB_CASCADE, DB_SET_NULL...) need nothing from us.
    left_to_the_database = getattr(deletion, "SKIP_COLLECTION", frozenset({DO_NOTHING}))
    links: list[Field] = []
    for relation in deletion.get_candidate_relations_to_delete(opts):
        field = cast("ForeignObjectRel", relation).field
        on_delete = field.remote_field.on_delete
        if on_delete in left_to_the_database:
            continue
        # (A composite foreign object has no single target field: Django's collector.)
        single = len(field.foreign_related_fields) == 1
        if on_delete is SET_NULL and single and field.target_field == opts.pk:
            links.append(field)
            continue
        return None  # CASCADE, PROTECT, RESTRICT, SET_DEFAULT, SET(...): Django's collector
    return links


def _delete_collected(doomed: QuerySet, model: type[Model]) -> int:
    """Delete ``doomed`` through Django's collector (signals, cascades); return how many."""
    if not (signals.pre_delete.has_listeners(model) or signals.post_delete.has_listeners(model)):
        # With nobody listening, the keys do: a thousand rows' results and tracebacks decoded
        # in Python would only be thrown away.
        doomed = doomed.select_related(None).only("pk")
    _count, per_model = doomed.delete()
    return per_model.get(model._meta.label, 0)


def _delete_range(doomed: QuerySet, links: list[Field], after: Any, upto: Any, using: str) -> int:
    """Delete ``doomed`` (one batch's key range) in one statement on database ``using``, then
    set the ``links`` to the rows it deleted to NULL; return how many rows it deleted."""
    deleted = doomed._raw_delete(using)
    model = doomed.model
    for field in links:
        within = {f"{field.attname}__lte": upto}
        if after is not None:
            within[f"{field.attname}__gt"] = after
        gone = ~Exists(model._base_manager.using(using).filter(pk=OuterRef(field.attname)))
        field.model._base_manager.using(using).filter(gone, **within).update(**{field.name: None})
    return deleted


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
