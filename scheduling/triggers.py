"""Schedule fields -> APScheduler trigger; validation; next-N-runs preview; human text.

Cron expressions are interpreted in the schedule's time zone with crontab(5) semantics
(``scheduling.cron``: Vixie cron's day rule, weekday 0 and 7 are Sunday, and the extensions
``L``, ``L-n``, ``nL``, ``n#k``, ``?``), which APScheduler's ``CronTrigger`` does not give.
Calendar schedules repeat every N days, weeks or months at a wall time. Both keep their wall
time across daylight-saving transitions with an explicit policy:

- spring-forward gap (a wall time that does not exist): ``run_at_next_valid_time`` fires at
  the first instant after the gap (02:30 on 29 March 2026 in Berlin fires at 03:00 CEST),
  ``skip`` does not fire that day;
- autumn fold (a wall time that happens twice): ``once`` fires at the first of the two,
  ``twice`` at both.

Interval schedules keep their period in elapsed time: they are computed in UTC.
"""

from __future__ import annotations

import calendar
import hashlib
import re
import zoneinfo
from abc import abstractmethod
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext as _

from .conf import conf
from .cron import ALIASES, CronExpression, describe_days
from .exceptions import InvalidTrigger

if TYPE_CHECKING:
    from .models import Schedule


class TriggerFields(Protocol):
    """What a trigger is built from: a ``Schedule``, or a row of its columns (the sync's)."""

    @property
    def pk(self) -> int | None: ...
    @property
    def created_at(self) -> datetime | None: ...
    @property
    def trigger_type(self) -> str: ...
    @property
    def interval_seconds(self) -> int | None: ...
    @property
    def cron_expression(self) -> str: ...
    @property
    def legacy_day_rule(self) -> bool: ...
    @property
    def calendar_every(self) -> int | None: ...
    @property
    def calendar_unit(self) -> str: ...
    @property
    def calendar_time(self) -> time | None: ...
    @property
    def calendar_weekdays(self) -> str: ...
    @property
    def run_at(self) -> datetime | None: ...
    @property
    def start_at(self) -> datetime | None: ...
    @property
    def end_at(self) -> datetime | None: ...
    @property
    def jitter_seconds(self) -> int: ...
    @property
    def stagger(self) -> bool: ...
    @property
    def dst_gap_policy(self) -> str: ...
    @property
    def dst_fold_policy(self) -> str: ...
    @property
    def effective_timezone(self) -> str: ...


CRON_ALIASES = ALIASES
# The schedule fields ``validate_trigger`` reads: what a form or serializer must hand over for
# a trigger to be checked (and previewed) before it is saved.
TRIGGER_INPUTS = (
    "trigger_type",
    "interval_seconds",
    "cron_expression",
    "run_at",
    "calendar_every",
    "calendar_unit",
    "calendar_time",
    "calendar_weekdays",
    "start_at",
    "end_at",
    "timezone",
)
# How far a wall clock can jump at a transition (a few zones shift by more than one hour).
_MAX_SHIFT = timedelta(hours=3)
_EPSILON = timedelta(microseconds=1)


def normalize_cron(expression: str) -> str:
    """Return the five-field form of ``expression`` (aliases expanded, spaces folded)."""
    expr = " ".join(expression.split())
    return CRON_ALIASES.get(expr.lower(), expr)


def parse_cron(expression: str) -> CronExpression:
    """Parse a crontab expression (raises ``InvalidTrigger`` naming the field and token)."""
    return CronExpression(expression)


# -- the rule before cron semantics -----------------------------------------------------------
# Until this project followed crontab(5), expressions went to APScheduler's CronTrigger, which
# requires BOTH day fields to match and reads a few tokens of its own (``last``, ``1st mon``).
# A schedule whose days that changes keeps the old reading until it is saved again
# (``Schedule.legacy_day_rule``); these functions are that reading.

_LEGACY_FIELDS = ("minute", "hour", "day", "month", "day_of_week")
_LEGACY_DOW_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


def _legacy_dow_value(token: str) -> int:
    token = token.strip().lower()
    if token[:3] in _LEGACY_DOW_NAMES:
        return _LEGACY_DOW_NAMES.index(token[:3])
    value = int(token)
    if not 0 <= value <= 7:
        raise InvalidTrigger(f"weekday {value} is out of range (0-7, 0 and 7 are Sunday)")
    return value % 7


def _legacy_dow(field: str) -> str:
    if field in ("*", "?"):
        return "*"
    days: set[int] = set()
    for item in field.split(","):
        rng, _sep, step_text = item.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if rng == "*":
                first, last = 0, 6
            elif "-" in rng:
                a, b = rng.split("-", 1)
                first, last = _legacy_dow_value(a), _legacy_dow_value(b)
                if b.strip() == "7":
                    last = 7
            else:
                first = last = _legacy_dow_value(rng)
                if step_text:
                    last = 6
        except ValueError:
            raise InvalidTrigger(f"bad weekday item {item!r}") from None
        if step < 1 or first > last:
            raise InvalidTrigger(f"bad weekday item {item!r}")
        days.update(d % 7 for d in range(first, last + 1, step))
    order = [1, 2, 3, 4, 5, 6, 0]  # APScheduler numbers weekdays from Monday
    return ",".join(_LEGACY_DOW_NAMES[d] for d in order if d in days)


def legacy_cron_trigger(expression: str) -> CronTrigger:
    """The APScheduler trigger the expression had before (its wall times as if UTC)."""
    parts = normalize_cron(expression).split(" ")
    if len(parts) != 5:
        raise InvalidTrigger(f"expected 5 fields, got {len(parts)}")
    fields = dict(zip(_LEGACY_FIELDS, parts, strict=True))
    fields["day_of_week"] = _legacy_dow(fields["day_of_week"])
    try:
        return CronTrigger(timezone=UTC, **fields)
    except ValueError as exc:
        raise InvalidTrigger(str(exc)) from None


@lru_cache(maxsize=4096)
def cron_meaning_changed(expression: str) -> bool:
    """Whether ``expression`` fires at other times under crontab(5) than it did before.

    Mostly the day rule (both day fields restricted: either matches now, both had to before),
    but also what APScheduler read its own way: ``fri#2`` and ``friL`` were every Friday,
    ``may/7`` was May only. Compared field by field: the minutes, the hours, the months, and
    the days of a month of every kind (28 to 31 days, starting on any weekday: neither reading
    depends on anything else). True too when only the old reading accepts the expression;
    False when it never did.
    """
    try:
        legacy = legacy_cron_trigger(expression)
    except InvalidTrigger:
        return False
    try:
        cron = CronExpression(expression)
    except InvalidTrigger:
        return True
    if not any(c.isalpha() for c in cron.expression):
        # Numbers only: both readings agree on every field; only the day rule differs.
        return cron.and_rule_differs()
    fields = {field.name: field for field in legacy.fields}

    def old_matches(moment: datetime, *names: str) -> bool:
        return all(
            fields[name].get_next_value(moment) == fields[name].get_value(moment) for name in names
        )

    base = datetime(2001, 1, 1, tzinfo=UTC)
    if {m for m in range(60) if old_matches(base.replace(minute=m), "minute")} != cron.minutes:
        return True
    if {h for h in range(24) if old_matches(base.replace(hour=h), "hour")} != cron.hours:
        return True
    if {m for m in range(1, 13) if old_matches(base.replace(month=m), "month")} != cron.months:
        return True
    # The days of a month depend only on its length and the weekday of its 1st, in both.
    for year, month in _MONTH_KINDS:
        first, length = calendar.monthrange(year, month)
        old_days = tuple(
            day
            for day in range(1, length + 1)
            if old_matches(datetime(year, month, day, tzinfo=UTC), "day", "day_of_week")
        )
        if old_days != cron.days_for(first, length):
            return True
    return False


# One month of each kind (length, weekday of the 1st) from the 28-year cycle 2001-2028.
_MONTH_KINDS = tuple(
    {
        calendar.monthrange(year, month): (year, month)
        for year in range(2001, 2029)
        for month in range(1, 13)
    }.values()
)


# -- triggers on the wall clock ---------------------------------------------------------------


def _zone(name: str) -> zoneinfo.ZoneInfo:
    """The zone ``name``; ``InvalidTrigger`` when this machine does not know it (a name that a
    newer or older tzdata does not have), so that one such schedule cannot stop a sync."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidTrigger(f"unknown time zone {name!r}") from exc


class WallClockTrigger(BaseTrigger):
    """A trigger whose times are naive wall-clock times of a zone, with DST gap/fold policies.

    A subclass says which wall times come next (``_next_wall``); this class maps them onto
    UTC instants, applies the start and end, the stagger offset and the jitter.
    """

    def __init__(
        self,
        *,
        tz: str = "UTC",
        gap_policy: str = "run_at_next_valid_time",
        fold_policy: str = "once",
        start_date: datetime | None = None,
        end_date: datetime | None = None,
        jitter: int | None = None,
        offset: int = 0,
    ) -> None:
        self.offset = offset
        self.tz = _zone(tz)
        self.gap_policy = gap_policy
        self.fold_policy = fold_policy
        self.start_date = start_date
        self.end_date = end_date
        self.jitter = jitter or None

    @abstractmethod
    def _next_wall(self, wall: datetime) -> datetime | None:
        """The first naive wall time strictly after ``wall`` that fires, or None."""

    def _rebuild(self) -> None:
        """Rebuild what ``__getstate__`` leaves out (attributes starting with ``_``)."""

    def __getstate__(self) -> dict[str, object]:
        state = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        state["tz"] = self.tz.key
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        state = dict(state)
        state["tz"] = zoneinfo.ZoneInfo(str(state["tz"]))
        self.__dict__.update(state)
        self._rebuild()

    def _transition(self, before: datetime, after: datetime) -> datetime:
        """Return the first instant in (before, after] with ``after``'s UTC offset."""
        target = after.astimezone(self.tz).utcoffset()
        lo, hi = before, after
        while hi - lo > timedelta(seconds=1):
            mid = lo + (hi - lo) / 2
            if mid.astimezone(self.tz).utcoffset() == target:
                hi = mid
            else:
                lo = mid
        return hi.replace(microsecond=0) if hi.microsecond else hi

    def instants(self, wall: datetime) -> list[datetime]:
        """Return the UTC instants at which the naive wall time ``wall`` fires."""
        first = wall.replace(tzinfo=self.tz, fold=0).astimezone(UTC)
        second = wall.replace(tzinfo=self.tz, fold=1).astimezone(UTC)
        if first == second:
            return [first]
        if first < second:  # the wall time happens twice (autumn fold)
            return [first, second] if self.fold_policy == "twice" else [first]
        # The wall time does not exist (spring-forward gap).
        if self.gap_policy == "skip":
            return []
        return [self._transition(second, first)]

    def _near_transition(self, instant: datetime) -> bool:
        return (instant - _MAX_SHIFT).astimezone(self.tz).utcoffset() != (
            instant + _MAX_SHIFT
        ).astimezone(self.tz).utcoffset()

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        offset = timedelta(seconds=getattr(self, "offset", 0))
        if not offset:
            return self._next(previous_fire_time, now)
        # A staggered trigger fires ``offset`` after each wall time.
        previous = previous_fire_time - offset if previous_fire_time is not None else None
        fire = self._next(previous, now - offset)
        return fire + offset if fire is not None else None

    def _next(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        if previous_fire_time is not None:
            # Like APScheduler's CronTrigger: the next time strictly after the previous one,
            # even if that is before ``now`` (that is how missed run times are enumerated).
            threshold = min(now, previous_fire_time + _EPSILON)
            if threshold <= previous_fire_time:
                threshold = previous_fire_time + _EPSILON
        else:
            threshold = max(now, self.start_date) if self.start_date else now
        threshold = threshold.astimezone(UTC)
        wall = threshold.astimezone(self.tz).replace(tzinfo=None)
        if self._near_transition(threshold):
            wall -= _MAX_SHIFT
        # The first wall time at or after ``wall``.
        cursor = self._next_wall(wall - _EPSILON)
        best: datetime | None = None
        best_wall: datetime | None = None
        for _i in range(10_000):
            if cursor is None:
                break
            if best_wall is not None and cursor > best_wall + _MAX_SHIFT:
                break
            for instant in self.instants(cursor):
                if instant >= threshold and (best is None or instant < best):
                    best, best_wall = instant, cursor
            if best is not None and not self._near_transition(best):
                break
            cursor = self._next_wall(cursor)
        if best is None or (self.end_date is not None and best > self.end_date):
            return None
        return self._apply_jitter(best, self.jitter, now)


class ZonedCronTrigger(WallClockTrigger):
    """A crontab trigger (``scheduling.cron``) evaluated on the wall clock of a zone.

    ``legacy=True`` evaluates the expression as before this project followed crontab(5):
    both day fields must match (see ``cron_meaning_changed``).
    """

    def __init__(self, expression: str, *, legacy: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.expression = normalize_cron(expression)
        self.legacy = legacy
        self._rebuild()

    def _rebuild(self) -> None:
        self.__dict__.pop("fields", None)  # a job pickled before this version
        if "legacy" not in self.__dict__:
            # Pickled before the cron rule changed: it was built with the old reading.
            self.legacy = cron_meaning_changed(self.expression)
        if self.legacy:
            self._wall = legacy_cron_trigger(self.expression)
        else:
            self._cron = CronExpression(self.expression)

    def __repr__(self) -> str:
        legacy = " legacy" if self.legacy else ""
        return f"<ZonedCronTrigger {self.expression!r} tz={self.tz.key}{legacy}>"

    def _next_wall(self, wall: datetime) -> datetime | None:
        if not self.legacy:
            return self._cron.next_after(wall)
        fire = self._wall.get_next_fire_time(None, (wall + _EPSILON).replace(tzinfo=UTC))
        return fire.replace(tzinfo=None) if fire is not None else None


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKDAY_TITLES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_WEEKDAY_WORDS = {
    **{name: number for number, name in enumerate(WEEKDAYS)},
    **{title.lower(): number for number, title in enumerate(_WEEKDAY_TITLES)},
}


def parse_weekdays(text: str) -> list[int]:
    """``"mon,thu"`` -> ``[0, 3]`` (Monday is 0); raises ``InvalidTrigger`` naming the token."""
    days: set[int] = set()
    for token in (t.strip().lower() for t in text.split(",")):
        if not token:
            continue
        if token not in _WEEKDAY_WORDS:
            raise InvalidTrigger(
                f"unknown weekday {token!r}; use {', '.join(WEEKDAYS)} (comma-separated)"
            )
        days.add(_WEEKDAY_WORDS[token])
    return sorted(days)


def format_weekdays(days: Sequence[int]) -> str:
    """``[0, 3]`` -> ``"mon,thu"``: the stored form of ``Schedule.calendar_weekdays``."""
    return ",".join(WEEKDAYS[day] for day in sorted(set(days)))


class CalendarTrigger(WallClockTrigger):
    """Every ``every`` days, weeks or months at the wall time ``at``, counted from ``anchor``.

    - ``day``: the anchor date and every ``every``-th day after it;
    - ``week``: the listed ``weekdays`` (Monday 0; none: the anchor's weekday) of the anchor's
      week (weeks start on Monday) and of every ``every``-th week after it, from the anchor on;
    - ``month``: the anchor's day of the month, every ``every``-th month; in a month without
      that day (the 31st in April), its last day.

    The wall time keeps across DST transitions, with the gap and fold policies of cron.
    """

    def __init__(
        self,
        *,
        every: int,
        unit: str,
        at: time,
        anchor: date,
        weekdays: Sequence[int] = (),
        **kwargs: Any,
    ) -> None:
        if every < 1:
            raise InvalidTrigger(
                "a calendar schedule repeats every 1 or more days, weeks or months"
            )
        if unit not in ("day", "week", "month"):
            raise InvalidTrigger(f"unknown calendar unit {unit!r}; use day, week or month")
        super().__init__(**kwargs)
        self.every = every
        self.unit = unit
        self.at = at.replace(tzinfo=None)
        self.anchor = anchor
        self.weekdays = tuple(sorted(set(weekdays))) or (anchor.weekday(),)

    def __repr__(self) -> str:
        return (
            f"<CalendarTrigger every {self.every} {self.unit} at {self.at:%H:%M} "
            f"from {self.anchor} tz={self.tz.key}>"
        )

    def _next_wall(self, wall: datetime) -> datetime | None:
        day = wall.date()
        try:
            if datetime.combine(day, self.at) <= wall:
                day += timedelta(days=1)
            found = self._first_date(max(day, self.anchor))
        except (OverflowError, ValueError):  # past the year 9999
            return None
        return datetime.combine(found, self.at) if found is not None else None

    def _first_date(self, day: date) -> date | None:
        """The first date of the series on or after ``day`` (not before the anchor)."""
        anchor, every = self.anchor, self.every
        if self.unit == "day":
            periods = -(-(day - anchor).days // every)
            return anchor + timedelta(days=periods * every)
        if self.unit == "week":
            monday = anchor - timedelta(days=anchor.weekday())
            week = (day - monday).days // 7
            week += -week % every  # the first week of the series from ``day``'s on
            for _i in range(2):
                start = monday + timedelta(weeks=week)
                for weekday in self.weekdays:
                    found = start + timedelta(days=weekday)
                    if found >= day:
                        return found
                week += every
            return None  # unreachable: the next period's first weekday is after ``day``
        first_month = anchor.year * 12 + anchor.month - 1
        months = day.year * 12 + day.month - 1 - first_month
        periods = max(0, -(-months // every))
        for _i in range(2):
            year, month = divmod(first_month + periods * every, 12)
            length = calendar.monthrange(year, month + 1)[1]
            found = date(year, month + 1, min(anchor.day, length))
            if found >= day:
                return found
            periods += 1
        return None  # unreachable: the next period's month is after ``day``'s


def _interval_start(schedule: TriggerFields) -> datetime:
    """First fire of an interval schedule: ``start_at``, else one period after creation."""
    if schedule.start_at:
        return schedule.start_at
    created = (schedule.created_at or timezone.now()).replace(microsecond=0)
    return created + timedelta(seconds=schedule.interval_seconds or 0)


def stagger_offset(schedule: TriggerFields) -> int:
    """Return a deterministic offset in [0, jitter_seconds) derived from the schedule's id."""
    if not schedule.jitter_seconds or not schedule.pk:
        return 0
    digest = hashlib.blake2b(str(schedule.pk).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % schedule.jitter_seconds


def calendar_anchor(schedule: TriggerFields) -> date:
    """The date a calendar schedule counts from: the local date of its start, else of its
    creation (of now, for a schedule not saved yet), in the schedule's time zone."""
    instant = schedule.start_at or schedule.created_at or timezone.now()
    return instant.astimezone(_zone(schedule.effective_timezone)).date()


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


class UTCIntervalTrigger(IntervalTrigger):
    """An ``IntervalTrigger`` in UTC that pickles as four numbers (``utc_interval``).

    A job store row holds its job's pickled trigger. Pickling the datetimes, the time zone and
    the timedelta of an ``IntervalTrigger`` looks up a class for each of them and was the
    larger part of writing a job; its numbers pickle in a tenth of the time and give the same
    trigger back. The name ``scheduling.triggers.utc_interval`` is in every stored row: it
    stays, as ``runner.fire`` does.
    """

    __slots__ = ()

    def __reduce__(self) -> tuple[Any, tuple[int, int, int | None, int | None]]:
        end = self.end_date
        return utc_interval, (
            self.interval // MICROSECOND,
            (self.start_date - EPOCH) // MICROSECOND,
            None if end is None else (end - EPOCH) // MICROSECOND,
            self.jitter,
        )


def utc_interval(
    interval_us: int, start_us: int, end_us: int | None, jitter: int | None
) -> UTCIntervalTrigger:
    """Return the ``UTCIntervalTrigger`` of an interval, a start and an end in microseconds
    (since the epoch, for the start and end), and a jitter in seconds."""
    return interval_trigger(
        timedelta(microseconds=interval_us),
        EPOCH + timedelta(microseconds=start_us),
        None if end_us is None else EPOCH + timedelta(microseconds=end_us),
        jitter,
    )


def interval_trigger(
    interval: timedelta, start: datetime, end: datetime | None, jitter: int | None
) -> UTCIntervalTrigger:
    """Return ``IntervalTrigger(seconds=interval, start_date=start, end_date=end,
    timezone=UTC, jitter=jitter)`` for an ``interval`` > 0 and aware ``start`` and ``end``,
    built from its state, with the start and end in UTC.

    The constructor's argument checks cost a tenth of a full sync; with these arguments they
    leave the values as they are, so the trigger fires as the constructor's would.
    """
    trigger = UTCIntervalTrigger.__new__(UTCIntervalTrigger)
    trigger.__setstate__(
        {
            "version": 2,
            "timezone": UTC,
            "start_date": start.astimezone(UTC),
            "end_date": None if end is None else end.astimezone(UTC),
            "interval": interval,
            "jitter": jitter,
        }
    )
    return trigger


def build_trigger(schedule: TriggerFields, *, jitter: bool = True) -> BaseTrigger:
    """Return the APScheduler trigger of ``schedule`` (raises ``InvalidTrigger``)."""
    jitter_seconds = (schedule.jitter_seconds or None) if jitter else None
    offset = 0
    if schedule.stagger:
        # A fixed offset replaces the random jitter.
        offset, jitter_seconds = stagger_offset(schedule), None
    if schedule.trigger_type == "interval":
        if not schedule.interval_seconds or schedule.interval_seconds <= 0:
            raise InvalidTrigger("an interval schedule needs interval_seconds > 0")
        return interval_trigger(
            timedelta(seconds=schedule.interval_seconds),
            _interval_start(schedule) + timedelta(seconds=offset),
            schedule.end_at,
            jitter_seconds,
        )
    wall_clock: dict[str, Any] = {
        "tz": schedule.effective_timezone,
        "gap_policy": schedule.dst_gap_policy,
        "fold_policy": schedule.dst_fold_policy,
        "start_date": schedule.start_at,
        "end_date": schedule.end_at,
        "jitter": jitter_seconds,
        "offset": offset,
    }
    if schedule.trigger_type == "cron":
        if not schedule.cron_expression:
            raise InvalidTrigger("a cron schedule needs a cron expression")
        return ZonedCronTrigger(
            schedule.cron_expression, legacy=schedule.legacy_day_rule, **wall_clock
        )
    if schedule.trigger_type == "calendar":
        if not schedule.calendar_every or not schedule.calendar_unit:
            raise InvalidTrigger("a calendar schedule needs calendar_every and calendar_unit")
        if schedule.calendar_time is None:
            raise InvalidTrigger("a calendar schedule needs calendar_time")
        return CalendarTrigger(
            every=schedule.calendar_every,
            unit=schedule.calendar_unit,
            at=schedule.calendar_time,
            anchor=calendar_anchor(schedule),
            weekdays=parse_weekdays(schedule.calendar_weekdays or ""),
            **wall_clock,
        )
    if schedule.trigger_type == "once":
        if schedule.run_at is None:
            raise InvalidTrigger("a once schedule needs run_at")
        return DateTrigger(run_date=schedule.run_at, timezone=UTC)
    raise InvalidTrigger(f"unknown trigger type {schedule.trigger_type!r}")


# A pause without an end ("until resumed") is a pause until this instant: still a pause, which
# an operator's resume clears, not a disable, which only an admin undoes. Far enough never to
# come, and far enough below ``validators.LATEST`` for the trigger arithmetic beyond it.
PAUSED_INDEFINITELY = datetime(8000, 1, 1, tzinfo=UTC)


def is_paused_indefinitely(paused_until: datetime | None) -> bool:
    """Return whether ``paused_until`` means "paused until someone resumes it"."""
    return paused_until is not None and paused_until >= PAUSED_INDEFINITELY


def first_fire_time(schedule: Schedule, now: datetime | None = None) -> datetime | None:
    """Return the first fire time of ``schedule`` at or after ``now``, honouring paused_until."""
    now = now or timezone.now()
    if schedule.paused_until and schedule.paused_until > now:
        now = schedule.paused_until
    return build_trigger(schedule).get_next_fire_time(None, now)


def next_runs(schedule: Schedule, n: int = 5, *, now: datetime | None = None) -> list[datetime]:
    """Return the next ``n`` fire times (aware, UTC) of a saved or unsaved schedule.

    None while it is paused until resumed: when it fires again is someone's decision.
    """
    if is_paused_indefinitely(schedule.paused_until):
        return []
    now = now or timezone.now()
    if schedule.paused_until and schedule.paused_until > now:
        now = schedule.paused_until
    trigger = build_trigger(schedule, jitter=False)
    runs: list[datetime] = []
    previous = None
    while len(runs) < n:
        fire = trigger.get_next_fire_time(previous, now)
        if fire is None:
            break
        runs.append(fire.astimezone(UTC))
        previous = fire
        now = max(now, fire)
    return runs


def validate_trigger(schedule: Schedule) -> None:
    """Raise ``ValidationError`` naming the field when the trigger cannot work."""
    errors: dict[str, list[str]] = {}
    tz_name = schedule.timezone or "UTC"
    try:
        zoneinfo.ZoneInfo(tz_name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        errors.setdefault("timezone", []).append(
            _("%(value)s is not a known IANA time zone (for example Europe/Berlin).")
            % {"value": tz_name}
        )
    if schedule.start_at and schedule.end_at and schedule.start_at >= schedule.end_at:
        errors.setdefault("end_at", []).append(_("The end must be after the start."))

    kind = schedule.trigger_type
    if kind == "interval":
        if schedule.interval_seconds is None:
            errors.setdefault("interval_seconds", []).append(
                _("An interval schedule needs an interval.")
            )
        elif schedule.interval_seconds <= 0:
            errors.setdefault("interval_seconds", []).append(
                _("The interval must be greater than zero.")
            )
        elif schedule.interval_seconds < conf.MIN_INTERVAL:
            errors.setdefault("interval_seconds", []).append(
                _("The interval must be at least %(min)s seconds (SCHEDULING_MIN_INTERVAL).")
                % {"min": conf.MIN_INTERVAL}
            )
    elif kind == "cron":
        if not schedule.cron_expression.strip():
            errors.setdefault("cron_expression", []).append(
                _("A cron schedule needs a cron expression.")
            )
        else:
            try:
                parse_cron(schedule.cron_expression)
            except InvalidTrigger as exc:
                errors.setdefault("cron_expression", []).append(
                    _("Invalid cron expression: %(reason)s.") % {"reason": exc}
                )
    elif kind == "once":
        if schedule.run_at is None:
            errors.setdefault("run_at", []).append(_("A once schedule needs a run time."))
    elif kind == "calendar":
        _validate_calendar(schedule, errors)
    else:
        errors.setdefault("trigger_type", []).append(_("Unknown trigger type."))

    if errors:
        raise ValidationError(errors)

    if kind == "cron" and not schedule.end_at and "timezone" not in errors:
        # A day-of-month that never exists in the chosen months (0 0 30 2 *) never fires.
        probe = ZonedCronTrigger(schedule.cron_expression, tz=tz_name)
        if probe.get_next_fire_time(None, datetime(2000, 1, 1, tzinfo=UTC)) is None:
            raise ValidationError(
                {"cron_expression": _("This cron expression can never fire (no such date).")}
            )


def _validate_calendar(schedule: Schedule, errors: dict[str, list[str]]) -> None:
    if schedule.calendar_every is None:
        errors.setdefault("calendar_every", []).append(
            _("A calendar schedule needs a number of days, weeks or months.")
        )
    if schedule.calendar_unit not in ("day", "week", "month"):
        errors.setdefault("calendar_unit", []).append(
            _("A calendar schedule repeats in days, weeks or months (day, week, month).")
        )
    if schedule.calendar_time is None:
        errors.setdefault("calendar_time", []).append(
            _("A calendar schedule needs a time of day (HH:MM, in the schedule's time zone).")
        )
    if schedule.calendar_weekdays.strip():
        if schedule.calendar_unit != "week":
            errors.setdefault("calendar_weekdays", []).append(
                _("Weekdays apply only to a schedule that repeats in weeks.")
            )
        else:
            try:
                parse_weekdays(schedule.calendar_weekdays)
            except InvalidTrigger as exc:
                errors.setdefault("calendar_weekdays", []).append(f"{exc}.")


def describe(schedule: Schedule) -> str:
    """Return the trigger as a sentence: "At 02:30, Monday through Friday (Europe/Berlin)"."""
    tz_name = schedule.effective_timezone
    if schedule.trigger_type == "interval" and schedule.interval_seconds:
        return _describe_interval(schedule.interval_seconds)
    if schedule.trigger_type == "cron" and schedule.cron_expression:
        try:
            text = _describe_cron(schedule.cron_expression, legacy=schedule.legacy_day_rule)
        except Exception:  # cron-descriptor raises several types on odd input
            text = f"cron {schedule.cron_expression}"
        return f"{text} ({tz_name})"
    if schedule.trigger_type == "calendar" and schedule.calendar_every:
        try:
            return f"{_describe_calendar(schedule)} ({tz_name})"
        except (InvalidTrigger, ValueError, TypeError):
            return _("Not configured")
    if schedule.trigger_type == "once" and schedule.run_at:
        local = schedule.run_at.astimezone(zoneinfo.ZoneInfo(tz_name))
        return _("Once at %(when)s (%(tz)s)") % {
            "when": local.strftime("%Y-%m-%d %H:%M"),
            "tz": tz_name,
        }
    return _("Not configured")


_EXTENDED = re.compile(r"[lL#]")


def _describe_cron(expression: str, *, legacy: bool = False) -> str:
    """A sentence ("At 09:00, on the last Friday of the month, only in March"): the times and month
    come from cron-descriptor, the days from ``scheduling.cron`` (its rule and extensions)."""
    from cron_descriptor import DescriptionTypeEnum, ExpressionDescriptor, Options

    fields = normalize_cron(expression).split(" ")
    options = Options()
    options.use_24hour_time_format = True
    options.verbose = False
    dom, dow = fields[2], fields[4]
    if legacy:
        note = _("(the old rule: both day fields must match, until the schedule is saved again)")
        try:
            cron = CronExpression(expression)
        except InvalidTrigger:  # a token only APScheduler read (last, 1st mon)
            text = ExpressionDescriptor(" ".join(fields), options).get_description()
            return f"{text} {note}"
    else:
        note = ""
        cron = CronExpression(expression)
        if "?" not in (dom, dow) and "*" in (dom, dow) and not _EXTENDED.search(dom + dow):
            # One day field or none, in plain syntax: cron-descriptor's sentence is right.
            return ExpressionDescriptor(" ".join(fields), options).get_description()
    # Days left out: cron-descriptor's day clause knows neither the rule nor L-n, n#k lists.
    descriptor = ExpressionDescriptor(f"{fields[0]} {fields[1]} * {fields[3]} *", options)
    text = descriptor.get_description()
    months = descriptor.get_description(DescriptionTypeEnum.MONTH)
    times = text[: len(text) - len(months)] if months and text.endswith(months) else text
    days = describe_days(cron, both=legacy)
    text = f"{times}, {days}{months}" if days else f"{times}{months}"
    return f"{text} {note}" if note else text


def _describe_calendar(schedule: Schedule) -> str:
    every, unit = schedule.calendar_every or 1, schedule.calendar_unit
    names = {
        "day": (_("day"), _("days")),
        "week": (_("week"), _("weeks")),
        "month": (_("month"), _("months")),
    }
    singular, plural = names[unit]
    text = (
        _("Every %(unit)s") % {"unit": singular}
        if every == 1
        else (_("Every %(count)d %(units)s") % {"count": every, "units": plural})
    )
    at = schedule.calendar_time.strftime("%H:%M") if schedule.calendar_time else "?"
    anchor = calendar_anchor(schedule)
    if unit == "week":
        days = parse_weekdays(schedule.calendar_weekdays or "") or [anchor.weekday()]
        titles = [_WEEKDAY_TITLES[day] for day in days]
        joined = titles[0] if len(titles) == 1 else f"{', '.join(titles[:-1])} and {titles[-1]}"
        text += " " + _("on %(days)s") % {"days": joined}
    elif unit == "month":
        text += " " + _("on day %(day)d") % {"day": anchor.day}
        if anchor.day > 28:
            text += " " + _("(the last day in shorter months)")
    text += " " + _("at %(time)s") % {"time": at}
    if every > 1 or unit == "month":
        text += ", " + _("from %(date)s") % {"date": anchor.isoformat()}
    return text


def _describe_interval(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return (
                _("Every %(unit)s") % {"unit": unit}
                if count == 1
                else (_("Every %(count)d %(unit)ss") % {"count": count, "unit": unit})
            )
    return _("Every second") if seconds == 1 else _("Every %(count)d seconds") % {"count": seconds}
