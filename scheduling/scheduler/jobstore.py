"""``DjangoJobStore`` made safe for a long-running scheduler.

- Job state is signed (HMAC-SHA256, key derived from ``SECRET_KEY``) together with the id of
  the job it belongs to: bytes that do not verify, or that were signed for another row, are
  never unpickled. A schedule job whose state cannot be restored is rebuilt from its schedule
  row; nothing is deleted because of it.
- Every call the scheduler thread makes is guarded: a locked or lost database is retried with
  back-off and never escapes into APScheduler's loop (where it would silently end the thread).
- Writes are few and short: ``update_job`` is one UPDATE; the sync writes jobs in bulk.
- django-apscheduler's per-event ``DjangoJobExecution`` logging is off: ``Execution`` rows are
  the history, written once per claim and once per outcome.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import pickle
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models.constants import OnConflict
from django.utils.encoding import force_bytes
from django_apscheduler.jobstores import DjangoJobStore
from django_apscheduler.models import DjangoJob

from .. import sql as sql_helpers
from ..conf import conf
from ..models import Schedule
from ..runner import datetime_writer
from .jobs import JOB_PREFIX, BoundedJob, schedule_pk
from .outage import outage, reset_connection

logger = logging.getLogger("scheduling.jobstore")

# Signed state: MAGIC, then the MAC of everything after it.
# - "SJ2" (written now): fingerprint (16 bytes), length of the job id (2 bytes, big-endian),
#   the job id (UTF-8), the pickled state. The id is signed: a blob copied to another row
#   does not verify there.
# - "SJ1" (written before the id was signed): fingerprint, pickled state. Still read, under
#   its own key, and only restored when the unpickled job's id is the row's.
MAGIC = b"SJ2"
MAGIC_V1 = b"SJ1"
MAC_SIZE = 32
FINGERPRINT_SIZE = 16
ID_LENGTH_SIZE = 2
HEADER_SIZE = len(MAGIC) + MAC_SIZE + FINGERPRINT_SIZE
# Separate keys per format: bytes signed in one format never verify as the other.
SALT_V1 = "scheduling.jobstore"
SALT = "scheduling.jobstore.v2"
# Job ids per query where many headers are read (below SQLite's parameter limit).
HEADER_SLICE = 900
# Schedules per UPDATE of their next_run_at on PostgreSQL.
NEXT_RUN_SLICE = 1000


class JobStateInvalid(Exception):
    """Stored job state that does not verify."""


def signing_secret() -> str | bytes:
    return conf.JOB_SIGNING_KEY or settings.SECRET_KEY


@functools.lru_cache(maxsize=8)
def _mac_key(secret: str | bytes, salt: str = SALT) -> bytes:
    # The key ``salted_hmac(salt, ..., secret=secret, algorithm="sha256")`` derives: each
    # signature is then one call of ``hmac.digest``, done in C (a full sync signs every job,
    # and an HMAC object copied for each took longer than pickling the job).
    # The salts are part of every stored signature (SALT_V1 keeps the name of the module that
    # first signed job state), so rows written by earlier releases still verify. Never change
    # them.
    return hashlib.sha256(force_bytes(salt) + force_bytes(secret)).digest()


def _mac(payload: bytes, secret: str | bytes | None = None, salt: str = SALT) -> bytes:
    key = _mac_key(signing_secret() if secret is None else secret, salt)
    return hmac.digest(key, payload, "sha256")


def sign_state(
    state: dict,
    fingerprint: bytes = b"",
    protocol: int = pickle.HIGHEST_PROTOCOL,
    secret: str | bytes | None = None,
) -> bytes:
    """Return signed bytes for a job's ``__getstate__()``, bound to its id (``state["id"]``).

    ``secret`` defaults to ``signing_secret()``.
    """
    fingerprint = fingerprint.ljust(FINGERPRINT_SIZE, b"\0")[:FINGERPRINT_SIZE]
    job_id = str(state["id"]).encode()
    payload = (
        fingerprint
        + len(job_id).to_bytes(ID_LENGTH_SIZE, "big")
        + job_id
        + pickle.dumps(state, protocol)
    )
    return MAGIC + _mac(payload, secret) + payload


def verify_state(
    blob: bytes, secret: str | bytes | None = None, *, job_id: str | None = None
) -> tuple[bytes, bytes]:
    """Return ``(fingerprint, pickled)`` of signed bytes or raise ``JobStateInvalid``.

    Pass the id of the row the bytes were read from as ``job_id`` whenever they will be
    unpickled: bytes signed for another job do not verify. Bytes of the old format ("SJ1")
    carry no signed id; whoever unpickles them must compare the job's id with the row's
    (``SignedDjangoJobStore`` does).
    """
    blob = bytes(blob)
    if len(blob) < HEADER_SIZE:
        raise JobStateInvalid("job state is not signed")
    mac = blob[len(MAGIC) : len(MAGIC) + MAC_SIZE]
    payload = blob[len(MAGIC) + MAC_SIZE :]
    if blob.startswith(MAGIC_V1):
        if not hmac.compare_digest(mac, _mac(payload, secret, SALT_V1)):
            raise JobStateInvalid("job state signature does not verify")
        return payload[:FINGERPRINT_SIZE], payload[FINGERPRINT_SIZE:]
    if not blob.startswith(MAGIC):
        raise JobStateInvalid("job state is not signed")
    if not hmac.compare_digest(mac, _mac(payload, secret)):
        raise JobStateInvalid("job state signature does not verify")
    start = FINGERPRINT_SIZE + ID_LENGTH_SIZE
    end = start + int.from_bytes(payload[FINGERPRINT_SIZE:start], "big")
    if job_id is not None and payload[start:end] != job_id.encode():
        raise JobStateInvalid("job state was signed for another job")
    return payload[:FINGERPRINT_SIZE], payload[end:]


class SignedDjangoJobStore(DjangoJobStore):
    """A ``DjangoJobStore`` with signed job state and guarded database calls."""

    def __init__(
        self,
        *,
        rebuild: Callable[[int, datetime | None], Job | None] | None = None,
        keep_trying: Callable[[], bool] | None = None,
        retry_budget: float = 10.0,
    ) -> None:
        super().__init__()
        self.rebuild = rebuild
        self.keep_trying = keep_trying or (lambda: True)
        self.retry_budget = retry_budget
        self.before_flush: Callable[[], bool] | None = None
        self._pending: dict[str, Job] = {}  # jobs to write whole
        self._moved: dict[str, Job] = {}  # jobs whose next run time alone changed

    def register_event_listeners(self) -> None:
        """Skip django-apscheduler's per-event execution logging (Execution is the history)."""

    # -- guarded database access ----------------------------------------------------------

    def _guard(self, where: str, func: Callable[[], Any], budget: float | None = None) -> Any:
        """Run ``func``, retrying database errors with back-off within ``budget`` seconds."""
        budget = self.retry_budget if budget is None else budget
        deadline = time.monotonic() + budget
        delay = 0.05
        while True:
            try:
                result = func()
            except DatabaseError as exc:
                outage.failed(where, exc)
                reset_connection()
                if time.monotonic() + delay > deadline or not self.keep_trying():
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
            else:
                outage.ok()
                return result

    # -- signing ----------------------------------------------------------------------------

    def _serialize(self, job: Job, secret: str | bytes | None = None) -> bytes:
        state = job.__getstate__()
        # The row's column holds the run time (``_restore``); an aware datetime in the state
        # cost most of its pickling.
        state["next_run_time"] = None
        return sign_state(state, self._fingerprint_of(job), self.pickle_protocol, secret)

    def _reconstitute_job(self, job_state: bytes, job_id: str) -> Job:
        _fingerprint, pickled = verify_state(job_state, job_id=job_id)
        # Only bytes this process family signed, for this row, reach pickle.
        state = pickle.loads(pickled)  # noqa: S301
        # Old-format bytes carry no signed id: a job copied from another row stops here.
        if not isinstance(state, dict) or state.get("id") != job_id:
            raise JobStateInvalid("job state belongs to another job")
        job = BoundedJob.__new__(BoundedJob)
        job.__setstate__(state)
        job._scheduler = self._scheduler
        job._jobstore_alias = self._alias
        return job

    def _restore(
        self, job_id: str, job_state: bytes, next_run_time: datetime | None = None
    ) -> Job | None:
        try:
            job = self._reconstitute_job(job_state, job_id)
        except Exception as exc:
            logger.warning("Job %s has state that cannot be restored (%s).", job_id, exc)
        else:
            # The column holds the job's run time: a pass that only moves it writes the
            # column alone (``move_job``), and the state keeps the one it was written with.
            job.next_run_time = next_run_time
            return job
        pk = schedule_pk(job_id)
        if pk is not None and self.rebuild is not None:
            job = self.rebuild(pk, next_run_time)
            logger.warning(
                "Job %s was %s from its schedule row.",
                job_id,
                "rebuilt" if job is not None else "dropped (schedule not active)",
            )
            return job
        return None

    # -- BaseJobStore -----------------------------------------------------------------------

    def lookup_job(self, job_id: str) -> Job | None:
        row = self._guard(
            "lookup_job",
            lambda: list(
                DjangoJob.objects.filter(id=job_id).values_list("job_state", "next_run_time")
            ),
        )
        return self._restore(job_id, *row[0]) if row else None

    def get_due_jobs(self, now: datetime) -> list[Job]:
        return self._get_jobs(next_run_time__lte=now)

    def get_next_run_time(self) -> datetime | None:
        # APScheduler asks this at the end of each pass: the moment to write the pass's work.
        self.flush()
        try:
            value = self._guard(
                "get_next_run_time",
                lambda: (
                    DjangoJob.objects.filter(next_run_time__isnull=False)
                    .order_by("next_run_time")
                    .values_list("next_run_time", flat=True)
                    .first()
                ),
                budget=1.0,
            )
        except DatabaseError:
            # Wake up again soon rather than sleeping forever on "no jobs".
            return datetime.now(UTC) + timedelta(seconds=1)
        return value

    def _get_jobs(self, **filters: Any) -> list[Job]:
        rows = self._guard(
            "get_jobs",
            lambda: list(
                DjangoJob.objects.filter(**filters)
                .order_by("next_run_time")
                .values_list("id", "job_state", "next_run_time")
            ),
        )
        jobs = []
        for job_id, job_state, next_run_time in rows:
            job = self._restore(job_id, job_state, next_run_time)
            if job is not None:
                jobs.append(job)
        return jobs

    def add_job(self, job: Job) -> None:
        self.write_jobs([job])

    def update_job(self, job: Job) -> None:
        """Defer the write: a pass's updates go out together in ``flush()``."""
        self._moved.pop(job.id, None)
        self._pending[job.id] = job

    def move_job(self, job: Job) -> None:
        """Defer the write of a job whose next run time is all that changed (``flush()``).

        Only the ``next_run_time`` column is written: a fire no longer pickles, signs and
        rewrites the whole job state.
        """
        if job.id not in self._pending:
            self._moved[job.id] = job

    def flush(self) -> None:
        """Run ``before_flush`` (the pass's claims), then write the deferred job updates.

        The order matters: a job's next run time moves on only after its occurrences are
        claimed. If the claims fail, or ``before_flush`` says the pass must not count (the
        lease was lost), the updates are dropped and the same occurrences are offered again.
        """
        pending, self._pending = self._pending, {}
        moved, self._moved = self._moved, {}
        try:
            proceed = self.before_flush() if self.before_flush is not None else True
        except Exception:
            logger.exception("Could not claim this pass's occurrences; they will be offered again.")
            reset_connection()
            return
        if not proceed or not (pending or moved):
            return
        jobs = [*pending.values(), *moved.values()]
        secret = signing_secret()
        ops = connection.ops
        # Identifiers come from the model, quoted; values are parameters.
        table, next_run, state, key = (
            ops.quote_name(name)
            for name in (DjangoJob._meta.db_table, "next_run_time", "job_state", "id")
        )
        full_sql = f"UPDATE {table} SET {next_run} = %s, {state} = %s WHERE {key} = %s"  # noqa: S608
        move_sql = f"UPDATE {table} SET {next_run} = %s WHERE {key} = %s"  # noqa: S608
        adapt = datetime_writer()
        full = [
            (adapt(job.next_run_time), self._serialize(job, secret), job.id)
            for job in pending.values()
        ]
        moves = [(adapt(job.next_run_time), job.id) for job in moved.values()]
        schedules = [
            (pk, job.next_run_time) for job in jobs if (pk := schedule_pk(job.id)) is not None
        ]

        def write() -> None:
            with transaction.atomic(), connection.cursor() as cursor:
                if full:
                    cursor.executemany(full_sql, full)
                if moves:
                    cursor.executemany(move_sql, moves)
                if schedules:
                    store_next_run_times(schedules)

        try:
            self._guard("update_job", write)
        except DatabaseError:
            # The occurrences were claimed already; a stale next_run_time only makes the next
            # pass offer them again, and the claims' unique constraint makes that a no-op.
            logger.error("Could not store the next run time of %d job(s); will retry.", len(jobs))

    def remove_job(self, job_id: str) -> None:
        self._pending.pop(job_id, None)
        self._moved.pop(job_id, None)

        def delete() -> int:
            with transaction.atomic():
                count, _detail = DjangoJob.objects.filter(id=job_id).delete()
                pk = schedule_pk(job_id)
                if pk is not None:
                    Schedule.objects.filter(pk=pk).update(next_run_at=None)
                return count

        if not self._guard("remove_job", delete):
            raise JobLookupError(job_id)

    def remove_all_jobs(self) -> None:
        self._guard("remove_all_jobs", lambda: DjangoJob.objects.all().delete())

    # -- bulk access for the sync -----------------------------------------------------------

    @staticmethod
    def _fingerprint_of(job: Job) -> bytes:
        try:
            return bytes.fromhex(job.kwargs.get("fingerprint", ""))
        except (AttributeError, ValueError):
            return b""

    def signed_rows(self, jobs: Iterable[Job]) -> list[tuple[str, Any, bytes]]:
        """The ``(id, next_run_time, job_state)`` rows of ``jobs``, signed, for ``replace_jobs``."""
        secret = signing_secret()
        adapt = datetime_writer()
        return [(job.id, adapt(job.next_run_time), self._serialize(job, secret)) for job in jobs]

    def write_jobs(self, jobs: Iterable[Job]) -> int:
        """Insert or replace ``jobs`` in bulk; return how many were written."""
        return self.replace_jobs(jobs)[0]

    def delete_jobs(self, job_ids: Iterable[str]) -> int:
        """Delete the jobs ``job_ids`` (missing ones are ignored); return how many were."""
        return self.replace_jobs((), job_ids)[1]

    def replace_jobs(
        self,
        jobs: Iterable[Job],
        remove: Iterable[str] = (),
        then: Callable[[], Any] | None = None,
        batch_size: int = 500,
        signed: list[tuple[str, Any, bytes]] | None = None,
    ) -> tuple[int, int]:
        """Upsert ``jobs``, delete ``remove``, run ``then``: one transaction, retried whole.

        Return ``(written, removed)``. The upsert is one ``executemany`` of plain SQL rather
        than ``bulk_create(update_conflicts=True)``: building a model instance per job and
        letting the compiler prepare each value cost half a full sync. The conflict clause is
        the backend's own (``on_conflict_suffix_sql``). On PostgreSQL, many jobs are streamed
        into a temporary table with ``COPY`` and upserted from it by one statement.
        ``signed`` are the jobs' rows as ``signed_rows`` returned them, if the caller has them.
        """
        # Signed outside the transaction: the slow part needs no database lock.
        params = self.signed_rows(jobs) if signed is None else signed
        ops = connection.ops
        ids = list(remove)
        if not (params or ids or then):
            return 0, 0
        columns = ["id", "next_run_time", "job_state"]
        # Identifiers come from the model, quoted; values are parameters.
        sql = "INSERT INTO {} ({}) VALUES (%s, %s, %s) {}".format(  # noqa: S608
            ops.quote_name(DjangoJob._meta.db_table),
            ", ".join(map(ops.quote_name, columns)),
            ops.on_conflict_suffix_sql(
                [DjangoJob._meta.get_field(name) for name in columns],
                OnConflict.UPDATE,
                columns[1:],
                columns[:1],
            ),
        )

        staged = len(params) >= sql_helpers.COPY_FROM and sql_helpers.copies()

        def write() -> int:
            removed = 0
            with transaction.atomic():
                if staged:
                    _upsert_staged(params)
                elif params:
                    with connection.cursor() as cursor:
                        cursor.executemany(sql, params)
                for start in range(0, len(ids), batch_size):
                    chunk = ids[start : start + batch_size]
                    removed += DjangoJob.objects.filter(id__in=chunk).delete()[0]
                if then is not None:
                    then()
            return removed

        return len(params), self._guard("write_jobs", write)

    def read_headers(
        self, job_ids: Iterable[str] | None = None, *, pks: tuple[int, int] | None = None
    ) -> dict[str, bytes | None]:
        """Return ``{job_id: fingerprint}`` of schedule jobs (None where state is invalid).

        ``pks=(after, last)``: the jobs of the schedules whose primary key is in that range
        (a chunk of a full sync), joined in one query instead of listing their ids: a
        million ids in lists of 900 took a full sync on PostgreSQL 9 seconds.
        """
        if pks is not None:
            rows = self._guard("read_headers", functools.partial(_job_states_between, *pks))
        elif job_ids is None:
            qs = DjangoJob.objects.filter(id__startswith=JOB_PREFIX).values_list("id", "job_state")
            rows = self._guard("read_headers", lambda: list(qs))
        else:
            # In slices (a change to many schedules must not overflow a parameter limit), as
            # plain SQL: the ORM's preparation of each id cost more than the query.
            wanted = list(job_ids)
            rows = []
            for start in range(0, len(wanted), HEADER_SLICE):
                part = wanted[start : start + HEADER_SLICE]
                rows += self._guard("read_headers", functools.partial(_job_states, part))
        headers: dict[str, bytes | None] = {}
        secret = signing_secret()
        for job_id, blob in rows:
            try:
                headers[job_id] = verify_state(blob, secret, job_id=job_id)[0]
            except JobStateInvalid as exc:
                logger.warning("Job %s has state that does not verify (%s).", job_id, exc)
                headers[job_id] = None
        return headers

    def count_schedule_jobs(self) -> int:
        return self._guard(
            "count_schedule_jobs",
            lambda: DjangoJob.objects.filter(id__startswith=JOB_PREFIX).count(),
        )

    def schedule_job_ids(self, *, after: str = "", limit: int = 1000) -> list[str]:
        """Return up to ``limit`` ids of schedule jobs after ``after``, in id order."""
        return self._guard(
            "schedule_job_ids",
            lambda: list(
                DjangoJob.objects.filter(id__startswith=JOB_PREFIX, id__gt=after)
                .order_by("id")
                .values_list("id", flat=True)[:limit]
            ),
        )


def _job_states_between(after: int, last: int) -> list[tuple[str, bytes]]:
    """Return ``(id, job_state)`` of the jobs of the schedules with ``after < pk <= last``."""
    ops = connection.ops
    job, key, state = (
        ops.quote_name(name) for name in (DjangoJob._meta.db_table, "id", "job_state")
    )
    schedule = ops.quote_name(Schedule._meta.db_table)
    pk = ops.quote_name(cast("str", Schedule._meta.pk.column))
    # Identifiers come from the models, quoted; values are parameters.
    sql = (
        f"SELECT j.{key}, j.{state} FROM {job} j INNER JOIN {schedule} s"  # noqa: S608
        f" ON j.{key} = %s || CAST(s.{pk} AS TEXT) WHERE s.{pk} > %s AND s.{pk} <= %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [JOB_PREFIX, after, last])
        return cursor.fetchall()


def _job_states(job_ids: list[str]) -> list[tuple[str, bytes]]:
    """Return ``(id, job_state)`` of the jobs ``job_ids`` that exist."""
    ops = connection.ops
    # Identifiers come from the model, quoted; values are parameters.
    sql = "SELECT {}, {} FROM {} WHERE {} IN ({})".format(  # noqa: S608
        ops.quote_name("id"),
        ops.quote_name("job_state"),
        ops.quote_name(DjangoJob._meta.db_table),
        ops.quote_name("id"),
        ", ".join(["%s"] * len(job_ids)),
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, job_ids)
        return cursor.fetchall()


def _upsert_staged(params: list[tuple[str, Any, bytes]]) -> None:
    """PostgreSQL: upsert ``(id, next_run_time, job_state)`` rows through a staged COPY."""
    ops = connection.ops
    table, key, next_run, state = (
        ops.quote_name(name)
        for name in (DjangoJob._meta.db_table, "id", "next_run_time", "job_state")
    )
    # One row per id: an upsert may not touch a row twice. The last one given wins, as it
    # did with a statement per row.
    rows = {row[0]: row for row in params}.values()
    definition = [("id", "text"), ("next_run_time", "timestamptz"), ("job_state", "bytea")]
    with sql_helpers.staged("scheduling_job_stage", definition, rows) as cursor:
        # Identifiers come from the model, quoted; the values are in the staged table.
        cursor.execute(
            f"INSERT INTO {table} ({key}, {next_run}, {state})"  # noqa: S608
            f" SELECT id, next_run_time, job_state FROM scheduling_job_stage"
            f" ON CONFLICT ({key}) DO UPDATE"
            f" SET {next_run} = EXCLUDED.{next_run}, {state} = EXCLUDED.{state}"
        )


def store_next_run_times(values: list[tuple[int, datetime | None]], *, bulk: bool = False) -> None:
    """Write ``next_run_at`` of many schedules (bulk_update's CASE is slow).

    On PostgreSQL one UPDATE joins two arrays per ``NEXT_RUN_SLICE`` schedules (a
    statement per row costs a round trip and an index update each: half a cold full sync);
    elsewhere one ``executemany`` of plain UPDATEs (SQLite runs them in the process). Callers
    run it inside their transaction, next to the job store writes it mirrors.

    ``bulk`` (a full sync's chunk): on PostgreSQL, from ``COPY_FROM`` values on, they are
    streamed into a temporary table with ``COPY`` and applied by one UPDATE that leaves the
    rows holding their value already alone. Not for the scheduler's passes: a temporary
    table each second would churn the system catalogs.
    """
    ops = connection.ops
    # Identifiers come from the model, quoted; values are parameters.
    table = ops.quote_name(Schedule._meta.db_table)
    # Concrete fields always have a column (the type allows None for others).
    column = ops.quote_name(cast("str", Schedule._meta.get_field("next_run_at").column))
    pk = ops.quote_name(cast("str", Schedule._meta.pk.column))
    adapt = datetime_writer()
    # One value per schedule, the last given: a join of an UPDATE would pick any of them.
    # In key order: the recorder locks the same schedule rows in that order.
    params = [(adapt(when), key) for key, when in sorted(dict(values).items())]
    if bulk and len(params) >= sql_helpers.COPY_FROM and sql_helpers.copies():
        # A row that holds its value already is not rewritten (each rewrite updates every
        # index).
        rows = [(key, at) for at, key in params]
        definition = [("id", "int8"), ("at", "timestamptz")]
        with sql_helpers.staged("scheduling_next_run", definition, rows) as cursor:
            cursor.execute(
                f"UPDATE {table} SET {column} = v.at FROM scheduling_next_run AS v"  # noqa: S608
                f" WHERE {table}.{pk} = v.id AND {table}.{column} IS DISTINCT FROM v.at"
            )
        return
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            cursor.executemany(
                f"UPDATE {table} SET {column} = %s WHERE {pk} = %s",  # noqa: S608
                params,
            )
            return
        # Two arrays, not a VALUES list: the planner joined a VALUES list of a thousand rows by
        # hashing it against a scan of the whole table (a million rows read for each slice of
        # a full sync), and an unnest by the primary key's index.
        for start in range(0, len(params), NEXT_RUN_SLICE):
            part = params[start : start + NEXT_RUN_SLICE]
            cursor.execute(
                f"UPDATE {table} SET {column} = v.at"  # noqa: S608
                " FROM unnest(%s::timestamptz[], %s::bigint[]) AS v(at, id)"
                f" WHERE {table}.{pk} = v.id",
                [[at for at, _key in part], [key for _at, key in part]],
            )
