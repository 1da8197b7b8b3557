"""Cron and calendar triggers in time zones, checked against independent references.

- ``ZonedCronTrigger`` against croniter run on aware datetimes of the zone, for random
  expressions (the generator of test_cron.py, which avoids the documented differences) in
  zones with unusual rules: away from a DST transition the fire times must be equal.
  "Away" is exact: an instant ``t`` is near a transition when the zone's UTC offset at
  ``t - S`` differs from the one at ``t + S``, ``S`` the largest shift the zone makes (a wall
  time in a gap or a fold, and the instant a gap time fires at, are all within ``S`` of the
  transition instant). Both lists are filtered with that rule over the span both cover.
- At the transitions themselves, the documented policy, brute-forced here: the wall minutes
  an expression lists (matched minute by minute with a small matcher of this file, not
  ``CronExpression``), mapped with zoneinfo's ``fold``: a fold fires at the first instant
  (``once``) or at both (``twice``); a gap fires at the transition instant
  (``run_at_next_valid_time``, several gap times collapsing into one run) or not (``skip``).
- ``CalendarTrigger`` against dateutil's rrule (``bymonthday=(d, -1), bysetpos=1`` for a
  monthly day clamped to the end of shorter months), and by hand across transitions.
- The old reading (``legacy=True``, APScheduler's AND rule) against the new one and against
  croniter's ``day_or=False``; ``cron_meaning_changed`` against a day-by-day computation.
"""

from __future__ import annotations

import calendar
import contextlib
import functools
import random
import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import CroniterBadDateError, croniter
from dateutil import rrule

from scheduling import triggers
from scheduling.models import PeriodicScan
from scheduling.triggers import CalendarTrigger, ZonedCronTrigger
from tests.scheduling.test_cron import _random_case

pytestmark = pytest.mark.reference

ZONES = (
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",  # a 30-minute shift
    "Pacific/Chatham",  # UTC+12:45 / +13:45, transitions at 02:45 and 03:45
    "America/Santiago",  # transitions at midnight: a day that starts at 01:00
    "America/Asuncion",  # the same; no DST since October 2024
    "Asia/Tehran",  # DST until 2022, none after
    "Europe/Dublin",  # negative DST in tzdata (IST is standard time)
    "Africa/Casablanca",  # +01 with a -1 h reversal around Ramadan
    "America/St_Johns",  # UTC-03:30 / -02:30
    "Asia/Kolkata",  # no DST
    "UTC",
)
DST_ZONES = ZONES[:-2]
MINUTE = timedelta(minutes=1)
EPSILON = timedelta(microseconds=1)
POLICIES = [(gap, fold) for gap in ("run_at_next_valid_time", "skip") for fold in ("once", "twice")]


# -- the zones' transitions, found with zoneinfo alone -----------------------------------------


def _offset(instant: datetime, zone: str) -> timedelta:
    offset = instant.astimezone(ZoneInfo(zone)).utcoffset()
    assert offset is not None
    return offset


@functools.cache
def transitions(zone: str, first_year: int, last_year: int) -> tuple[tuple, ...]:
    """(instant, offset before, offset after) of every UTC offset change in those years.

    A walk in steps of a day (the zones here change at most once a month), then a
    bisection to the second: the instant is the first one with the new offset.
    """
    found = []
    step = 86400
    t = int(datetime(first_year, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(last_year + 1, 1, 1, tzinfo=UTC).timestamp())

    def offset_at(seconds: int) -> timedelta:
        return _offset(datetime.fromtimestamp(seconds, UTC), zone)

    while t < end:
        before, after = offset_at(t), offset_at(t + step)
        if before != after:
            lo, hi = t, t + step  # offset_at(lo) == before, offset_at(hi) == after
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if offset_at(mid) == before:
                    lo = mid
                else:
                    hi = mid
            found.append((datetime.fromtimestamp(hi, UTC), before, after))
        t += step
    return tuple(found)


@functools.cache
def max_shift(zone: str) -> timedelta:
    """The largest jump of the zone's wall clock from 1999 to 2042 (0 for a zone without)."""
    return max(
        (abs(after - before) for _t, before, after in transitions(zone, 1999, 2042)),
        default=timedelta(0),
    )


def near_transition(instant: datetime, zone: str) -> bool:
    shift = max_shift(zone)
    return bool(shift) and _offset(instant - shift, zone) != _offset(instant + shift, zone)


def test_the_zones_have_the_unusual_rules_this_file_relies_on():
    def local(t: datetime, zone: str) -> str:
        return t.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %z")

    assert max_shift("Australia/Lord_Howe") == timedelta(minutes=30)
    assert max_shift("Asia/Kolkata") == max_shift("UTC") == timedelta(0)
    for zone in DST_ZONES:
        moments = transitions(zone, 1999, 2042)
        assert moments, zone
        assert max_shift(zone) <= timedelta(hours=1), zone
        # Two transitions are always far apart: the +-S test sees at most one of them.
        gaps = [b[0] - a[0] for a, b in zip(moments, moments[1:], strict=False)]
        assert min(gaps) > timedelta(days=20), zone
    # Chatham springs forward from 02:45 to 03:45.
    assert [
        local(t, "Pacific/Chatham") for t, *_ in transitions("Pacific/Chatham", 2026, 2026)
    ] == [
        "2026-04-05 02:45 +1245",
        "2026-09-27 03:45 +1345",
    ]
    # Santiago: the day of 6 September 2026 starts at 01:00.
    assert local(transitions("America/Santiago", 2026, 2026)[1][0], "America/Santiago") == (
        "2026-09-06 01:00 -0300"
    )
    assert transitions("Asia/Tehran", 2021, 2021)
    assert not transitions("Asia/Tehran", 2023, 2040)
    assert not transitions("America/Asuncion", 2025, 2040)
    # Casablanca: summer time plus a Ramadan reversal (2012-2017: four changes a year), then
    # +01 with a reversal around Ramadan only (two a year).
    assert len(transitions("Africa/Casablanca", 2014, 2014)) == 4
    assert len(transitions("Africa/Casablanca", 2026, 2026)) == 2


# -- 1. croniter in zones ----------------------------------------------------------------------


def cron_chain(trigger, now: datetime, n: int) -> list[datetime]:
    """n fire times, each from the previous one, as ``triggers.next_runs`` walks them."""
    runs: list[datetime] = []
    previous = None
    while len(runs) < n:
        fire = trigger.get_next_fire_time(previous, now)
        if fire is None:
            break
        runs.append(fire.astimezone(UTC))
        previous, now = fire, max(now, fire)
    return runs


def croniter_next(plan: list[str], after: datetime) -> datetime | None:
    """The first of croniter's next times of the plan's expressions (test_cron's
    ``_croniter_next``, comparing instants: aware times of one zone compare as wall times)."""
    found = []
    for expression in plan:
        with contextlib.suppress(CroniterBadDateError):
            found.append(croniter(expression, after, implement_cron_bug=True).get_next(datetime))
    return min(found, key=lambda t: t.astimezone(UTC), default=None)


def croniter_chain(plan: list[str], start: datetime, until: datetime | None, cap: int):
    """croniter's times after ``start`` (aware, in the zone) through ``until``, at most ``cap``.

    Returns (times in UTC, whether the list is complete: croniter found no further time).
    """
    times: list[datetime] = []
    cursor = start
    while len(times) < cap:
        found = croniter_next(plan, cursor)
        if found is None:
            return times, True
        assert found.astimezone(UTC) > cursor.astimezone(UTC), (plan, cursor, found)
        times.append(found.astimezone(UTC))
        if until is not None and found > until:
            break
        cursor = found
    return times, False


def compare_away_from_transitions(
    ours: list[datetime],
    ours_complete: bool,
    theirs: list[datetime],
    theirs_complete: bool,
    zone: str,
) -> tuple[list[datetime], list[datetime]]:
    """Both lists over the span both cover, without the times near a transition."""
    ends = [
        times[-1]
        for times, complete in ((ours, ours_complete), (theirs, theirs_complete))
        if not complete and times
    ]
    end = min(ends, default=None)

    def keep(times: list[datetime]) -> list[datetime]:
        return [t for t in times if (end is None or t <= end) and not near_transition(t, zone)]

    return keep(ours), keep(theirs)


def random_instant(rng: random.Random, zone: str) -> datetime:
    """A random instant of 2000-2040; a third of them shortly before one of the zone's
    transitions, so that the times right after it are compared too."""
    moments = transitions(zone, 2000, 2040)
    if moments and rng.random() < 1 / 3:
        moment = rng.choice(moments)[0]
        instant = moment - timedelta(seconds=rng.randrange(36 * 3600))
    else:
        low = datetime(2000, 1, 1, tzinfo=UTC)
        instant = low + timedelta(seconds=rng.randrange(41 * 365 * 86400))
    return instant.replace(second=0) if rng.random() < 0.5 else instant


CHUNKS = 8
PER_CHUNK = 300
RUNS = 8


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_croniter_agrees_in_zones_away_from_transitions(chunk):
    rng = random.Random(77_000 + chunk)
    mismatches = []
    compared = 0
    for _ in range(PER_CHUNK):
        expression, plan = _random_case(rng, croniter_only=True)
        zone = rng.choice(ZONES)
        start = random_instant(rng, zone)
        trigger = ZonedCronTrigger(expression, tz=zone)
        # The trigger fires at or after ``now``; croniter strictly after its start.
        ours = cron_chain(trigger, start + EPSILON, RUNS)
        theirs, theirs_complete = croniter_chain(
            plan, start.astimezone(ZoneInfo(zone)), ours[-1] if len(ours) == RUNS else None, 40
        )
        kept_ours, kept_theirs = compare_away_from_transitions(
            ours, len(ours) < RUNS, theirs, theirs_complete, zone
        )
        compared += len(kept_ours)
        if kept_ours != kept_theirs:
            mismatches.append((expression, plan, zone, start, kept_ours, kept_theirs))
    assert not mismatches, "\n".join(map(repr, mismatches[:5]))
    # The filter leaves most times in: the comparison is not empty.
    assert compared > PER_CHUNK * RUNS * 0.8


def test_next_runs_of_a_schedule_is_the_trigger_chain():
    rng = random.Random(5)
    for _ in range(40):
        expression, _plan = _random_case(rng, croniter_only=False)
        zone = rng.choice(ZONES)
        now = random_instant(rng, zone)
        schedule = PeriodicScan(
            name="probe",
            scan_type="test_echo",
            target="x",
            trigger_type="cron",
            cron_expression=expression,
            timezone=zone,
        )
        assert triggers.next_runs(schedule, 6, now=now) == cron_chain(
            ZonedCronTrigger(expression, tz=zone), now, 6
        ), (expression, zone, now)


# -- 2. at the transitions: the documented policy ----------------------------------------------


def _expand(text: str, low: int, high: int) -> set[int]:
    """``*``, ``*/n``, ``a``, ``a-b``, comma lists: enough for the expressions of this part."""
    values: set[int] = set()
    for item in text.split(","):
        rng, _slash, step = item.partition("/")
        first, last = (low, high) if rng == "*" else map(int, (rng.split("-") * 2)[:2])
        values.update(range(first, last + 1, int(step or 1)))
    return values


def brute_force(
    expression: str, zone: str, transition, start: datetime, end: datetime, gap: str, fold: str
) -> list[datetime]:
    """The instants in [start, end) at which the policy fires the wall minutes the
    expression lists (the day-of-week field must be ``*``)."""
    minute, hour, dom, month, dow = expression.split()
    assert dow == "*"
    sets = (
        _expand(minute, 0, 59),
        _expand(hour, 0, 23),
        _expand(dom, 1, 31),
        _expand(month, 1, 12),
    )
    moment, before, after = transition
    tz = ZoneInfo(zone)
    # The wall minutes that do not exist (a gap) or happen twice (a fold).
    odd_walls = (
        (moment + min(before, after)).replace(tzinfo=None),
        (moment + max(before, after)).replace(tzinfo=None),
    )
    instants: set[datetime] = set()
    wall = (start.astimezone(tz).replace(tzinfo=None) - timedelta(hours=2)).replace(
        second=0, microsecond=0
    )
    last = end.astimezone(tz).replace(tzinfo=None) + timedelta(hours=2)
    while wall <= last:
        if (
            wall.minute in sets[0]
            and wall.hour in sets[1]
            and wall.day in sets[2]
            and wall.month in sets[3]
        ):
            first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
            second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
            assert (first != second) == (odd_walls[0] <= wall < odd_walls[1]), wall
            if first == second:
                instants.add(first)
            elif first < second:  # a fold
                instants.update([first, second] if fold == "twice" else [first])
            elif gap == "run_at_next_valid_time":  # a gap: the first instant after it
                instants.add(moment)
        wall += MINUTE
    return sorted(t for t in instants if start <= t < end)


def fire_times(trigger, start: datetime, end: datetime) -> list[datetime]:
    times = []
    fire = trigger.get_next_fire_time(None, start)
    while fire is not None and fire < end:
        times.append(fire.astimezone(UTC))
        fire = trigger.get_next_fire_time(fire, fire)
    return times


def expressions_at(transition) -> list[str]:
    """Expressions that list wall times in, at the edges of, and next to the gap or fold."""
    moment, before, after = transition
    lo = (moment + min(before, after)).replace(tzinfo=None)  # the first odd wall minute
    hi = (moment + max(before, after)).replace(tzinfo=None)  # the first normal one after
    mid = lo + (hi - lo) // 2
    at = [lo, mid, hi - MINUTE, hi, lo - MINUTE]
    return [
        *(f"{w.minute} {w.hour} * * *" for w in at),
        f"{mid.minute} {mid.hour} {mid.day} {mid.month} *",
        f"{mid.minute} {mid.hour} {mid.day + 1 if mid.day < 28 else 1} * *",
        f"* {lo.hour} * * *",
        "*/15 * * * *",
        "30 * * * *",
        "0 * * * *",
        "*/7 * * * *",
        "45 0-3,22-23 * * *",
    ]


TRANSITION_YEARS = (2019, 2021, 2026, 2033)


@pytest.mark.parametrize("zone", DST_ZONES)
def test_the_policies_at_every_transition(zone):
    moments = [t for year in TRANSITION_YEARS for t in transitions(zone, year, year)]
    assert moments
    failures = []
    for transition in moments:
        start = transition[0] - timedelta(hours=6)
        end = transition[0] + timedelta(hours=6)
        for expression in expressions_at(transition):
            for gap, fold in POLICIES:
                trigger = ZonedCronTrigger(expression, tz=zone, gap_policy=gap, fold_policy=fold)
                expected = brute_force(expression, zone, transition, start, end, gap, fold)
                got = fire_times(trigger, start, end)
                if got != expected:
                    failures.append((zone, transition[0], expression, gap, fold, got, expected))
    assert not failures, "\n".join(map(repr, failures[:5]))


def test_a_midnight_gap_fires_the_day_at_its_first_instant():
    # Santiago, 6 September 2026: 00:00-00:59 do not exist; the day starts at 01:00 -03.
    for gap, expected in (
        ("run_at_next_valid_time", [datetime(2026, 9, 6, 4, 0, tzinfo=UTC)]),
        ("skip", []),
    ):
        trigger = ZonedCronTrigger("0 0 6 9 *", tz="America/Santiago", gap_policy=gap)
        assert (
            fire_times(trigger, datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 9, 30, tzinfo=UTC))
            == expected
        )


def test_a_half_hour_fold_fires_twice_half_an_hour_apart():
    # Lord Howe, 5 April 2026: 01:30-01:59 happen at +11 and again at +10:30.
    trigger = ZonedCronTrigger("45 1 * * *", tz="Australia/Lord_Howe", fold_policy="twice")
    assert fire_times(
        trigger, datetime(2026, 4, 4, 12, tzinfo=UTC), datetime(2026, 4, 5, 12, tzinfo=UTC)
    ) == [
        datetime(2026, 4, 4, 14, 45, tzinfo=UTC),
        datetime(2026, 4, 4, 15, 15, tzinfo=UTC),
    ]


# -- 3. the calendar trigger against dateutil's rrule --------------------------------------------


def reference_rule(every: int, unit: str, at: time, anchor: date, weekdays: list[int]):
    dtstart = datetime.combine(anchor, at)
    if unit == "day":
        return rrule.rrule(rrule.DAILY, interval=every, dtstart=dtstart)
    if unit == "week":
        return rrule.rrule(
            rrule.WEEKLY,
            interval=every,
            dtstart=dtstart,
            byweekday=weekdays or [anchor.weekday()],
            wkst=rrule.MO,
        )
    # The anchor's day, or the last day of a month without it.
    return rrule.rrule(
        rrule.MONTHLY, interval=every, dtstart=dtstart, bymonthday=(anchor.day, -1), bysetpos=1
    )


@pytest.mark.parametrize("day", range(1, 32))
def test_the_rrule_month_clamping_trick(day):
    rule = rrule.rrule(
        rrule.MONTHLY,
        dtstart=datetime(2000, 1, day),
        bymonthday=(day, -1),
        bysetpos=1,
        count=12 * 30,
    )
    expected = [
        datetime(year, month, min(day, calendar.monthrange(year, month)[1]))
        for year in range(2000, 2030)
        for month in range(1, 13)
    ]
    assert list(rule) == expected


def test_the_rrule_week_series_starts_in_the_anchors_week_not_before_the_anchor():
    # A Friday anchor, Mondays and Thursdays every 2 weeks: that week's are before it.
    rule = reference_rule(2, "week", time(9), date(2026, 3, 6), [0, 3])
    assert list(rule[:4]) == [datetime(2026, 3, d, 9) for d in (16, 19, 30)] + [
        datetime(2026, 4, 2, 9)
    ]
    # A Tuesday anchor: that week's Thursday is the first.
    rule = reference_rule(3, "week", time(9), date(2026, 3, 3), [0, 3])
    assert list(rule[:3]) == [
        datetime(2026, 3, 5, 9),
        datetime(2026, 3, 23, 9),
        datetime(2026, 3, 26, 9),
    ]


@pytest.mark.parametrize("chunk", range(4))
def test_calendar_agrees_with_rrule_away_from_transitions(chunk):
    rng = random.Random(31_000 + chunk)
    mismatches = []
    compared = 0
    cases = 150
    for _ in range(cases):
        every = rng.randint(1, 6)
        unit = rng.choice(["day", "week", "month"])
        at = time(rng.randrange(24), rng.randrange(60))
        if rng.random() < 0.2:
            at = time(rng.choice([0, 1, 2, 3, 23]), rng.choice([0, 15, 30, 45]))
        anchor = date(2000, 1, 1) + timedelta(days=rng.randrange(41 * 365))
        if unit == "month" and rng.random() < 0.4:
            anchor = anchor.replace(
                day=rng.randint(28, calendar.monthrange(anchor.year, anchor.month)[1])
            )
        weekdays = sorted(rng.sample(range(7), rng.randint(0, 4))) if unit == "week" else []
        zone = rng.choice(ZONES)
        tz = ZoneInfo(zone)
        now = datetime.combine(anchor, time(12), tz) + timedelta(
            seconds=rng.randrange(-40 * 86400, 4 * 365 * 86400)
        )
        gap, fold = rng.choice(POLICIES)
        trigger = CalendarTrigger(
            every=every,
            unit=unit,
            at=at,
            anchor=anchor,
            weekdays=weekdays,
            tz=zone,
            gap_policy=gap,
            fold_policy=fold,
        )
        ours = cron_chain(trigger, now, RUNS)
        walls = reference_rule(every, unit, at, anchor, weekdays).xafter(
            now.astimezone(tz).replace(tzinfo=None) - timedelta(days=2), count=RUNS + 4
        )
        theirs = [t for t in (w.replace(tzinfo=tz).astimezone(UTC) for w in walls) if t >= now]
        kept_ours, kept_theirs = compare_away_from_transitions(ours, False, theirs, False, zone)
        compared += len(kept_ours)
        if kept_ours != kept_theirs:
            mismatches.append(
                (every, unit, at, anchor, weekdays, zone, now, kept_ours, kept_theirs)
            )
    assert not mismatches, "\n".join(map(repr, mismatches[:5]))
    assert compared > cases * RUNS * 0.8


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo("Europe/Berlin"))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_every_two_weeks_keeps_nine_oclock_across_both_transitions():
    trigger = CalendarTrigger(
        every=2,
        unit="week",
        at=time(9),
        anchor=date(2026, 3, 2),
        weekdays=[0, 3],
        tz="Europe/Berlin",
    )
    assert cron_chain(trigger, utc(2026, 3, 1), 6) == [
        utc(2026, 3, 2, 8),  # 09:00 CET
        utc(2026, 3, 5, 8),
        utc(2026, 3, 16, 8),
        utc(2026, 3, 19, 8),
        utc(2026, 3, 30, 7),  # 09:00 CEST, after 29 March
        utc(2026, 4, 2, 7),
    ]
    # 12 October 2026 is a Monday of the series (32 weeks after 2 March).
    assert cron_chain(trigger, utc(2026, 10, 10), 4) == [
        utc(2026, 10, 12, 7),
        utc(2026, 10, 15, 7),
        utc(2026, 10, 26, 8),  # 09:00 CET, after 25 October
        utc(2026, 10, 29, 8),
    ]
    assert {
        t.astimezone(ZoneInfo("Europe/Berlin")).time()
        for t in cron_chain(trigger, utc(2026, 1, 1), 60)
    } == {time(9)}


@pytest.mark.parametrize(
    ("gap", "fold", "spring", "autumn"),
    [
        ("run_at_next_valid_time", "once", [utc(2026, 3, 29, 1)], [utc(2026, 10, 25, 0, 30)]),
        ("skip", "once", [], [utc(2026, 10, 25, 0, 30)]),
        (
            "run_at_next_valid_time",
            "twice",
            [utc(2026, 3, 29, 1)],
            [utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30)],
        ),
        ("skip", "twice", [], [utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30)]),
    ],
)
def test_a_daily_calendar_at_0230_in_berlin(gap, fold, spring, autumn):
    trigger = CalendarTrigger(
        every=1,
        unit="day",
        at=time(2, 30),
        anchor=date(2026, 1, 1),
        tz="Europe/Berlin",
        gap_policy=gap,
        fold_policy=fold,
    )
    march = fire_times(trigger, berlin(2026, 3, 28, 12), berlin(2026, 3, 30, 12))
    assert march == [utc(2026, 3, 29, 1)] * bool(spring) + [utc(2026, 3, 30, 0, 30)]
    if spring:
        assert march[0].astimezone(ZoneInfo("Europe/Berlin")).strftime("%H:%M %Z") == "03:00 CEST"
    october = fire_times(trigger, berlin(2026, 10, 24, 12), berlin(2026, 10, 26, 12))
    assert october == [*autumn, utc(2026, 10, 26, 1, 30)]


def test_a_calendar_schedule_counts_from_its_local_start():
    # Built from a Schedule: the anchor is the start's date in the schedule's zone (31 January
    # in Chatham while still 30 January in UTC); the day clamps to 28 February.
    schedule = PeriodicScan(
        name="probe",
        scan_type="test_echo",
        target="x",
        trigger_type="calendar",
        calendar_every=1,
        calendar_unit="month",
        calendar_time=time(6),
        start_at=utc(2027, 1, 30, 12),
        timezone="Pacific/Chatham",
    )
    runs = triggers.next_runs(schedule, 3, now=utc(2027, 1, 1))
    chatham = ZoneInfo("Pacific/Chatham")
    assert [t.astimezone(chatham).replace(tzinfo=None) for t in runs] == [
        datetime(2027, 1, 31, 6),
        datetime(2027, 2, 28, 6),
        datetime(2027, 3, 31, 6),
    ]


# -- 4. the old reading and the new one --------------------------------------------------------

_STAR = ("*", "?")


def _legacy_accepts(expression: str) -> bool:
    try:
        triggers.legacy_cron_trigger(expression)
    except triggers.InvalidTrigger:
        return False
    return True


# Two differences of the old reading that are not the day rule, flagged too but kept out of
# the random comparison of times (see the tests at the end): APScheduler 3 reads a month item
# that starts with a name up to the end of the name or of a name range and ignores the rest
# (``mar-may/2`` is March to May, ``may/7`` May, ``jan-8`` January), and the old weekday
# parser read a token by its first three letters (``fri#2`` and ``friL`` were every Friday).
_MONTH_NAME_ITEM = re.compile(r"[a-z]+(?:-[a-z]+)?", re.IGNORECASE)
_NAMED_WEEKDAY_EXTENSION = re.compile(r"[a-z]{3}[#l]", re.IGNORECASE)


def _old_reading_differs_elsewhere(expression: str) -> bool:
    _m, _h, _dom, month, dow = expression.split()
    cut_month = any(
        item[:1].isalpha() and not _MONTH_NAME_ITEM.fullmatch(item) for item in month.split(",")
    )
    return cut_month or bool(_NAMED_WEEKDAY_EXTENSION.search(dow))


def days_differ(expression: str) -> bool:
    """Whether some day, in a month the expression runs in, matches exactly one of its day
    fields (croniter expands the fields). 2000-2040 holds every kind of month (length and
    weekday of the 1st); each kind is looked at once."""
    expanded = croniter(expression).expanded
    dom, months, dow = expanded[2], expanded[3], expanded[4]
    weekdays = {d % 7 for d in dow} if dow != ["*"] else set(range(7))
    seen = set()
    for year in range(2000, 2041):
        for month in range(1, 13):
            first, length = calendar.monthrange(year, month)
            if (month, first, length) in seen or (months != ["*"] and month not in months):
                continue
            seen.add((month, first, length))
            for day in range(1, length + 1):
                in_dom = dom == ["*"] or day in dom
                in_dow = (first + day) % 7 in weekdays  # Monday 0 -> cron's Sunday 0
                if in_dom != in_dow:
                    return True
    return False


@pytest.mark.parametrize("chunk", range(2))
def test_the_old_and_new_readings(chunk):
    rng = random.Random(90_000 + chunk)
    checked_same = checked_flagged = 0
    for _ in range(1000):
        expression, _plan = _random_case(rng, croniter_only=True)
        if not _legacy_accepts(expression):
            continue
        changed = triggers.cron_meaning_changed(expression)
        if _old_reading_differs_elsewhere(expression):
            # Maybe read otherwise for another reason than the day rule: if the times differ,
            # it is flagged all the same.
            start = random_instant(rng, "UTC")
            new = cron_chain(ZonedCronTrigger(expression), start, RUNS)
            if cron_chain(ZonedCronTrigger(expression, legacy=True), start, RUNS) != new:
                assert changed, expression
            continue
        _m, _h, dom, _mo, dow = expression.split()
        one_restricted = dom.startswith(_STAR) or dow.startswith(_STAR)
        if one_restricted:
            assert not changed, expression
        zone = rng.choice(ZONES)
        now = random_instant(rng, zone)
        new = cron_chain(ZonedCronTrigger(expression, tz=zone), now, RUNS)
        old = cron_chain(ZonedCronTrigger(expression, tz=zone, legacy=True), now, RUNS)
        if not changed:
            checked_same += 1
            assert old == new, (expression, zone, now)
        else:
            checked_flagged += 1
            assert days_differ(expression), expression
        # The old reading is the AND rule: croniter's day_or=False, on the wall clock (UTC).
        start = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(41 * 365 * 1440))
        old_utc = cron_chain(ZonedCronTrigger(expression, legacy=True), start + EPSILON, 5)
        theirs: list[datetime] = []
        cursor = start
        for _run in range(5):
            try:
                cursor = croniter(expression, cursor, day_or=False).get_next(datetime)
            except CroniterBadDateError:
                break
            theirs.append(cursor)
        assert old_utc == theirs, (expression, start)
        # And the flag is exactly "the day rule picks other days".
        if not one_restricted:
            assert changed == days_differ(expression), expression
    assert checked_same > 120
    assert checked_flagged > 40


@pytest.mark.parametrize(
    ("expression", "changed"),
    [
        ("0 0 1 * 1", True),  # the 1st or Mondays, where it was the 1st if a Monday
        ("0 0 1-7 * 1", True),  # the first week or Mondays, where it was the first Monday
        ("0 0 1,15 * 5", True),
        ("0 0 1-31 * 0-6", False),  # both list every day: OR and AND agree
        ("0 0 1-31 * *", False),
        ("0 0 * * 1", False),
        ("0 0 */2 * 1", False),  # a star first: AND in both readings
        ("0 0 1 * */2", False),
        ("0 0 ? * 1", False),  # only the old reading refuses it
        ("0 0 31 2 1", True),  # never the 31st of February: it never ran, now on Mondays
        ("0 0 30 2 *", False),
    ],
)
def test_cron_meaning_changed(expression, changed):
    assert triggers.cron_meaning_changed(expression) is changed


OTHER_DIFFERENCES = [
    # APScheduler 3 drops what follows a month name: March to May, and May only.
    (
        "0 0 1 mar-may/2 *",
        [(2026, 3, 1), (2026, 4, 1), (2026, 5, 1)],
        [(2026, 3, 1), (2026, 5, 1), (2027, 3, 1)],
    ),
    (
        "0 0 1 may/7 *",
        [(2026, 5, 1), (2027, 5, 1), (2028, 5, 1)],
        [(2026, 5, 1), (2026, 12, 1), (2027, 5, 1)],
    ),
    # The old weekday parser read "fri#2" and "friL" as "fri": every Friday.
    (
        "0 0 * * fri#2",
        [(2026, 1, 2), (2026, 1, 9), (2026, 1, 16)],
        [(2026, 1, 9), (2026, 2, 13), (2026, 3, 13)],
    ),
    (
        "0 0 * * friL",
        [(2026, 1, 2), (2026, 1, 9), (2026, 1, 16)],
        [(2026, 1, 30), (2026, 2, 27), (2026, 3, 27)],
    ),
]


@pytest.mark.parametrize(("expression", "old", "new"), OTHER_DIFFERENCES)
def test_the_old_reading_differs_beyond_the_day_rule(expression, old, new):
    """Expressions whose days changed for another reason than the OR rule (the old reading
    accepted them and read them otherwise); the random comparison above leaves them out."""
    start = utc(2026, 1, 1)
    assert cron_chain(ZonedCronTrigger(expression, legacy=True), start, 3) == [
        utc(*day) for day in old
    ]
    assert cron_chain(ZonedCronTrigger(expression), start, 3) == [utc(*day) for day in new]


@pytest.mark.parametrize(("expression", "old", "new"), OTHER_DIFFERENCES)
def test_cron_meaning_changed_flags_every_change_of_days(expression, old, new):
    # Its docstring: "Whether expression runs on other days under cron's rule than it did
    # before."
    assert triggers.cron_meaning_changed(expression)
