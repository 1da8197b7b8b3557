"""The scheduler loop itself under controlled time: across daylight-saving transitions, and over
months of cron extensions (``L``, ``nL``, ``n#k``), calendar schedules and the old day rule.

Each test syncs real schedules into the job store and drives the real pass
(``FencedScheduler._process_jobs``, wired as ``SchedulerService`` wires it, see ``loops.py``)
while ``time_machine`` moves the clock: either straight to the job store's next run time (as the
loop's own wait does) or in fixed steps (a loop that wakes late). What is asserted is the set of
``Execution`` rows the passes claimed: their ``scheduled_for`` instants in UTC, one per
occurrence, none twice, none missing per the schedule's DST policy.

The expected instants of the transition matrix come from ``oracle``, an independent minute-by-
minute walk of the UTC timeline that knows nothing of the triggers; a few slices of it are also
written out by hand, so that the oracle itself is checked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django_apscheduler.models import DjangoJob

from scheduling.models import Execution, Schedule, Status
from scheduling.scheduler.loop import FencedScheduler
from scheduling.scheduler.service import SchedulerService
from tests.factories import make_scan, make_tenant
from tests.scheduling.loops import hand_driven_loop

pytestmark = pytest.mark.django_db

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
MINUTE = timedelta(minutes=1)

# The 2027 transitions: the first instant with the new offset.
TRANSITIONS = {
    ("Europe/Berlin", "spring"): datetime(2027, 3, 28, 1, 0, tzinfo=UTC),  # 02:00 CET -> 03:00
    ("Europe/Berlin", "fall"): datetime(2027, 10, 31, 1, 0, tzinfo=UTC),  # 03:00 CEST -> 02:00
    ("America/New_York", "spring"): datetime(2027, 3, 14, 7, 0, tzinfo=UTC),  # 02:00 EST -> 03:00
    ("America/New_York", "fall"): datetime(2027, 11, 7, 6, 0, tzinfo=UTC),  # 02:00 EDT -> 01:00
}
POLICIES = {"spring": ("run_at_next_valid_time", "skip"), "fall": ("once", "twice")}

# The schedules of the matrix: their trigger fields, and which wall times they name (for the
# oracle; the calendar one also only from its anchor, the local date of its creation).
SCHEDULES: dict[str, dict] = {
    "cron 30 2": {"trigger_type": "cron", "cron_expression": "30 2 * * *"},
    "cron */30": {"trigger_type": "cron", "cron_expression": "*/30 * * * *"},
    "cron 0 *": {"trigger_type": "cron", "cron_expression": "0 * * * *"},
    "calendar daily 02:30": {
        "trigger_type": "calendar",
        "calendar_every": 1,
        "calendar_unit": "day",
        "calendar_time": time(2, 30),
    },
}
WALL_TIMES: dict[str, Callable[[datetime], bool]] = {
    "cron 30 2": lambda wall: (wall.hour, wall.minute) == (2, 30),
    "cron */30": lambda wall: wall.minute in (0, 30),
    "cron 0 *": lambda wall: wall.minute == 0,
    "calendar daily 02:30": lambda wall: (wall.hour, wall.minute) == (2, 30),
}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def oracle(
    zone: ZoneInfo,
    named: Callable[[datetime], bool],
    start: datetime,
    end: datetime,
    *,
    gap: str,
    fold: str,
) -> list[datetime]:
    """The instants in [start, end] at which a schedule naming the wall times ``named`` fires.

    Walks UTC minute by minute: an instant fires when its wall time is named, except the second
    of a wall time that happens twice with ``fold="once"``. Where the offset jumps forward, the
    wall times skipped over that are named fire once, at the first instant after the jump
    (``gap="run_at_next_valid_time"``), or not at all (``gap="skip"``).
    """
    fired: set[datetime] = set()
    instant = start
    while instant <= end:
        local = instant.astimezone(zone)
        wall = local.replace(tzinfo=None)
        twice = (
            wall.replace(tzinfo=zone, fold=0).utcoffset()
            != wall.replace(tzinfo=zone, fold=1).utcoffset()
        )
        if named(wall) and not (twice and local.fold == 1 and fold == "once"):
            fired.add(instant)
        following = instant + MINUTE
        jump = following.astimezone(zone).utcoffset() - local.utcoffset()
        if jump > timedelta(0) and gap == "run_at_next_valid_time" and following <= end:
            skipped = (wall + MINUTE * n for n in range(1, int(jump / MINUTE) + 1))
            if any(named(w) for w in skipped):
                fired.add(following)
        instant = following
    return sorted(fired)


class Hold:
    """An executor that keeps what it is handed: the executions stay queued."""

    def __init__(self) -> None:
        self.handed: list[int] = []

    def submit(self, execution: Execution, **kwargs: object) -> None:
        self.handed.append(execution.pk)


class Loop:
    """A hand-driven scheduler loop (``loops.hand_driven_loop``) and its clock's moves."""

    def __init__(self) -> None:
        self.service = SchedulerService(install_signal_handlers=False)
        self.executor = Hold()
        self.scheduler: FencedScheduler = hand_driven_loop(self.service, self.executor)

    def next_run_time(self) -> datetime | None:
        return (
            DjangoJob.objects.filter(next_run_time__isnull=False)
            .order_by("next_run_time")
            .values_list("next_run_time", flat=True)
            .first()
        )

    def jump(self, clock, until: datetime) -> int:
        """Move the clock to each next run time of the job store up to ``until`` and pass."""
        passes = 0
        while (due := self.next_run_time()) is not None and due <= until:
            clock.move_to(due)
            self.scheduler._process_jobs()
            passes += 1
            assert passes < 10_000, "the loop does not move on"
        clock.move_to(until)
        self.scheduler._process_jobs()
        return passes

    def step(self, clock, until: datetime, step: timedelta) -> None:
        """Pass every ``step`` up to ``until`` (the loop waking late, not at the run times)."""
        now = datetime.now(UTC)
        while now < until:
            now = min(now + step, until)
            clock.move_to(now)
            self.scheduler._process_jobs()


def claimed(schedules: Iterable[Schedule]) -> dict[int, list[datetime]]:
    """The claimed occurrences per schedule (asserting one row each, all queued on time)."""
    schedules = list(schedules)
    rows = list(
        Execution.objects.filter(schedule__in=schedules).values_list(
            "schedule_id", "scheduled_for", "attempt", "status"
        )
    )
    per_occurrence = Counter((pk, when) for pk, when, _attempt, _status in rows)
    twice = [key for key, count in per_occurrence.items() if count > 1]
    assert not twice, f"claimed twice: {twice}"
    assert {attempt for _pk, _when, attempt, _status in rows} <= {1}
    # Not missed, not skipped: every occurrence was claimed to run.
    assert {status for *_x, status in rows} <= {Status.QUEUED}, rows
    result: dict[int, list[datetime]] = {s.pk: [] for s in schedules}
    for pk, when, _attempt, _status in rows:
        result[pk].append(when.astimezone(UTC))
    return {pk: sorted(times) for pk, times in result.items()}


def make(tenant, **fields) -> Schedule:
    fields.setdefault("scan_type", "test_echo")
    fields.setdefault("target", "x")
    # Held executions stay active: let them pile up, and let a late pass still run them.
    fields.setdefault("overlap", "allow")
    fields.setdefault("max_instances", 1000)
    fields.setdefault("misfire_grace_seconds", 2 * 86400)
    return make_scan(tenant=tenant, **fields)


def test_the_transitions_are_where_the_tests_put_them():
    for (zone_name, season), instant in TRANSITIONS.items():
        zone = ZoneInfo(zone_name)
        before = (instant - timedelta(seconds=1)).astimezone(zone).utcoffset()
        after = instant.astimezone(zone).utcoffset()
        assert (after - before) == (
            timedelta(hours=1) if season == "spring" else -timedelta(hours=1)
        )


# -- the transition matrix --------------------------------------------------------------------

# Around each transition: from the afternoon before it to the morning after the next day, so
# the daily schedules fire on the transition day and on the day after.
BEFORE, AFTER = timedelta(hours=13, minutes=50), timedelta(hours=27)


def matrix_cases() -> list:
    return [
        pytest.param(zone, season, policy, mode, id=f"{zone}-{season}-{policy}-{mode}")
        for (zone, season) in TRANSITIONS
        for policy in POLICIES[season]
        for mode in ("jump", "step")
    ]


@pytest.mark.parametrize(("zone_name", "season", "policy", "mode"), matrix_cases())
def test_the_loop_claims_each_occurrence_across_a_transition_once(zone_name, season, policy, mode):
    zone = ZoneInfo(zone_name)
    transition = TRANSITIONS[zone_name, season]
    start, end = transition - BEFORE, transition + AFTER
    policies = {"dst_gap_policy": policy} if season == "spring" else {"dst_fold_policy": policy}
    loop = Loop()
    with time_machine.travel(start, tick=False) as clock:
        tenant = make_tenant(timezone=zone_name)
        schedules = {
            name: make(tenant, name=name, timezone=zone_name, **fields, **policies)
            for name, fields in SCHEDULES.items()
        }
        result = loop.service.sync.full()
        assert (result.written, result.errors) == (len(SCHEDULES), {})
        if mode == "jump":
            loop.jump(clock, end)
        else:
            # 7 minutes: late for most occurrences, never two of one schedule in one pass.
            loop.step(clock, end, timedelta(minutes=7))
    got = claimed(schedules.values())
    gap = policies.get("dst_gap_policy", "run_at_next_valid_time")
    fold = policies.get("dst_fold_policy", "once")
    for name, schedule in schedules.items():
        expected = oracle(zone, WALL_TIMES[name], start, end, gap=gap, fold=fold)
        assert got[schedule.pk] == expected, name
    # The calendar schedule and its cron twin agree to the instant.
    assert got[schedules["calendar daily 02:30"].pk] == got[schedules["cron 30 2"].pk]
    assert len(loop.executor.handed) == sum(map(len, got.values()))


def run_one(zone_name: str, season: str, name: str, **policies: str) -> list[datetime]:
    transition = TRANSITIONS[zone_name, season]
    loop = Loop()
    with time_machine.travel(transition - BEFORE, tick=False) as clock:
        schedule = make(
            make_tenant(timezone=zone_name),
            name=name,
            timezone=zone_name,
            **SCHEDULES[name],
            **policies,
        )
        loop.service.sync.full()
        loop.jump(clock, transition + AFTER)
    return claimed([schedule])[schedule.pk]


class TestSlicesWrittenOut:
    """Some cells of the matrix by hand: they check the oracle as much as the loop."""

    def test_berlin_spring_0230_runs_at_0300_cest_or_skips_the_day(self):
        assert run_one("Europe/Berlin", "spring", "cron 30 2") == [
            utc(2027, 3, 28, 1, 0),  # 02:30 does not exist: 03:00 CEST
            utc(2027, 3, 29, 0, 30),  # 02:30 CEST
        ]
        assert run_one("Europe/Berlin", "spring", "cron 30 2", dst_gap_policy="skip") == [
            utc(2027, 3, 29, 0, 30)
        ]

    def test_berlin_fall_0230_runs_at_the_first_or_at_both(self):
        assert run_one("Europe/Berlin", "fall", "calendar daily 02:30") == [
            utc(2027, 10, 31, 0, 30),  # 02:30 CEST, the first of the two
            utc(2027, 11, 1, 1, 30),  # 02:30 CET
        ]
        assert run_one(
            "Europe/Berlin", "fall", "calendar daily 02:30", dst_fold_policy="twice"
        ) == [utc(2027, 10, 31, 0, 30), utc(2027, 10, 31, 1, 30), utc(2027, 11, 1, 1, 30)]

    def test_new_york_fall_half_hourly_in_the_repeated_hour(self):
        def around(times: list[datetime]) -> list[datetime]:
            return [t for t in times if utc(2027, 11, 7, 4, 30) <= t <= utc(2027, 11, 7, 7, 30)]

        once = around(run_one("America/New_York", "fall", "cron */30"))
        # 00:30 EDT, 01:00 EDT, 01:30 EDT, (01:00 and 01:30 EST not again), 02:00 EST, 02:30 EST
        assert once == [
            utc(2027, 11, 7, 4, 30),
            utc(2027, 11, 7, 5, 0),
            utc(2027, 11, 7, 5, 30),
            utc(2027, 11, 7, 7, 0),
            utc(2027, 11, 7, 7, 30),
        ]
        twice = around(run_one("America/New_York", "fall", "cron */30", dst_fold_policy="twice"))
        assert twice == [utc(2027, 11, 7, 4, 30) + timedelta(minutes=30 * n) for n in range(7)]

    def test_new_york_spring_hourly_stays_hourly_in_utc(self):
        for policy in POLICIES["spring"]:
            times = run_one("America/New_York", "spring", "cron 0 *", dst_gap_policy=policy)
            # 01:00 EST (06:00Z); 02:00 does not exist; 03:00 EDT (07:00Z) once, not twice.
            assert utc(2027, 3, 14, 6) in times and utc(2027, 3, 14, 7) in times
            assert {b - a for a, b in zip(times, times[1:], strict=False)} == {timedelta(hours=1)}

    def test_new_york_spring_0230_and_the_fall_0230_that_is_not_repeated(self):
        assert run_one("America/New_York", "spring", "cron 30 2") == [
            utc(2027, 3, 14, 7, 0),  # 03:00 EDT
            utc(2027, 3, 15, 6, 30),
        ]
        assert run_one("America/New_York", "spring", "cron 30 2", dst_gap_policy="skip") == [
            utc(2027, 3, 15, 6, 30)
        ]
        # In New York the clock repeats 01:00-01:59: 02:30 happens once, at 02:30 EST.
        assert run_one("America/New_York", "fall", "cron 30 2", dst_fold_policy="twice") == [
            utc(2027, 11, 7, 7, 30),
            utc(2027, 11, 8, 7, 30),
        ]


# -- cron extensions and calendar weeks over months -------------------------------------------

MONTHS_START = datetime(2027, 1, 1, 10, 0, tzinfo=UTC)
MONTHS_END = datetime(2027, 5, 1, 10, 0, tzinfo=UTC)


def local_dates(times: list[datetime], zone: ZoneInfo = BERLIN) -> list[date]:
    local = [t.astimezone(zone) for t in times]
    assert {t.time() for t in local} <= {time(9, 0)}, local
    return [t.date() for t in local]


@pytest.mark.parametrize("mode", ["day by day", "jump"])
def test_l_nl_nth_and_fortnightly_calendar_fire_on_their_days_for_four_months(mode):
    loop = Loop()
    with time_machine.travel(MONTHS_START, tick=False) as clock:
        tenant = make_tenant(timezone="Europe/Berlin")
        zone = {"timezone": "Europe/Berlin"}
        last_day = make(tenant, trigger_type="cron", cron_expression="0 9 L * *", **zone)
        last_friday = make(tenant, trigger_type="cron", cron_expression="0 9 * * 5L", **zone)
        second_monday = make(tenant, trigger_type="cron", cron_expression="0 9 * * 1#2", **zone)
        fortnightly = make(
            tenant,
            trigger_type="calendar",
            calendar_every=2,
            calendar_unit="week",
            calendar_weekdays="mon",
            calendar_time=time(9, 0),
            # A Wednesday: the series counts from its week (Monday 4 January), first run after.
            start_at=datetime(2027, 1, 6, 0, 0, tzinfo=BERLIN),
            **zone,
        )
        # No start: it counts from its creation, Friday 1 January at 11:00 in Berlin, on that
        # weekday; 09:00 that day is already past.
        from_creation = make(
            tenant,
            trigger_type="calendar",
            calendar_every=2,
            calendar_unit="week",
            calendar_time=time(9, 0),
            **zone,
        )
        loop.service.sync.full()
        if mode == "jump":
            loop.jump(clock, MONTHS_END)
        else:
            loop.step(clock, MONTHS_END, timedelta(days=1))
    got = claimed([last_day, last_friday, second_monday, fortnightly, from_creation])
    assert local_dates(got[last_day.pk]) == [
        date(2027, 1, 31),
        date(2027, 2, 28),
        date(2027, 3, 31),
        date(2027, 4, 30),
    ]
    assert local_dates(got[last_friday.pk]) == [
        date(2027, 1, 29),
        date(2027, 2, 26),
        date(2027, 3, 26),
        date(2027, 4, 30),
    ]
    assert local_dates(got[second_monday.pk]) == [
        date(2027, 1, 11),
        date(2027, 2, 8),
        date(2027, 3, 8),
        date(2027, 4, 12),
    ]
    assert local_dates(got[fortnightly.pk]) == [
        date(2027, 1, 18),
        date(2027, 2, 1),
        date(2027, 2, 15),
        date(2027, 3, 1),
        date(2027, 3, 15),
        date(2027, 3, 29),
        date(2027, 4, 12),
        date(2027, 4, 26),
    ]
    assert local_dates(got[from_creation.pk]) == [
        date(2027, 1, 15) + timedelta(weeks=2 * n) for n in range(8)
    ]  # 15 January ... 23 April
    # 09:00 in Berlin is 08:00Z in winter and 07:00Z from 28 March on.
    assert got[last_friday.pk][2] == utc(2027, 3, 26, 8, 0)
    assert got[last_day.pk][2] == utc(2027, 3, 31, 7, 0)


# -- the old day rule until the schedule is saved again ---------------------------------------


def test_a_legacy_flagged_schedule_keeps_the_and_rule_until_saved_then_ors():
    loop = Loop()
    with time_machine.travel(datetime(2027, 1, 20, 12, 0, tzinfo=UTC), tick=False) as clock:
        schedule = make(
            make_tenant(timezone="Europe/Berlin"),
            trigger_type="cron",
            cron_expression="0 0 1 * 1",
            timezone="Europe/Berlin",
        )
        # What migration 0006 does to such a schedule.
        Schedule.objects.filter(pk=schedule.pk).update(legacy_day_rule=True)
        loop.service.sync.full()
        loop.step(clock, datetime(2027, 3, 10, 12, 0, tzinfo=UTC), timedelta(days=1))
        old = claimed([schedule])[schedule.pk]
        # Only the Mondays that are the 1st: 1 February and 1 March 2027 (00:00 CET).
        assert old == [utc(2027, 1, 31, 23, 0), utc(2027, 2, 28, 23, 0)]

        schedule = Schedule.objects.get(pk=schedule.pk)
        schedule.save()  # saved whole: cron's rule from now on
        assert Schedule.objects.get(pk=schedule.pk).legacy_day_rule is False
        result = loop.service.sync.incremental()
        assert result.written == 1  # the job is rebuilt with the new rule
        loop.step(clock, datetime(2027, 4, 10, 12, 0, tzinfo=UTC), timedelta(days=1))
    new = [t for t in claimed([schedule])[schedule.pk] if t not in old]
    assert [t.astimezone(BERLIN).date() for t in new] == [
        date(2027, 3, 15),  # every Monday ...
        date(2027, 3, 22),
        date(2027, 3, 29),
        date(2027, 4, 1),  # ... and the 1st (a Thursday)
        date(2027, 4, 5),
    ]
    assert {t.astimezone(BERLIN).time() for t in new} == {time(0, 0)}


def test_a_legacy_flagged_schedule_kept_across_a_partial_save():
    loop = Loop()
    with time_machine.travel(datetime(2027, 1, 20, 12, 0, tzinfo=UTC), tick=False) as clock:
        schedule = make(
            make_tenant(timezone="UTC"),
            trigger_type="cron",
            cron_expression="0 0 1 * 1",
            timezone="UTC",
        )
        Schedule.objects.filter(pk=schedule.pk).update(legacy_day_rule=True)
        schedule = Schedule.objects.get(pk=schedule.pk)
        schedule.name = "renamed"
        schedule.save(update_fields=["name", "updated_at"])  # not a full save
        assert Schedule.objects.get(pk=schedule.pk).legacy_day_rule is True
        loop.service.sync.full()
        loop.jump(clock, datetime(2027, 3, 10, 12, 0, tzinfo=UTC))
    assert claimed([schedule])[schedule.pk] == [utc(2027, 2, 1), utc(2027, 3, 1)]
