"""One occurrence: claim it, run it, record the outcome, update the schedule's state.

The claim is the insert of the ``Execution`` row. Its unique constraint on (schedule,
scheduled_for, attempt) means that whichever process inserts it owns the occurrence; any other
process, or this one offered the same occurrence again, gets an IntegrityError and skips it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import traceback as tb
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from django.conf import settings
from django.core.exceptions import EmptyResultSet, ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import (
    DEFAULT_DB_ALIAS,
    DatabaseError,
    IntegrityError,
    connection,
    connections,
    transaction,
)
from django.db.models import DateTimeField, Field, JSONField, QuerySet
from django.db.models.sql.constants import MULTI
from django.utils import timezone, translation

from . import alerts, kinds, logs, pings, signals
from .conf import conf
from .context import ExecutionContext
from .exceptions import ExecutionCancelled, ExecutionTimeout, StateConflict, UnknownTaskType
from .integrations import otel, sentry
from .models import (
    ACTIVE_STATUSES,
    FAILURE_STATUSES,
    RAN_STATUSES,
    RETRYABLE_STATUSES,
    Execution,
    ExecutionCounter,
    Schedule,
    Status,
    TriggerKind,
    TriggerType,
)
from .sql import array_casts, copies, keys_in, update_by_key

if TYPE_CHECKING:
    from tenants.models import Tenant

logger = logging.getLogger("scheduling.runner")

ERROR_LIMIT = 100_000


def worker_id() -> str:
    """Return ``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def claim(
    schedule: Schedule,
    scheduled_for: datetime,
    *,
    attempt: int = 1,
    trigger: str = TriggerKind.SCHEDULE,
    status: str = Status.QUEUED,
    claimed_by: str = "",
    error: str = "",
    triggered_by: Any = None,
    run_after: datetime | None = None,
    options: dict[str, Any] | None = None,
) -> Execution | None:
    """Insert the execution row of one occurrence; None if another process owns it."""
    execution = Execution.for_occurrence(
        schedule,
        scheduled_for,
        attempt=attempt,
        trigger=trigger,
        status=status,
        claimed_by=claimed_by,
        error=error,
        run_after=run_after,
        options=options,
    )
    execution.triggered_by = triggered_by
    try:
        with transaction.atomic():
            execution.save(force_insert=True)
            if execution.is_finished:  # skipped or missed: final from the start
                ExecutionCounter.objects.count_finished([execution])
    except IntegrityError:
        return None
    return execution


def load(execution_id: int) -> Execution | None:
    """Return execution ``execution_id`` with its schedule, kind and tenants, or None."""
    return (
        Execution.objects.select_related(
            "tenant", "schedule", "schedule__tenant", *kinds.relations("schedule__")
        )
        .filter(pk=execution_id)
        .first()
    )


def execute(
    execution_id: int,
    *,
    worker: str | None = None,
    execution: Execution | None = None,
    writer: OutcomeWriter | None = None,
) -> Execution | None:
    """Run a queued execution in this thread and record its outcome through ``writer``.

    ``execution`` may be passed already loaded (with its schedule and kind) to save a query.
    ``writer`` defaults to ``DIRECT`` (each write a conditional update, now); the scheduler's
    thread executor passes its batching ``Recorder``.
    """
    writer = writer or DIRECT
    if execution is None or execution.pk != execution_id:
        execution = load(execution_id)
    if execution is None:
        return None
    if skipped_for_overlap(execution, writer):
        return execution
    if not writer.start(execution, worker=worker or worker_id()):
        return execution
    signals.execution_started.send(
        sender=Execution, execution=execution, schedule=execution.schedule
    )
    with otel.execution_span(execution) as traced:
        monitor = sentry.start_monitor(execution)
        pings.send(execution, pings.START)
        status, outcome = _run(execution)
        error = outcome.get("error", "")
        pings.send(execution, pings.event_of(status), status=status, error=error)
        if monitor is not None:
            monitor(status)
        traced(status, error)
    writer.finish(execution, status, **outcome)
    return execution


class OutcomeWriter:
    """How an execution run in this process records its start and its outcome.

    This one writes each at once, by a conditional update: a start only moves a ``queued``
    row to ``running``, an outcome only ends an active one, so a late result never
    overwrites a timeout or an interruption (it is logged as discarded). The scheduler's
    ``Recorder`` keeps these semantics and commits the writes of many executions together.
    """

    def start(self, execution: Execution, *, worker: str) -> bool:
        """Mark ``execution`` running on ``worker``; False if it is no longer queued."""
        return execution.mark_started(worker=worker)

    def finish(self, execution: Execution, status: str, **outcome: Any) -> None:
        """Record the final ``status`` and apply its consequences (state, retry, alerts).

        Raises ``OutcomeNotRecorded`` (a ``DatabaseError``) when the database fails while
        the outcome is written: it carries the outcome, to be written once it is back.
        """
        try:
            recorded = execution.mark_finished(status, **outcome)
        except DatabaseError as exc:
            raise OutcomeNotRecorded(status, outcome, exc) from exc
        if recorded:
            finish(execution)
        else:
            log_discarded(execution)

    def flush(self, timeout: float = 5.0) -> bool:
        """Make the outcomes handed over so far visible to queries; False on time-out."""
        return True

    def finished_unwritten(self) -> set[int]:
        """The ids of executions that have ended but whose rows do not say so yet."""
        return set()


DIRECT = OutcomeWriter()


class OutcomeNotRecorded(DatabaseError):
    """The handler ran, but the database failed while its outcome was being written."""

    def __init__(self, status: str, outcome: dict[str, Any], cause: DatabaseError) -> None:
        super().__init__(f"{cause} (the outcome, {status}, was not recorded)")
        self.status = status
        self.outcome = outcome


def skipped_for_overlap(execution: Execution, writer: OutcomeWriter | None = None) -> bool:
    """Record ``execution`` skipped if it was claimed ahead and others of its schedule still run.

    ``dispatch_many`` marks such a claim ``recheck_overlap`` (in memory) instead of deciding
    the overlap policy before the occurrence is due. Returns True if it was skipped.
    """
    writer = writer or DIRECT
    schedule = execution.schedule
    if not getattr(execution, "recheck_overlap", False) or schedule is None:
        return False
    # Outcomes still on their way are not active any more: read, not waited for (a flush
    # per execution made the workers queue behind the writer).
    ended = writer.finished_unwritten()
    active = sum(
        1
        for pk in Execution.objects.filter(
            schedule_id=schedule.pk, status__in=ACTIVE_STATUSES
        ).values_list("pk", flat=True)
        if pk != execution.pk and pk not in ended
    )
    reason = schedule.overlap_reason(active)
    if not reason:
        return False
    writer.finish(execution, Status.SKIPPED, error=reason)
    return True


def _run(execution: Execution) -> tuple[str, dict[str, Any]]:
    """Run the started ``execution``'s kind; return its final status and outcome fields."""
    schedule = execution.schedule
    if schedule is None:
        return Status.FAILED, {"error": "The schedule was deleted before the execution started."}
    kind_object = schedule.get_kind_object()
    try:
        options = run_options(kind_object, execution)
    except UnknownTaskType as exc:
        return Status.FAILED, {"error": str(exc)}
    except ValidationError as exc:
        return Status.FAILED, {"error": f"This run's options are not valid: {exc.messages}"}
    if options is not None:
        # The handler reads its options from the schedule it is given: this run's own.
        kind_object.options = options  # type: ignore[attr-defined]
    context = ExecutionContext(
        execution=execution,
        schedule=kind_object,
        tenant=execution.tenant,
        scheduled_for=execution.scheduled_for,
        timeout=kind_object.effective_timeout,
        options=options or {},
        logger=logs.execution_logger(execution),
    )
    try:
        with tenant_context(execution.tenant if execution.tenant_id else None):
            result = kinds.run_kind(kind_object, context)
    except TenantContextError as exc:
        report_failure(execution, exc)
        return Status.FAILED, {"error": str(exc), "traceback": tb.format_exc()[-ERROR_LIMIT:]}
    except UnknownTaskType as exc:
        return Status.FAILED, {"error": str(exc)}
    except ExecutionTimeout as exc:
        return Status.TIMED_OUT, {"error": f"Timed out after {context.timeout:g} s: {exc}"}
    except ExecutionCancelled as exc:
        return Status.CANCELLED, {"error": str(exc)}
    except Exception as exc:
        report_failure(execution, exc)
        return Status.FAILED, {
            "error": _error_text(exc),
            "traceback": tb.format_exc()[-ERROR_LIMIT:],
        }
    return Status.SUCCEEDED, {"result": _jsonable(result)}


def report_failure(execution: Execution, exc: BaseException) -> None:
    """Tell the host's monitoring of a handler's exception: Sentry and the execution's span,
    where the project set them up."""
    sentry.capture_failure(execution, exc)
    otel.record_exception(exc)


class TenantContextError(Exception):
    """The tenant's context (``SCHEDULING_TENANT_CONTEXT``) could not be entered or left."""


@contextmanager
def tenant_context(tenant: Tenant | None) -> Iterator[None]:
    """Run the body inside ``SCHEDULING_TENANT_CONTEXT(tenant)``, left again afterwards.

    Around the handler only: claiming, starting and recording the outcome happen outside it,
    in the default context (the app's tables are shared, not a tenant's). A system schedule
    (no tenant) and a project without the setting run the handler as it is. The context is
    left also when the handler fails or times out; failing to enter or to leave it raises
    ``TenantContextError``, which fails the execution with that reason.
    """
    factory = conf.get_tenant_context()
    if factory is None or tenant is None:
        yield
        return
    try:
        manager = factory(tenant)
        manager.__enter__()
    except Exception as exc:
        raise TenantContextError(
            f"The tenant's context could not be entered (SCHEDULING_TENANT_CONTEXT): "
            f"{_error_text(exc)}"
        ) from exc
    try:
        yield
    except BaseException:
        if not _leave(manager, *sys.exc_info()):
            raise
    else:
        _leave(manager, None, None, None)


def _leave(manager: AbstractContextManager[Any], *exc_info: Any) -> bool | None:
    try:
        return manager.__exit__(*exc_info)
    except Exception as exc:
        if exc is exc_info[1]:  # the context re-raised the handler's own exception
            raise
        raise TenantContextError(
            f"The tenant's context could not be left (SCHEDULING_TENANT_CONTEXT): "
            f"{_error_text(exc)}"
        ) from exc


def run_options(schedule: Schedule, execution: Execution) -> dict[str, Any] | None:
    """Return the options of this run: the schedule's, with the execution's merged over them.

    None for a kind without options. A manual run's options were validated when it was
    queued; the merge is validated again (the schedule may have changed since).
    """
    own = getattr(schedule, "options", None)
    if own is None:
        return None
    if not execution.options:
        return dict(own)
    merged = {**own, **execution.options}
    spec = kinds.KINDS.get(schedule.kind)
    if spec is None:
        return merged
    return spec.registry.get(spec.type_key(schedule)).validate_options(merged)


def log_discarded(execution: Execution) -> None:
    """Log that a late outcome lost to a timeout or an interruption (its write matched 0 rows)."""
    status = Execution.objects.filter(pk=execution.pk).values_list("status", flat=True).first()
    logger.warning(
        "Execution %s finished after it was marked %s; its result is discarded.",
        execution.pk,
        status,
        extra=logs.execution_fields(execution, status=status),
    )


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:ERROR_LIMIT]


def _jsonable(value: Any) -> Any:
    """Return a copy of a handler's result as JSON stores it (dates as text, tuples as lists)."""
    if value is None:
        return None
    try:
        # JSON's own types: the module's shared encoder, its C path (building a
        # DjangoJSONEncoder for every result cost four times as much).
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = json.dumps(value, cls=DjangoJSONEncoder)
    return json.loads(text)


def time_out(execution_id: int, *, detail: str = "") -> Execution | None:
    """Mark a running execution ``timed_out`` (a thread may still be running it)."""
    execution = load(execution_id)
    if execution is None or execution.status not in ACTIVE_STATUSES:
        return execution
    timeout = execution.schedule.effective_timeout if execution.schedule else 0
    error = f"Timed out after {timeout} s (timeout_seconds)"
    if execution.mark_finished(
        Status.TIMED_OUT, error=f"{error}; {detail}." if detail else f"{error}."
    ):
        finish(execution)
    return execution


# Executions written per transaction where a shutdown or a takeover interrupts thousands.
INTERRUPT_BATCH = 200


def interrupt(executions: Iterable[Execution], reason: str) -> int:
    """Mark active ``executions`` interrupted and apply the retry policy to each.

    Written in transactions of ``INTERRUPT_BATCH`` executions, each with its counters; then,
    as ``finish`` would, each is announced and the alerts and dependents that concern it
    follow. A shutdown or a takeover may bring thousands: this keeps them to seconds.
    Returns how many were still active (the others had ended meanwhile: left alone).
    """
    pending = list(executions)
    count = 0
    for start in range(0, len(pending), INTERRUPT_BATCH):
        count += _interrupt_batch(pending[start : start + INTERRUPT_BATCH], reason)
    return count


def _interrupt_batch(batch: list[Execution], reason: str) -> int:
    ended: list[Execution] = []
    with transaction.atomic():
        statuses = lock_statuses([execution.pk for execution in batch])
        writes: list[tuple[Execution, dict[str, Any]]] = []
        for execution in batch:
            if statuses.get(execution.pk) not in ACTIVE_STATUSES:
                continue  # it ended meanwhile
            values = dict(execution.outcome_values(Status.INTERRUPTED, error=reason))
            for key, value in values.items():
                setattr(execution, key, value)
            writes.append((execution, values))
            ended.append(execution)
        write_rows(writes)
        retried = record_outcomes(ended)
        ExecutionCounter.objects.count_finished(ended)
    kinds.load_kind_rows(e.schedule for e in ended if e.schedule is not None)
    _follow_up(ended, retried)
    return len(ended)


def lock_statuses(ids: list[int]) -> dict[int, str]:
    """Return the status of the executions ``ids``, their rows locked for this transaction.

    The writes that follow are decided on these statuses: a row that is no longer active (a
    timeout or an interruption came first) is left alone. On PostgreSQL the rows are locked
    (``FOR UPDATE``). On SQLite one connection writes at a time: with IMMEDIATE transactions
    (the project's settings) the lock is held from the start; a deferred one that read before
    another connection committed fails its first write instead (and is written again).
    """
    rows = Execution.objects.filter(pk__in=ids).order_by("pk")
    if connection.features.has_select_for_update:
        rows = rows.select_for_update()
    return dict(rows.values_list("pk", "status"))


def _unchanged(value: Any) -> Any:
    return value


def datetime_reader(db: Any = connection) -> Callable[[Any], Any]:
    """Return a function that converts a datetime column's value as read by plain SQL (SQLite
    returns text) as the ORM would, for connection ``db``.

    On SQLite with ``USE_TZ`` it is the backend's converter without its per-value setting
    lookups: a full sync reads six datetimes of each schedule, and the converter cost more
    than the read. Other backends' converters, if any, are used as they are.
    """
    convert = getattr(db.ops, "convert_datetimefield_value", None)
    if convert is None:
        return _unchanged
    if db.vendor != "sqlite" or not settings.USE_TZ:
        return lambda value: convert(value, None, db)
    zone = db.timezone
    parse = datetime.fromisoformat

    def read(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = parse(value)
            except ValueError:  # not a format Python parses: the backend's own parser
                return convert(value, None, db)
        return value if value.tzinfo is not None else value.replace(tzinfo=zone)

    return read


def datetime_writer(db: Any = connection) -> Callable[[Any], Any]:
    """Return the backend's ``adapt_datetimefield_value`` of connection ``db``; on SQLite with
    ``USE_TZ``, the same without its per-value setting lookups (a full sync writes two
    datetimes a schedule)."""
    adapt = db.ops.adapt_datetimefield_value
    if db.vendor != "sqlite" or not settings.USE_TZ:
        return cast("Callable[[Any], Any]", adapt)
    zone = db.timezone

    def write(value: Any) -> Any:
        if value is None or not isinstance(value, datetime) or value.utcoffset() is None:
            return adapt(value)  # None, an expression, or naive (which it refuses)
        if value.tzinfo is zone is UTC:
            return str(value)[:-6]  # the text without its "+00:00"
        return str(value.astimezone(zone).replace(tzinfo=None))

    return write


def values_rows(queryset: QuerySet[Any]) -> list[tuple[Any, ...]]:
    """Return ``list(queryset)`` of a ``values_list()`` queryset, converted more cheaply.

    The rows are the compiler's own, converted column by column: datetimes by
    ``datetime_reader``, SQLite's booleans by ``bool``, every other column by the ORM's
    converters of that column. Django applies its converters to each value through a
    generic loop, which cost a full sync more than reading the rows.
    """
    query = queryset.query
    names = (*query.extra_select, *query.values_select, *query.annotation_select)
    if queryset._fields is None or tuple(queryset._fields) != names:  # type: ignore[attr-defined]
        return list(queryset)  # columns the ORM reorders: its own iterable knows how
    db = connections[queryset.db]
    compiler = query.get_compiler(using=queryset.db)
    loader = _timestamptz_loader(db)
    if loader is None:
        chunks = compiler.execute_sql(MULTI)
    else:
        try:
            sql, params = compiler.as_sql()
        except EmptyResultSet:
            return []
        with db.cursor() as cursor:
            # This cursor's own loader (psycopg copies the connection's map per cursor).
            cursor.cursor.adapters.register_loader("timestamptz", loader)
            cursor.execute(sql, params)
            chunks = [cursor.fetchall()]
    converters: list[Callable[[Any], Any] | None] = []
    for expression, _sql, _alias in compiler.select:
        field = expression.output_field
        kind = field.get_internal_type()
        if kind == "DateTimeField" and not hasattr(field, "from_db_value"):
            converters.append(datetime_reader(db) if loader is None else _zoned(db.timezone))
        elif kind == "BooleanField" and db.vendor == "sqlite":
            converters.append(lambda value: None if value is None else bool(value))
        else:
            found = compiler.get_converters([expression])
            converters.append(_chain(found[0][0], expression, db) if found else None)
    columns = [(index, convert) for index, convert in enumerate(converters) if convert]
    rows: list[tuple[Any, ...]] = []
    for chunk in chunks:
        for raw in chunk:
            if columns:
                row = list(raw)
                for index, convert in columns:
                    row[index] = convert(row[index])
                raw = row
            rows.append(tuple(raw))
    return rows


def _timestamptz_loader(db: Any) -> type | None:
    """On PostgreSQL through psycopg 3 with its C extension: psycopg's C ``timestamptz``
    loader (else None).

    Django's loader (``psycopg_any.BaseTzLoader``) extends psycopg's Python one: its parsing
    by regular expression was two thirds of reading the rows of a full sync. The C loader
    reads the value in the session's time zone, which Django set to the connection's; the
    caller then gives it that zone (``_zoned``), as Django's loader does.
    """
    if not copies(db):
        return None
    import psycopg
    from psycopg.types.datetime import TimestamptzLoader

    oid = psycopg.postgres.types["timestamptz"].oid
    base = psycopg.postgres.adapters.get_loader(oid, psycopg.pq.Format.TEXT)
    if base is None or base is TimestamptzLoader:
        return None  # no C extension: Django's own loader is as fast
    return base


def _zoned(zone: Any) -> Callable[[Any], Any]:
    """``value.replace(tzinfo=zone)``, None kept: what Django's loader does after parsing."""

    def convert(value: Any) -> Any:
        return None if value is None else value.replace(tzinfo=zone)

    return convert


def _chain(functions: list[Any], expression: Any, db: Any) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        for function in functions:
            value = function(value, expression, db)
        return value

    return convert


class Prepared:
    """Prepare values for the database by their model fields, each distinct value once.

    The rows of a batch share most of their values (a status, a time, an empty error): each
    is prepared by ``Field.get_db_prep_save`` the first time and looked up afterwards. Aware
    datetimes of a plain ``DateTimeField`` go through ``datetime_writer``, as the field would
    prepare them, without its checks of a naive value and the backend's per-value setting
    lookups; each instant once too (equal instants in other zones are written alike).
    """

    def __init__(self, db: Any) -> None:
        self.db = db
        # Keyed by the field's id: a field's own hash is computed in Python, on every call.
        self._done: dict[tuple[int, Any, int], Any] = {}
        self._write_datetime = datetime_writer(db)
        self._datetimes: dict[tuple[datetime, int], Any] = {}

    def __call__(self, field: Field[Any, Any], value: Any) -> Any:
        if value is None and not isinstance(field, JSONField):
            return None  # what every other field of these models makes of it
        if type(value) is datetime and value.tzinfo is not None and type(field) is DateTimeField:
            # A pass's claims share their due time and their claim time. Keyed with the fold:
            # the two wall times of a fold in one zone compare equal.
            instant = (value, value.fold)
            written = self._datetimes.get(instant)
            if written is None:
                written = self._datetimes[instant] = self._write_datetime(value)
            return written
        key = (id(field), value, value.fold if type(value) is datetime else 0)
        try:
            return self._done[key]
        except KeyError:
            prepared = self._done[key] = field.get_db_prep_save(value, self.db)
            return prepared
        except TypeError:  # not hashable (a JSON object)
            return field.get_db_prep_save(value, self.db)


def write_rows(writes: list[tuple[Execution, dict[str, Any]]]) -> None:
    """Write each execution's values: one ``executemany`` per set of columns.

    Plain SQL: compiling an ORM UPDATE per execution was half of the writer thread's time.
    Values are prepared by their model fields, as the ORM would.
    """
    groups: dict[tuple[str, ...], list[list[Any]]] = {}
    # The connection itself, not the proxy: each of its attributes is a thread-local lookup.
    db = connections[DEFAULT_DB_ALIAS]
    prepare = Prepared(db)
    for execution, values in writes:
        names = tuple(sorted(values))
        groups.setdefault(names, []).append(
            [*(prepare(_field(name), values[name]) for name in names)] + [execution.pk]
        )
    for names, params in groups.items():
        update_by_key(db, Execution, names, params)


# Rows per INSERT statement of ``insert_rows`` (fewer where the backend limits parameters).
INSERT_BATCH = 100


def insert_rows(rows: list[Execution]) -> list[Execution]:
    """Insert new execution rows and set their primary keys, as ``bulk_create`` would.

    Plain SQL: one multi-row ``INSERT ... RETURNING`` per batch, the values prepared by
    their model fields. ``bulk_create``'s compiler spent some 150 microseconds a row, which
    at a thousand claims a second was half of the scheduler's pass. Backends that cannot
    return the keys of a multi-row insert go through ``bulk_create``.
    """
    db = connections[DEFAULT_DB_ALIAS]
    if not rows or not db.features.can_return_rows_from_bulk_insert:
        return Execution.objects.bulk_create(rows)
    meta = Execution._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    quote = db.ops.quote_name
    # Batches of one size as far as they go: the driver may parse each statement's text
    # (psycopg's client-side binding does), and caches what it parsed by that text.
    per_batch = max(1, min(INSERT_BATCH, (db.features.max_query_params or 30_000) // len(fields)))
    row_sql = "(" + ", ".join(["%s"] * len(fields)) + ")"
    head = "INSERT INTO {} ({}) VALUES ".format(  # noqa: S608 (quoted identifiers)
        quote(meta.db_table), ", ".join(quote(cast("str", f.column)) for f in fields)
    )
    tail = f" RETURNING {quote(cast('str', meta.pk.column))}" if meta.pk is not None else ""
    prepare = Prepared(db)
    arrays = array_casts(db, fields) if copies(db) and len(rows) > 1 and tail else None
    with db.cursor() as cursor:
        if arrays is not None:
            # PostgreSQL through psycopg 3: one INSERT of arrays, one per column, cast to each
            # field's type. The statements of 100 rows each were bound on the client, then
            # parsed and planned by the server: 115 to 175 ms for a pass's 1,000 claims,
            # against 65 to 85 ms so. The keys come back in the order of the rows (ORDER BY
            # the arrays' ordinality), as bulk_create relies on for a multi-row VALUES.
            names = ", ".join(f"c{index}" for index in range(len(fields)))
            cursor.execute(
                f"{head.removesuffix(' VALUES ')} SELECT {names}"  # noqa: S608
                f" FROM unnest({', '.join(arrays)}) WITH ORDINALITY AS v({names}, n)"
                f" ORDER BY n{tail}",
                [[prepare(f, getattr(row, f.attname)) for row in rows] for f in fields],
            )
            _set_keys(rows, cursor.fetchall(), db.alias)
            return rows
        for start in range(0, len(rows), per_batch):
            batch = rows[start : start + per_batch]
            # The rows are complete (no auto_now field): their attributes are the values.
            params = [
                prepare(field, getattr(row, field.attname)) for row in batch for field in fields
            ]
            cursor.execute(head + ", ".join([row_sql] * len(batch)) + tail, params)
            _set_keys(batch, cursor.fetchall(), db.alias)
    return rows


def _set_keys(rows: list[Execution], keys: list[tuple[Any, ...]], alias: str) -> None:
    """Give each inserted row its key (``RETURNING``'s rows, in the rows' order), as saved."""
    for row, (pk,) in zip(rows, keys, strict=True):
        row.pk = pk
        row._state.adding = False
        row._state.db = alias


def _field(name: str) -> Field[Any, Any]:
    """A concrete field of ``Execution`` (the start and outcome values name only those)."""
    return cast("Field[Any, Any]", Execution._meta.get_field(name))


def finish(execution: Execution) -> Execution:
    """Update the schedule's state after a final status; queue a retry; send signals."""
    retry = record_outcome(execution)
    announce(execution)
    alerts.on_execution_finished(execution)  # never raises; one query without rules
    if execution.schedule is not None and retry is None:
        trigger_dependents(execution.schedule, execution.scheduled_for)
    return execution


def finish_many(executions: list[Execution]) -> None:
    """``finish`` for many final executions: their schedules' state in a few statements.

    The scheduler records a pass's missed and skipped claims this way: one by one, a pass
    of a thousand coalesced occurrences held its loop for seconds, and the next pass found
    the same thousand late again.
    """
    if not executions:
        return
    with transaction.atomic():
        retried = record_outcomes(executions)
    _follow_up(executions, retried)


def _follow_up(executions: list[Execution], retried: set[int]) -> None:
    """What ``finish`` does after the outcome, for many: announce each, apply the alert
    rules that concern them, queue the dependents of those not retried."""
    language = translation.get_language()  # once for the lines of the batch
    for execution in executions:
        announce(execution, language=language)
    for execution in alerts.needing_rules(executions):
        alerts.on_execution_finished(execution)
    for execution in with_dependents([e for e in executions if e.pk not in retried]):
        if execution.schedule is not None:
            trigger_dependents(execution.schedule, execution.scheduled_for)


def record_outcome(execution: Execution) -> Execution | None:
    """Write the schedule's state for a final status and queue a retry; return the retry."""
    schedule = execution.schedule
    if schedule is None:
        return None
    retry = _maybe_retry(schedule, execution)
    _update_schedules([(schedule.pk, *_schedule_state(schedule, execution, retry))])
    return retry


def record_outcomes(executions: list[Execution]) -> set[int]:
    """``record_outcome`` for each of ``executions``; return the pks of those retried.

    Retries and the disabling checks are decided per execution; the schedules' state is
    written by one ``executemany`` per set of columns (``_update_schedules``).
    """
    retried: set[int] = set()
    updates: list[ScheduleUpdate] = []
    for execution in executions:
        schedule = execution.schedule
        if schedule is None:
            continue
        retry = _maybe_retry(schedule, execution)
        if retry is not None:
            retried.add(execution.pk)
        updates.append((schedule.pk, *_schedule_state(schedule, execution, retry)))
    _update_schedules(updates)
    return retried


# (schedule pk, values to set, counters to increment by one)
ScheduleUpdate = tuple[int, dict[str, Any], tuple[str, ...]]


def _schedule_state(
    schedule: Schedule, execution: Execution, retry: Execution | None
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Return the values an outcome sets on its schedule and the counters it increments."""
    status = execution.status
    values: dict[str, Any] = {"last_status": status}
    increments: list[str] = []
    if status in RAN_STATUSES or status == Status.INTERRUPTED:
        values["last_run_at"] = execution.started_at or execution.scheduled_for
    if status in RAN_STATUSES:
        increments.append("run_count")
    if status == Status.SUCCEEDED:
        values["consecutive_failures"] = 0
        values["last_success_at"] = execution.finished_at
    elif status in FAILURE_STATUSES and retry is None:
        increments.append("consecutive_failures")
    if _should_disable(schedule, execution, retry):
        # Bump updated_at: the sync loop then removes the job.
        values["enabled"] = False
        values["updated_at"] = timezone.now()
    return values, tuple(increments)


def _update_schedules(updates: list[ScheduleUpdate]) -> None:
    """Apply the schedule updates in order, one ``executemany`` per set of columns.

    Plain SQL, as ``write_rows``. A schedule named twice keeps its order: its second update
    goes in a later round than its first. Within a round the rows are written in key order,
    so two writers lock shared schedule rows in the same order.
    """
    rounds: list[list[ScheduleUpdate]] = []
    seen: dict[int, int] = {}
    for update in updates:
        index = seen.get(update[0], 0)
        seen[update[0]] = index + 1
        if index == len(rounds):
            rounds.append([])
        rounds[index].append(update)
    db = connections[DEFAULT_DB_ALIAS]  # not the proxy (see write_rows)
    prepare = Prepared(db)
    fields = {f.name: f for f in Schedule._meta.concrete_fields}
    for updates_of_round in rounds:
        groups: dict[tuple[tuple[str, ...], tuple[str, ...]], list[list[Any]]] = {}
        for pk, values, increments in sorted(updates_of_round, key=lambda u: u[0]):
            names = tuple(sorted(values))
            groups.setdefault((names, increments), []).append(
                [prepare(fields[name], values[name]) for name in names] + [pk]
            )
        for (names, increments), params in groups.items():
            update_by_key(db, Schedule, names, params, increments)


def announce(execution: Execution, *, language: str | None = None) -> None:
    """Log the execution's line and send ``execution_finished`` (after its outcome commits).

    The line's level follows the outcome, and it carries the execution's fields as
    attributes (``scheduling.logs``). ``language``: the active one, where the caller knows it.
    """
    logs.log_outcome(logger, execution, language=language)
    signals.execution_finished.send(
        sender=Execution, execution=execution, schedule=execution.schedule, status=execution.status
    )


def with_dependents(executions: list[Execution]) -> list[Execution]:
    """Return those of ``executions`` whose schedule has dependents (one query)."""
    ids = {e.schedule_id for e in executions if e.schedule_id is not None}
    if not ids:
        return []
    upstreams = keys_in(Schedule.depends_on.through, "to_schedule", ids)
    return [e for e in executions if e.schedule_id in upstreams]


def trigger_dependents(upstream: Schedule, cycle: datetime) -> list[Execution]:
    """Queue (or skip) the dependents of ``upstream`` whose upstreams all finished ``cycle``.

    A dependent runs once every upstream's latest attempt for the same cycle (scheduled_for)
    succeeded; it is recorded ``skipped`` with the reason when one of them ended otherwise.
    The claim's unique constraint keeps two upstreams finishing at once from queuing it twice.
    """
    # Most schedules have no dependents: a probe of the link table answers that for a tenth of
    # the cost of the joined query, which then needs no join.
    ids = list(
        Schedule.depends_on.through.objects.filter(to_schedule_id=upstream.pk).values_list(
            "from_schedule_id", flat=True
        )
    )
    if not ids:
        return []
    dependents = list(
        Schedule.objects.filter(pk__in=ids, enabled=True)
        .select_related("tenant")
        .prefetch_related("depends_on")
    )
    created = []
    for dependent in dependents:
        upstreams = list(dependent.depends_on.all())
        latest: dict[int, Execution] = {}
        for row in Execution.objects.filter(schedule__in=upstreams, scheduled_for=cycle).order_by(
            "schedule_id", "attempt"
        ):
            if row.schedule_id is not None:
                latest[row.schedule_id] = row
        failed = [
            (u, latest[u.pk])
            for u in upstreams
            if u.pk in latest and latest[u.pk].is_finished and latest[u.pk].status != "succeeded"
        ]
        pending = [u for u in upstreams if u.pk not in latest or not latest[u.pk].is_finished]
        if failed:
            name, row = failed[0][0].name, failed[0][1]
            skipped = claim(
                dependent,
                cycle,
                trigger=TriggerKind.DEPENDENCY,
                status=Status.SKIPPED,
                error=f"Upstream {name!r} did not succeed for this cycle ({row.status}).",
            )
            if skipped is not None:
                created.append(finish(skipped))
        elif not pending:
            queued = claim(dependent, cycle, trigger=TriggerKind.DEPENDENCY)
            if queued is not None:
                created.append(queued)
    return created


def _maybe_retry(schedule: Schedule, execution: Execution) -> Execution | None:
    if execution.status not in FAILURE_STATUSES or execution.trigger == TriggerKind.MANUAL:
        return None
    if execution.attempt > schedule.max_retries:
        return None
    delay = min(
        schedule.retry_backoff_seconds * 2 ** (execution.attempt - 1), conf.MAX_RETRY_BACKOFF
    )
    return claim(
        schedule,
        execution.scheduled_for,
        attempt=execution.attempt + 1,
        trigger=TriggerKind.RETRY,
        run_after=timezone.now() + timedelta(seconds=delay),
    )


def _should_disable(schedule: Schedule, execution: Execution, retry: Execution | None) -> bool:
    if retry is not None or execution.trigger == TriggerKind.MANUAL:
        return False
    if schedule.trigger_type == TriggerType.ONCE and execution.status in (
        *RAN_STATUSES,
        Status.INTERRUPTED,
    ):
        return True
    if schedule.max_executions and execution.status == Status.SUCCEEDED:
        succeeded = Execution.objects.filter(schedule=schedule, status=Status.SUCCEEDED).count()
        return succeeded >= schedule.max_executions
    return False


def cancel(execution: Execution, *, by: Any = None) -> Execution:
    """Cancel ``execution``: a queued one never starts, a running one is asked to stop.

    The row becomes ``cancelled`` at once (a conditional update, like a timeout), so whatever
    the handler still returns is discarded. A running handler learns of it through
    ``context.cancelled``; an ``async def`` handler is cancelled; the process executor
    terminates its child. Raises ``StateConflict`` for an execution that has finished.
    """
    who = getattr(by, "get_username", lambda: "")()
    error = f"Cancelled by {who}." if who else "Cancelled."
    was = execution.status
    if execution.status in ACTIVE_STATUSES and execution.mark_finished(
        Status.CANCELLED, error=error
    ):
        logger.info(
            "Execution %s cancelled while %s%s.",
            execution.pk,
            was,
            f" by {who}" * bool(who),
            extra=logs.execution_fields(execution),
        )
        finish(execution)
        return execution
    status = Execution.objects.filter(pk=execution.pk).values_list("status", flat=True).first()
    raise StateConflict(
        f"Execution {execution.pk} has already finished ({status}); only a queued or running "
        "execution can be cancelled."
    )


def retry(execution: Execution, *, by: Any = None) -> Execution:
    """Queue the next attempt of a failed, timed-out, interrupted or missed ``execution``.

    The new attempt has the same ``scheduled_for`` (and the same run options) and starts as
    soon as a scheduler picks it up. Raises ``StateConflict`` when the execution did not fail,
    its schedule is gone, or a later attempt of the occurrence exists already.
    """
    if execution.status not in RETRYABLE_STATUSES:
        raise StateConflict(
            f"Execution {execution.pk} is {execution.status}; only a failed, timed-out, "
            "interrupted or missed execution can be retried."
        )
    schedule = execution.schedule
    if schedule is None:
        raise StateConflict(f"The schedule of execution {execution.pk} was deleted.")
    latest = (
        Execution.objects.filter(schedule=schedule, scheduled_for=execution.scheduled_for)
        .order_by("-attempt")
        .values_list("pk", "attempt", "status")
        .first()
    )
    if latest is not None and latest[0] != execution.pk:
        raise StateConflict(
            f"Attempt {latest[1]} of this occurrence exists already (execution {latest[0]}, "
            f"{latest[2]}); retry that one instead."
        )
    # A manual run's retry stays manual: like it, no automatic retries, and a once schedule
    # keeps its own run (``_maybe_retry`` and ``_should_disable`` leave manual runs alone).
    manual = execution.trigger == TriggerKind.MANUAL
    queued = claim(
        schedule,
        execution.scheduled_for,
        attempt=execution.attempt + 1,
        trigger=TriggerKind.MANUAL if manual else TriggerKind.RETRY,
        triggered_by=by if getattr(by, "is_authenticated", False) else None,
        options=execution.options,
    )
    if queued is None:
        raise StateConflict("Another retry of this occurrence was queued at the same moment.")
    return queued


def fire(schedule_id: int, fingerprint: str = "") -> Execution | None:
    """Run schedule ``schedule_id`` once now, in this thread (the job function's target)."""
    schedule = Schedule.objects.select_related("tenant").filter(pk=schedule_id).first()
    if schedule is None:
        return None
    execution = claim(schedule, timezone.now().replace(microsecond=0), claimed_by=worker_id())
    return execute(execution.pk) if execution else None
