"""Claim the occurrences a scheduler pass found due, and hand the runnable ones over.

The claim is the insert of the ``Execution`` row; its unique constraint on (schedule,
scheduled_for, attempt) makes whichever process inserts it the owner of the occurrence. A pass
claims all its occurrences in one transaction; missed, blacked-out and overlapping ones are
recorded as such instead of being run.
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from .. import kinds
from ..models import (
    ACTIVE_STATUSES,
    BlackoutWindow,
    Execution,
    ExecutionCounter,
    Schedule,
    Status,
)
from ..runner import datetime_reader, datetime_writer, finish_many, insert_rows
from ..sql import column, select_by_ids
from .jobs import MAX_RUN_TIMES


def dispatch(
    schedule_id: int,
    run_times: list[datetime],
    *,
    first_due: datetime | None,
    claimed_by: str,
    submit: Callable[[Execution, int], None],
    now: datetime | None = None,
) -> list[Execution]:
    """Claim the due occurrences of one schedule (see ``dispatch_many``)."""
    return dispatch_many(
        [(schedule_id, run_times, first_due)], claimed_by=claimed_by, submit=submit, now=now
    )


Due = tuple[int, list[datetime], datetime | None]


def dispatch_many(
    due: list[Due],
    *,
    claimed_by: str,
    submit: Callable[[Execution, int], None],
    now: datetime | None = None,
    finished: Callable[[], set[int]] | None = None,
    schedules: ScheduleCache | None = None,
) -> list[Execution]:
    """Claim the due occurrences of a scheduler pass and hand the runnable ones to ``submit``.

    ``due`` holds ``(schedule_id, run_times, first_due)`` per job. The pass costs a constant
    number of queries and one transaction for all its claims, however many jobs are due.
    ``finished`` returns the ids of executions that have ended but whose rows do not say so
    yet (the scheduler's ``Recorder``): they do not count as active in the overlap checks.
    ``schedules`` keeps the schedules loaded between passes (else they are read anew).
    Occurrences older than the misfire grace are recorded ``missed``; a coalesced run records
    the occurrences it folded away as one ``missed`` row, so nothing disappears silently.
    """
    now = now or timezone.now()
    pks = {pk for pk, _times, _first in due}
    loaded = (schedules or ScheduleCache()).load(pks)
    live = {
        pk: s for pk, s in loaded.items() if s.enabled and not s.is_paused(now)
    }  # others: the sync loop is about to move or drop their jobs
    if not live:
        return []
    windows: dict[Any, list[Any]] = defaultdict(list)
    for window in BlackoutWindow.objects.filter(tenant_id__in={s.tenant_id for s in live.values()}):
        windows[window.tenant_id].append(window)
    ended = finished() if finished is not None else set()
    active = Counter(schedule_id for schedule_id, pk in _active_executions(live) if pk not in ended)
    wanted = {t for pk, times, _f in due if pk in live for t in times}
    taken = _taken_occurrences(live, wanted)

    planned: list[Execution] = []
    for pk, run_times, first_due in due:
        schedule = live.get(pk)
        if schedule is None:
            continue
        grace = timedelta(seconds=schedule.effective_misfire_grace)
        truncated = len(run_times) > MAX_RUN_TIMES
        if (
            schedule.coalesce
            and run_times
            and first_due is not None
            and first_due < run_times[0]
            and (pk, first_due) not in taken
        ):
            planned.append(
                _row(
                    schedule,
                    first_due,
                    claimed_by,
                    now,
                    status=Status.MISSED,
                    error=(
                        f"Occurrences from {first_due.isoformat()} to before "
                        f"{run_times[0].isoformat()} were missed and coalesced into the "
                        "next run."
                    ),
                )
            )
        for run_time in run_times:
            if (pk, run_time) in taken:
                continue  # another process, or an earlier pass, owns this occurrence
            late = now - run_time
            if late > grace:
                error = (
                    f"Missed by {late.total_seconds():.1f} s "
                    f"(misfire grace {grace.total_seconds():.0f} s)."
                )
                if truncated and run_time == run_times[-2]:
                    error += f" Further occurrences up to {run_times[-1].isoformat()} were missed."
                planned.append(
                    _row(schedule, run_time, claimed_by, now, status=Status.MISSED, error=error)
                )
                continue
            reason = _blocked_reason(schedule, run_time, windows[schedule.tenant_id])
            overlap = "" if reason else schedule.overlap_reason(active[pk])
            # Claimed ahead of its time while others run: whether they still do is decided
            # when it is due (``execute``), not now.
            recheck = bool(overlap) and run_time > now
            reason = reason or ("" if recheck else overlap)
            if reason:
                planned.append(
                    _row(schedule, run_time, claimed_by, now, status=Status.SKIPPED, error=reason)
                )
                continue
            row = _row(schedule, run_time, claimed_by, now)
            row.recheck_overlap = recheck
            planned.append(row)
            active[pk] += 1

    claimed = _insert_claims(planned)
    handed: list[tuple[Execution, Schedule]] = []
    schedule_field, tenant_field = (Execution._meta.get_field(n) for n in ("schedule", "tenant"))
    for row in claimed:
        schedule = live[pk_of(row)]
        # Cached as the rows' relations (their ids are set already): the descriptors' checks
        # cost more than the rest of handing a row over.
        schedule_field.set_cached_value(row, schedule)  # type: ignore[union-attr]
        tenant_field.set_cached_value(row, schedule.tenant)  # type: ignore[union-attr]
        handed.append((row, schedule))
    for row, schedule in handed:
        if row.status == Status.QUEUED:
            submit(row, schedule.priority)
    # Missed and skipped claims are final: their schedules' state is written together.
    finish_many([row for row, _schedule in handed if row.status != Status.QUEUED])
    return claimed


class ScheduleCache:
    """The schedules of due jobs (with tenant and kind), kept while their row is unchanged.

    A pass of a thousand due jobs spent a quarter of its time building their ``Schedule``
    instances. Each pass reads the ``updated_at`` of its schedules (plain SQL) and loads
    only the rows that changed, were not loaded yet or have expired (at most ``max_age``
    seconds after they were loaded); the age bounds how long a change that leaves
    ``updated_at`` alone (a tenant's row) goes unseen, and what the cache holds: only the
    schedules due in the last ``max_age`` seconds.
    """

    def __init__(self, max_age: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.max_age = max_age
        self.clock = clock
        # pk: (updated_at, expires at, schedule)
        self._entries: dict[int, tuple[datetime, float, Schedule]] = {}

    def load(self, pks: set[int]) -> dict[int, Schedule]:
        """Return ``{pk: Schedule}`` of the schedules ``pks`` that exist."""
        now = self.clock()
        self._entries = {pk: entry for pk, entry in self._entries.items() if now <= entry[1]}
        stamps = _updated_at(pks) if self._entries else {}
        reload = [
            pk
            for pk in pks
            if (entry := self._entries.get(pk)) is None or stamps.get(pk) != entry[0]
        ]
        if reload:
            for pk in reload:
                self._entries.pop(pk, None)  # changed, or gone
            for schedule in Schedule.objects.select_related("tenant", *kinds.relations()).filter(
                pk__in=reload
            ):
                # Each lives a random half to all of max_age: the thousand schedules of one
                # pass, loaded together, expired together too, and every max_age seconds one
                # pass reloaded all of them (300 ms at 1,000 fires a second, and the next pass
                # started that late). Spread, each pass reloads a share.
                expires = now + random.uniform(self.max_age / 2, self.max_age)  # noqa: S311
                self._entries[schedule.pk] = (schedule.updated_at, expires, schedule)
        return {pk: entry[2] for pk in pks if (entry := self._entries.get(pk)) is not None}

    def clear(self) -> None:
        self._entries.clear()


def _active_executions(schedules: Any) -> list[tuple[int, int]]:
    """``(schedule_id, id)`` of the queued and running executions of ``schedules``."""
    where = f"{column(Execution, 'status')} IN (%s, %s)"
    return select_by_ids(Execution, "schedule", "id", schedules, where, list(ACTIVE_STATUSES))


def _taken_occurrences(schedules: Any, times: set[datetime]) -> set[tuple[int, datetime]]:
    """``(schedule_id, scheduled_for)`` of the first attempts of ``schedules`` at ``times``."""
    if not times:
        return set()
    rows = select_by_ids(
        Execution,
        "schedule",
        "scheduled_for",
        schedules,
        f"{column(Execution, 'attempt')} = 1 "
        f"AND {column(Execution, 'scheduled_for')} IN ({', '.join(['%s'] * len(times))})",
        list(map(datetime_writer(), times)),
    )
    read = datetime_reader()
    return {(pk, read(at)) for pk, at in rows}


def _updated_at(pks: set[int]) -> dict[int, datetime]:
    """``{pk: updated_at}`` of the schedules ``pks``."""
    rows = select_by_ids(Schedule, "id", "updated_at", pks)
    read = datetime_reader()
    return {pk: read(at) for pk, at in rows}


def pk_of(row: Execution) -> int:
    """Return the schedule id of a claim row (claims are always of a schedule)."""
    if row.schedule_id is None:
        raise ValueError(f"Execution {row.pk} belongs to no schedule.")
    return row.schedule_id


def _row(
    schedule: Schedule,
    scheduled_for: datetime,
    claimed_by: str,
    now: datetime,
    *,
    status: str = Status.QUEUED,
    error: str = "",
) -> Execution:
    return Execution.for_occurrence(
        schedule, scheduled_for, status=status, claimed_by=claimed_by, error=error, now=now
    )


def _insert_claims(rows: list[Execution]) -> list[Execution]:
    """Insert claim rows in one transaction; fall back to one by one on a conflict."""
    if not rows:
        return []
    try:
        with transaction.atomic():
            inserted = insert_rows(rows)
            # Missed and skipped claims are final at once: counted with their insert.
            ExecutionCounter.objects.count_finished(r for r in inserted if r.is_finished)
            return inserted
    except IntegrityError:
        # Another process claimed one of them meanwhile: claim each on its own.
        claimed = []
        for row in rows:
            row.pk = None
            try:
                with transaction.atomic():
                    row.save(force_insert=True)
                    if row.is_finished:
                        ExecutionCounter.objects.count_finished([row])
            except IntegrityError:
                continue
            claimed.append(row)
        return claimed


def _blocked_reason(schedule: Schedule, at: datetime, windows: list[Any]) -> str:
    """Why the occurrence at ``at`` may not run whatever else runs (tenant, blackout), or ''."""
    tenant = schedule.tenant
    if not getattr(tenant, "is_active", True):
        return f"Tenant {tenant} is inactive."
    for window in windows:
        if window.schedule_id in (None, schedule.pk) and window.contains(at):
            return f"The occurrence falls in blackout window {window.name!r}."
    return ""
