"""Crontab expressions on the wall clock: Vixie cron / cronie semantics and common extensions.

``CronExpression("30 4 1,15 * 5").next_after(wall)`` returns the first naive wall-clock minute
strictly after ``wall`` that the expression matches (or ``None``). Time zones and daylight
saving are the caller's business (``triggers.ZonedCronTrigger.instants`` maps wall times onto a
zone); this module only knows the proleptic Gregorian calendar.

Syntax (crontab(5) as cronie implements it):

- five fields: minute 0-59, hour 0-23, day of month 1-31, month 1-12 or ``jan``-``dec``, day
  of week 0-7 or ``sun``-``sat`` (0 and 7 are Sunday); names are the first three letters, in
  any case, and only in the month and day-of-week fields. ``@yearly``, ``@annually``,
  ``@monthly``, ``@weekly``, ``@daily``, ``@midnight`` and ``@hourly`` are accepted too.
- a field is a comma-separated list of ``*``, ``a``, ``a-b`` (inclusive; the first number must
  not exceed the second), each optionally followed by ``/n`` (every n-th value of the range,
  n >= 1; a step wider than the range is accepted, as cronie does, and gives the first value).
  In the day-of-week field ``*`` is 0-7, as in cronie, and a range may end on Sunday written
  as 0 or ``sun`` (``fri-sun`` is ``5-7``), as cronie allows.

Day matching (cronie's ``cron.c``, the same as Vixie cron's): a field "is ``*``" when its text
starts with ``*`` (so ``*/2`` counts) or is ``?``. When the day-of-month or the day-of-week
field is ``*``, a day matches if it matches BOTH fields (the ``*`` field matches every day it
lists: all of them for a plain ``*``, every other day for ``*/2``); when both are restricted,
a day matches if it matches EITHER. So ``0 0 1,15 * 5`` runs on the 1st, the 15th and every
Friday; ``0 0 */2 * 1`` runs on the Mondays that fall on an odd day of the month. This is
croniter's ``implement_cron_bug=True``; croniter's default (``day_or=True`` alone) treats
``*/2`` as restricted and ORs it, which is not what cron does.

Extensions (Quartz-style, as croniter has them), and how they combine:

- ``?`` is ``*``; it must be the whole day-of-month or day-of-week field.
- day of month ``L`` is the last day of the month, ``L-n`` (n 0-30) the n-th day before it
  (``L-3`` is the 28th of a 31-day month; no day in a month shorter than n + 1 days). They can
  be list items (``1,L``) but take no range or step.
- day of week ``nL`` is the last weekday n of the month (``5L``, ``friL``: the last Friday),
  ``n#k`` (k 1-5) the k-th weekday n (``1#2``: the second Monday; no day in a month without a
  fifth one for ``#5``); n is 0-7 or a name. They can be list items, also next to plain
  weekdays (``1#1,5``: the first Monday and every Friday).
- an extension makes its field restricted, like any other value, so the OR rule applies:
  ``0 0 L * 5`` is the last day of the month or any Friday (as croniter does), and
  ``0 0 1 * 5#2`` is the 1st or the second Friday; ``0 0 ? * 5#2`` and ``0 0 */2 * 5L`` AND
  as usual.

Everything else is refused with ``InvalidTrigger`` naming the field and the token: ``W``
(nearest weekday), ``H``/``R`` (hashed/random values), cronie's ``~`` random ranges, a sixth
(seconds or year) field, names outside the month and day-of-week fields or longer than three
letters, backwards ranges, steps of 0, out-of-range values.

Where croniter (7.0) and crontab(5) disagree, this module follows crontab(5)/cronie:

- ``*/n`` in a day field: see above (croniter's default ORs it; cron ANDs it).
- an equal range ``5-5`` is 5; croniter reads a range written with equal ends as the whole
  field (``0 0 * * 1-1`` fires daily there).
- a backwards range (``fri-mon``, ``nov-feb``, ``50-10``) is an error; croniter wraps it around.
  crontab(5): "The first number must be less than or equal to the second one."
- a day field counts as ``*`` when its text starts with ``*``, as cronie tests it; croniter
  also looks for a ``*`` further on (``1,*/10``) when the other day field lists every day.
- ``5/10`` (a start with a step) is not crontab(5): cronie refuses it. It is accepted here as
  ``5-<max>/10``, as croniter, Quartz and ``triggers.parse_cron`` (APScheduler) read it. In
  the day-of-week field 7 is first read as Sunday (0) and the range ends on Saturday, as in
  croniter and ``triggers._parse_dow``: ``1/2`` is Mon, Wed, Fri and ``7/2`` is ``0/2``.

Where croniter disagrees with itself or lacks the extension, this module picks the consistent
reading: ``n#k``/``nL`` with a restricted day of month are ORed (croniter returns every k-th
weekday whatever the day of month says, unless the two never coincide, when it raises "failed
to find next date"); ``1#2,5`` is the union (croniter refuses it, or drops the 5 from
``5#2,5``); ``L-n`` exists (croniter refuses it); the last-weekday form is spelled ``5L``
(croniter spells it ``L5`` and refuses ``5L``).

Search bound: the day rule of a month depends only on its length and on the weekday of its
first day, and for every month and every such pair the longest gap between two years that
have it is 40 years (a leap February starting on a Tuesday: 2084, then 2124, because 2100 is
not a leap year; the 28-year cycle breaks at every century year that is not a multiple of
400). So an expression that matches at all matches within ``MAX_YEARS`` = 40 calendar years
after any start (the test suite recomputes that maximum over the 400-year Gregorian cycle);
``next_after`` returns ``None`` when the years ``wall.year`` .. ``wall.year + 40`` hold no
match, or past the year 9999. An expression that can never match (``0 0 30 2 *``) is found
out without that search: the first time a search runs into another year, the (at most 28)
kinds of month are checked once for a matching day.
"""

from __future__ import annotations

import bisect
import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from .exceptions import InvalidTrigger

__all__ = ["ALIASES", "FIELD_NAMES", "MAX_YEARS", "CronExpression"]

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
FIELD_NAMES = ("minute", "hour", "day-of-month", "month", "day-of-week")
# The longest gap, in calendar years, between two years in which a given month has the same
# length and starts on the same weekday (see the module docstring).
MAX_YEARS = 40

_MONTH_NAMES = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
        start=1,
    )
}
_DOW_NAMES = {
    name: number for number, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
}
# (low, high, names) of each field; the day of week runs to 7 (Sunday again), as in cronie.
_SPECS: tuple[tuple[int, int, dict[str, int] | None], ...] = (
    (0, 59, None),
    (0, 23, None),
    (1, 31, None),
    (1, 12, _MONTH_NAMES),
    (0, 7, _DOW_NAMES),
)
_MINUTE, _HOUR, _DOM, _MONTH, _DOW = range(5)

_VALUE = r"[0-9]+|[a-z]+"
_RANGE_RE = re.compile(
    rf"(?P<start>\*|{_VALUE})(?:-(?P<end>{_VALUE}))?(?:/(?P<step>[0-9]+))?", re.ASCII
)
_LAST_DOM_RE = re.compile(r"l(?:-(?P<offset>[0-9]+))?", re.ASCII)
_LAST_DOW_RE = re.compile(rf"(?P<day>{_VALUE})l", re.ASCII)
_NTH_DOW_RE = re.compile(rf"(?P<day>{_VALUE})#(?P<nth>[0-9]+)", re.ASCII)
_FIELDS_RE = re.compile(r"[^ \t\r\n]+")
_HASHED_RE = re.compile(r"[hr](?:$|[(/])")
_MINUTE_STEP = timedelta(minutes=1)


@dataclass(frozen=True)
class _Days:
    """The parsed day fields: what each matches, and whether each counts as ``*``."""

    dom: frozenset[int]  # days of the month, 1-31
    dom_last: frozenset[int]  # offsets n of ``L-n`` (``L`` is 0)
    dom_star: bool
    dow: frozenset[int]  # weekdays, 0 = Sunday .. 6
    dow_nth: frozenset[tuple[int, int]]  # (weekday, k) of ``n#k``
    dow_last: frozenset[int]  # weekdays n of ``nL``
    dow_star: bool

    def match(self, day: int, weekday: int, length: int) -> bool:
        """Whether ``day`` of a month of ``length`` days, a ``weekday`` (0 = Sunday), matches."""
        in_dom, in_dow = self.parts(day, weekday, length)
        if self.dom_star or self.dow_star:
            return in_dom and in_dow
        return in_dom or in_dow

    def parts(self, day: int, weekday: int, length: int) -> tuple[bool, bool]:
        """Whether the day-of-month field, and the day-of-week field, each match the day."""
        in_dom = day in self.dom or (length - day) in self.dom_last
        in_dow = (
            weekday in self.dow
            or (weekday, (day + 6) // 7) in self.dow_nth
            or (weekday in self.dow_last and day > length - 7)
        )
        return in_dom, in_dow


def _error(field: int, message: str) -> InvalidTrigger:
    return InvalidTrigger(f"{FIELD_NAMES[field]} field: {message}")


def _unknown(field: int, token: str) -> InvalidTrigger:
    lowered = token.lower()
    hint = ""
    if field == _DOM and "w" in lowered:
        hint = " (W, the nearest weekday, is not supported)"
    elif _HASHED_RE.match(lowered):
        hint = " (hashed and random values, H and R, are not supported)"
    elif "~" in lowered:
        hint = " (random ranges, ~, are not supported)"
    elif "?" in lowered:
        hint = (
            " (? must be the whole field)"
            if field in (_DOM, _DOW)
            else " (? is allowed only in the day-of-month and day-of-week fields)"
        )
    elif field == _DOW and lowered == "l":
        hint = " (L in the day-of-week field needs a weekday: 5L is the last Friday)"
    elif field == _DOM and "l" in lowered:
        hint = " (L takes no range or step: L is the last day, L-3 three days before it)"
    elif field in (_MONTH, _DOW) and re.search("[a-z]{4,}", lowered):
        hint = " (names are the first three letters)"
    elif field in (_MINUTE, _HOUR, _DOM) and re.search("[a-z]{2,}", lowered):
        hint = " (names are allowed only in the month and day-of-week fields)"
    return _error(field, f"unknown token {token!r}{hint}")


def _value(field: int, text: str, token: str) -> int:
    low, high, names = _SPECS[field]
    if text.isdigit():
        value = int(text)
        if not low <= value <= high:
            raise _error(field, f"{value} is out of range {low}-{high} in {token!r}")
        return value
    if names is not None and text in names:
        return names[text]
    raise _unknown(field, token)


def _expand(field: int, token: str) -> list[int]:
    """The values of a plain list item: ``*``, ``a``, ``a-b``, each with an optional ``/n``."""
    low, high, _names = _SPECS[field]
    match = _RANGE_RE.fullmatch(token.lower())
    if match is None:
        raise _unknown(field, token)
    start_text, end_text, step_text = match.group("start", "end", "step")
    step = 1
    if step_text is not None:
        step = int(step_text)
        if step < 1:
            raise _error(field, f"the step must be at least 1 in {token!r}")
    if start_text == "*":
        if end_text is not None:
            raise _unknown(field, token)
        start, end = low, high
    else:
        start = _value(field, start_text, token)
        if end_text is not None:
            end = _value(field, end_text, token)
            if field == _DOW and end == 0 and start > 0:
                end = 7  # fri-sun, 5-0: the range ends on the Sunday at the end of the week
            if start > end:
                raise _error(field, f"the range {token!r} runs backwards")
        elif step_text is not None:
            # ``a/n`` is ``a-<max>/n``; a week runs from Sunday (7 is 0) to Saturday.
            if field == _DOW:
                start, end = start % 7, 6
            else:
                end = high
        else:
            end = start
    values = range(start, end + 1, step)
    return [value % 7 for value in values] if field == _DOW else list(values)


def _items(field: int, text: str) -> list[str]:
    items = text.split(",")
    if any(not item for item in items):
        raise _error(field, f"empty list item in {text!r}")
    return items


def _parse_simple(field: int, text: str) -> frozenset[int]:
    if "?" in text:
        raise _unknown(field, text)
    values: set[int] = set()
    for item in _items(field, text):
        values.update(_expand(field, item))
    return frozenset(values)


def _parse_days(dom_text: str, dow_text: str) -> _Days:
    dom: set[int] = set()
    dom_last: set[int] = set()
    if dom_text == "?":
        dom.update(range(1, 32))
    else:
        for item in _items(_DOM, dom_text):
            last = _LAST_DOM_RE.fullmatch(item.lower())
            if last is None:
                if "?" in item:
                    raise _unknown(_DOM, item)
                dom.update(_expand(_DOM, item))
                continue
            offset = int(last.group("offset") or 0)
            if offset > 30:
                raise _error(_DOM, f"the offset in {item!r} must be 0-30")
            dom_last.add(offset)
    dow: set[int] = set()
    dow_nth: set[tuple[int, int]] = set()
    dow_last: set[int] = set()
    if dow_text == "?":
        dow.update(range(7))
    else:
        for item in _items(_DOW, dow_text):
            lowered = item.lower()
            if (last_dow := _LAST_DOW_RE.fullmatch(lowered)) is not None:
                dow_last.add(_value(_DOW, last_dow.group("day"), item) % 7)
            elif (nth := _NTH_DOW_RE.fullmatch(lowered)) is not None:
                weekday = _value(_DOW, nth.group("day"), item) % 7
                k = int(nth.group("nth"))
                if not 1 <= k <= 5:
                    raise _error(_DOW, f"the week number in {item!r} must be 1-5")
                dow_nth.add((weekday, k))
            elif "?" in item:
                raise _unknown(_DOW, item)
            else:
                dow.update(_expand(_DOW, item))
    return _Days(
        dom=frozenset(dom),
        dom_last=frozenset(dom_last),
        dom_star=dom_text.startswith(("*", "?")),
        dow=frozenset(dow),
        dow_nth=frozenset(dow_nth),
        dow_last=frozenset(dow_last),
        dow_star=dow_text.startswith(("*", "?")),
    )


def _next_table(values: frozenset[int], size: int) -> tuple[int | None, ...]:
    """``table[x]``: the smallest value >= x, or None; ``size + 1`` entries."""
    table: list[int | None] = [None] * (size + 1)
    following: int | None = None
    for x in range(size, -1, -1):
        if x in values:
            following = x
        table[x] = following
    return tuple(table)


class CronExpression:
    """A parsed five-field crontab expression, matched against naive wall-clock times."""

    def __init__(self, expression: str) -> None:
        text = " ".join(_FIELDS_RE.findall(expression))
        if text.startswith("@"):
            if text.lower() not in ALIASES:
                raise InvalidTrigger(
                    f"unknown alias {text!r}; use one of {', '.join(sorted(ALIASES))}"
                )
            text = ALIASES[text.lower()]
        fields = text.split(" ") if text else []
        if len(fields) != 5:
            extra = " (a seconds or year field is not supported)" if len(fields) > 5 else ""
            raise InvalidTrigger(
                f"expected 5 fields ({' '.join(FIELD_NAMES)}), got {len(fields)}{extra}"
            )
        self.expression = text
        self.fields = tuple(fields)
        self.minutes = _parse_simple(_MINUTE, fields[_MINUTE])
        self.hours = _parse_simple(_HOUR, fields[_HOUR])
        self.months = _parse_simple(_MONTH, fields[_MONTH])
        self._days = _parse_days(fields[_DOM], fields[_DOW])
        self._next_minute = _next_table(self.minutes, 60)
        self._next_hour = _next_table(self.hours, 24)
        self._next_month = _next_table(self.months, 13)
        # The matching days of a month depend only on the weekday of its 1st and its length:
        # at most 7 x 4 entries.
        self._month_days: dict[tuple[int, int], tuple[int, ...]] = {}
        self._possible: bool | None = None

    def __repr__(self) -> str:
        return f"CronExpression({self.expression!r})"

    def _days_for(self, first: int, length: int) -> tuple[int, ...]:
        """The matching days of a month of ``length`` days whose 1st is weekday ``first``."""
        days = self._month_days.get((first, length))
        if days is None:
            days = tuple(
                day
                for day in range(1, length + 1)
                if self._days.match(day, (first + day - 1) % 7, length)
            )
            self._month_days[first, length] = days
        return days

    def _days_of(self, year: int, month: int) -> tuple[int, ...]:
        first, length = calendar.monthrange(year, month)
        return self._days_for((first + 1) % 7, length)  # Python's Monday 0 -> cron's Sunday 0

    def days_for(self, first: int, length: int) -> tuple[int, ...]:
        """The days the day fields match in a month of ``length`` days whose 1st is weekday
        ``first`` (Python's numbering: Monday is 0); the month field is not consulted."""
        return self._days_for((first + 1) % 7, length)

    def _can_match(self) -> bool:
        """Whether some day of some allowed month matches (every month of every length
        starts on every weekday in some year)."""
        if self._possible is None:
            self._possible = any(
                self._days_for(first, length)
                for month in self.months
                for length in ((28, 29) if month == 2 else (calendar.monthrange(2001, month)[1],))
                for first in range(7)
            )
        return self._possible

    @property
    def days_are_ored(self) -> bool:
        """Whether both day fields are restricted, so that a day matching either one runs."""
        return not (self._days.dom_star or self._days.dow_star)

    def and_rule_differs(self) -> bool:
        """Whether requiring BOTH day fields to match (APScheduler's rule, which this project
        used before it followed cron) would pick other days in some month it runs in."""
        if not self.days_are_ored:
            return False
        return any(
            len(set(self._days.parts(day, (first + day - 1) % 7, length))) == 2
            for month in self.months
            for length in ((28, 29) if month == 2 else (calendar.monthrange(2001, month)[1],))
            for first in range(7)
            for day in range(1, length + 1)
        )

    def matches(self, wall: datetime) -> bool:
        """Whether the minute of the naive ``wall`` matches (seconds are ignored)."""
        _require_naive(wall)
        if (
            wall.minute not in self.minutes
            or wall.hour not in self.hours
            or wall.month not in self.months
        ):
            return False
        length = calendar.monthrange(wall.year, wall.month)[1]
        return self._days.match(wall.day, (wall.weekday() + 1) % 7, length)

    def next_after(self, wall: datetime) -> datetime | None:
        """The first matching minute strictly after the naive ``wall``, or None.

        None when no minute matches in the years ``wall.year`` .. ``wall.year + MAX_YEARS``,
        which means never (``0 0 30 2 *``), or when the match would fall after the year 9999.
        """
        _require_naive(wall)
        try:
            start = wall.replace(second=0, microsecond=0) + _MINUTE_STEP
        except OverflowError:
            return None
        year, month, day = start.year, start.month, start.day
        hour, minute = start.hour, start.minute
        last_year = min(wall.year + MAX_YEARS, 9999)
        next_month, next_hour, next_minute = self._next_month, self._next_hour, self._next_minute
        while year <= last_year:
            found_month = next_month[month]
            if found_month is None:
                # A search that runs into another year checks (once) that it can end.
                if not self._can_match():
                    return None
                year, month, day, hour, minute = year + 1, 1, 1, 0, 0
                continue
            if found_month != month:
                month, day, hour, minute = found_month, 1, 0, 0
            days = self._days_of(year, month)
            index = bisect.bisect_left(days, day)
            if index == len(days):
                month, day, hour, minute = month + 1, 1, 0, 0
                continue
            if days[index] != day:
                day, hour, minute = days[index], 0, 0
            found_hour = next_hour[hour]
            if found_hour is None:
                day, hour, minute = day + 1, 0, 0
                continue
            if found_hour != hour:
                hour, minute = found_hour, 0
            found_minute = next_minute[minute]
            if found_minute is None:
                hour, minute = hour + 1, 0
                continue
            return datetime(year, month, day, hour, found_minute)
        return None


def _require_naive(wall: datetime) -> None:
    if wall.tzinfo is not None:
        raise ValueError("CronExpression works on naive wall-clock times")


# -- the day clause of a sentence -------------------------------------------------------------

_ORDINALS = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth"}
_WEEKDAY_TITLES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"


def _nth(number: int) -> str:
    suffix = (
        "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    )
    return f"{number}{suffix}"


def _weekday_title(text: str) -> str:
    return _WEEKDAY_TITLES[_value(_DOW, text, text) % 7]


def _describe_item(field: int, item: str) -> str:
    """One list item of a day field, as words ("day 15", "the last Friday")."""
    lowered = item.lower()
    if field == _DOM:
        if (last := _LAST_DOM_RE.fullmatch(lowered)) is not None:
            offset = int(last.group("offset") or 0)
            if not offset:
                return "the last day"
            if offset == 1:
                return "the day before the last day"
            return f"the {_nth(offset)} day before the last day"
        name: Callable[[str], str] = str
    else:
        if (last_dow := _LAST_DOW_RE.fullmatch(lowered)) is not None:
            return f"the last {_weekday_title(last_dow.group('day'))} of the month"
        if (nth := _NTH_DOW_RE.fullmatch(lowered)) is not None:
            ordinal = _ORDINALS[int(nth.group("nth"))]
            return f"the {ordinal} {_weekday_title(nth.group('day'))} of the month"
        name = _weekday_title
    match = _RANGE_RE.fullmatch(lowered)
    if match is None:  # not reached for an expression that parsed
        return item
    start, end, step = match.group("start", "end", "step")
    unit = "day" if field == _DOM else "day of the week"
    if step is not None:
        every = f"every {_nth(int(step))} {unit}" if step != "1" else f"every {unit}"
        if start == "*":
            return every
        if end is None:
            return f"{every} from {'day ' if field == _DOM else ''}{name(start)}"
        return f"{every} from {name(start)} through {name(end)}"
    if start == "*":
        return f"every {unit}"
    if end is not None:
        return f"{'days ' if field == _DOM else ''}{name(start)} through {name(end)}"
    return f"day {start}" if field == _DOM else name(start)


def describe_days(cron: CronExpression, *, both: bool = False) -> str:
    """The day clause of ``cron`` ("on day 1 of the month, or on Monday"), or "" for every day.

    It says what the evaluation does: with both day fields restricted a day matching either
    runs ("or"); with one of them starting with ``*`` a day must match both ("but only").
    ``both=True`` describes the two fields as ANDed whatever they are (the old rule).
    """
    dom_text, dow_text = cron.fields[_DOM], cron.fields[_DOW]
    plain = ("*", "?")
    if dom_text in plain and dow_text in plain:
        return ""
    if dom_text not in plain:
        items = dom_text.split(",")
        if len(items) > 1 and all(item.isdigit() for item in items):
            dom = f"days {_join(items)} of the month"
        else:
            dom = _join([_describe_item(_DOM, item) for item in items])
            # "of the month" once, unless the last item says it already.
            dom = dom if dom.endswith("of the month") else f"{dom} of the month"
        if dow_text in plain:
            return f"on {dom}"
    dow = _join([_describe_item(_DOW, item) for item in dow_text.split(",")])
    if dom_text in plain:
        return f"on {dow}"
    if cron.days_are_ored and not both:
        return f"on {dom}, or on {dow}"
    return f"on {dom}, but only on {dow}"
