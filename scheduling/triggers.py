"""Schedule fields -> APScheduler trigger; validation; next-N-runs preview; human text.

Cron expressions are interpreted in the schedule's time zone with standard crontab semantics
(weekday 0 and 7 are Sunday), which APScheduler 3.x's ``CronTrigger.from_crontab`` does not
give, and with an explicit daylight-saving policy:

- spring-forward gap (a wall time that does not exist): ``run_at_next_valid_time`` fires at
  the first instant after the gap (02:30 on 29 March 2026 in Berlin fires at 03:00 CEST),
  ``skip`` does not fire that day;
- autumn fold (a wall time that happens twice): ``once`` fires at the first of the two,
  ``twice`` at both.

Interval schedules keep their period in elapsed time: they are computed in UTC.
"""

from __future__ import annotations

import hashlib
import zoneinfo
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext as _

from .conf import conf
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


CRON_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
CRON_FIELDS = ("minute", "hour", "day", "month", "day_of_week")
_DOW_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
# How far a wall clock can jump at a transition (a few zones shift by more than one hour).
_MAX_SHIFT = timedelta(hours=3)
_EPSILON = timedelta(microseconds=1)


def _dow_value(token: str) -> int:
    token = token.strip().lower()
    if token[:3] in _DOW_NAMES:
        return _DOW_NAMES.index(token[:3])
    value = int(token)
    if not 0 <= value <= 7:
        raise InvalidTrigger(f"weekday {value} is out of range (0-7, 0 and 7 are Sunday)")
    return value % 7


def _parse_dow(field: str) -> str:
    """Turn a crontab weekday field (0/7 = Sunday) into APScheduler weekday names."""
    if field in ("*", "?"):
        return "*"
    days: set[int] = set()
    for item in field.split(","):
        rng, _sep, step_text = item.partition("/")
        try:
            step = int(step_text) if step_text else 1
        except ValueError:
            raise InvalidTrigger(f"bad step {step_text!r} in the weekday field") from None
        if step < 1:
            raise InvalidTrigger("a step must be at least 1")
        try:
            if rng == "*":
                first, last = 0, 6
            elif "-" in rng:
                a, b = rng.split("-", 1)
                first, last = _dow_value(a), _dow_value(b)
                if b.strip() == "7":
                    last = 7
            else:
                first = last = _dow_value(rng)
                if step_text:
                    last = 6
        except ValueError:
            raise InvalidTrigger(f"bad weekday {rng!r}") from None
        if first > last:
            raise InvalidTrigger(f"weekday range {rng!r} runs backwards")
        days.update(d % 7 for d in range(first, last + 1, step))
    # APScheduler numbers weekdays from Monday; names avoid any ambiguity.
    order = [1, 2, 3, 4, 5, 6, 0]
    return ",".join(_DOW_NAMES[d] for d in order if d in days)


def normalize_cron(expression: str) -> str:
    """Return the five-field form of ``expression`` (aliases expanded, spaces folded)."""
    expr = " ".join(expression.split())
    return CRON_ALIASES.get(expr.lower(), expr)


def parse_cron(expression: str) -> dict[str, str]:
    """Return APScheduler CronTrigger keyword arguments for a crontab expression."""
    expr = normalize_cron(expression)
    if expr.startswith("@"):
        raise InvalidTrigger(
            f"unknown alias {expr!r}; use one of {', '.join(sorted(CRON_ALIASES))}"
        )
    parts = expr.split(" ")
    if len(parts) != 5:
        raise InvalidTrigger(f"expected 5 fields (minute hour day month weekday), got {len(parts)}")
    fields = dict(zip(CRON_FIELDS, parts, strict=True))
    fields["day_of_week"] = _parse_dow(fields["day_of_week"])
    try:
        CronTrigger(timezone=UTC, **fields)
    except ValueError as exc:
        raise InvalidTrigger(str(exc)) from None
    return fields


class ZonedCronTrigger(BaseTrigger):
    """A crontab trigger evaluated on the wall clock of a zone, with DST gap/fold policies."""

    def __init__(
        self,
        expression: str,
        *,
        tz: str = "UTC",
        gap_policy: str = "run_at_next_valid_time",
        fold_policy: str = "once",
        start_date: datetime | None = None,
        end_date: datetime | None = None,
        jitter: int | None = None,
        offset: int = 0,
    ) -> None:
        self.expression = normalize_cron(expression)
        self.offset = offset
        self.fields = parse_cron(expression)
        self.tz = zoneinfo.ZoneInfo(tz)
        self.gap_policy = gap_policy
        self.fold_policy = fold_policy
        self.start_date = start_date
        self.end_date = end_date
        self.jitter = jitter or None
        # Wall-clock times are iterated as if they were UTC, then mapped onto the zone.
        self._wall = CronTrigger(timezone=UTC, **self.fields)

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state.pop("_wall", None)
        state["tz"] = self.tz.key
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        state = dict(state)
        state["tz"] = zoneinfo.ZoneInfo(str(state["tz"]))
        self.__dict__.update(state)
        self._wall = CronTrigger(timezone=UTC, **self.fields)

    def __repr__(self) -> str:
        return f"<ZonedCronTrigger {self.expression!r} tz={self.tz.key}>"

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
        # A staggered trigger fires ``offset`` after each cron time.
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
        cursor = self._wall.get_next_fire_time(None, wall.replace(tzinfo=UTC))
        best: datetime | None = None
        best_wall: datetime | None = None
        for _i in range(10_000):
            if cursor is None:
                break
            naive = cursor.replace(tzinfo=None)
            if best_wall is not None and naive > best_wall + _MAX_SHIFT:
                break
            for instant in self.instants(naive):
                if instant >= threshold and (best is None or instant < best):
                    best, best_wall = instant, naive
            if best is not None and not self._near_transition(best):
                break
            cursor = self._wall.get_next_fire_time(cursor, cursor + _EPSILON)
        if best is None or (self.end_date is not None and best > self.end_date):
            return None
        return self._apply_jitter(best, self.jitter, now)


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
        return IntervalTrigger(
            seconds=schedule.interval_seconds,
            start_date=(_interval_start(schedule) + timedelta(seconds=offset)).astimezone(UTC),
            end_date=schedule.end_at,
            timezone=UTC,
            jitter=jitter_seconds,
        )
    if schedule.trigger_type == "cron":
        if not schedule.cron_expression:
            raise InvalidTrigger("a cron schedule needs a cron expression")
        return ZonedCronTrigger(
            schedule.cron_expression,
            tz=schedule.effective_timezone,
            gap_policy=schedule.dst_gap_policy,
            fold_policy=schedule.dst_fold_policy,
            start_date=schedule.start_at,
            end_date=schedule.end_at,
            jitter=jitter_seconds,
            offset=offset,
        )
    if schedule.trigger_type == "once":
        if schedule.run_at is None:
            raise InvalidTrigger("a once schedule needs run_at")
        return DateTrigger(run_date=schedule.run_at, timezone=UTC)
    raise InvalidTrigger(f"unknown trigger type {schedule.trigger_type!r}")


def first_fire_time(schedule: Schedule, now: datetime | None = None) -> datetime | None:
    """Return the first fire time of ``schedule`` at or after ``now``, honouring paused_until."""
    now = now or timezone.now()
    if schedule.paused_until and schedule.paused_until > now:
        now = schedule.paused_until
    return build_trigger(schedule).get_next_fire_time(None, now)


def next_runs(schedule: Schedule, n: int = 5, *, now: datetime | None = None) -> list[datetime]:
    """Return the next ``n`` fire times (aware, UTC) of a saved or unsaved schedule."""
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


def describe(schedule: Schedule) -> str:
    """Return the trigger as a sentence: "At 02:30, Monday through Friday (Europe/Berlin)"."""
    tz_name = schedule.effective_timezone
    if schedule.trigger_type == "interval" and schedule.interval_seconds:
        return _describe_interval(schedule.interval_seconds)
    if schedule.trigger_type == "cron" and schedule.cron_expression:
        from cron_descriptor import ExpressionDescriptor, Options

        options = Options()
        options.use_24hour_time_format = True
        options.verbose = False
        try:
            text = ExpressionDescriptor(normalize_cron(schedule.cron_expression), options)
            return f"{text.get_description()} ({tz_name})"
        except Exception:  # cron-descriptor raises several types on odd input
            return f"cron {schedule.cron_expression} ({tz_name})"
    if schedule.trigger_type == "once" and schedule.run_at:
        local = schedule.run_at.astimezone(zoneinfo.ZoneInfo(tz_name))
        return _("Once at %(when)s (%(tz)s)") % {
            "when": local.strftime("%Y-%m-%d %H:%M"),
            "tz": tz_name,
        }
    return _("Not configured")


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
