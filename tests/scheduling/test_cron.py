"""scheduling.cron: crontab(5) semantics, checked by hand, against croniter, and by brute force.

The croniter oracle runs croniter with ``implement_cron_bug=True``: that is its Vixie-cron
day rule (a day field that starts with ``*`` ANDs), which croniter's default does not have.
Where croniter reads an expression differently (``n#k`` or ``nL`` next to a restricted day of
month, ``1#2,5``; see the module docstring of scheduling.cron), the expected times are the
union of several croniter expressions: both day fields restricted means the day-of-month
schedule OR the day-of-week one, so ``1,15 * 5#2`` is checked as ``1,15 * *`` merged with
``* * 5#2``. Everything else is compared with croniter's own reading of the expression (with
``nL`` respelled ``Ln``, croniter's spelling).
Random ``*/n`` items are only generated first in their list: croniter decides whether a field
is ``*`` from whether it contains a ``*`` where cron looks at the first character, which
differs for ``1,*/3`` next to a field that lists every day.
"""

from __future__ import annotations

import calendar
import contextlib
import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest

from scheduling.cron import MAX_YEARS, CronExpression
from scheduling.exceptions import InvalidTrigger

pytestmark = pytest.mark.reference

MONTH_NAMES = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DOW_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
BOUNDS = {"minute": (0, 59), "hour": (0, 23), "dom": (1, 31), "month": (1, 12), "dow": (0, 7)}


def runs(expression: str, start: datetime, n: int = 6) -> list[datetime]:
    cron = CronExpression(expression)
    found: list[datetime] = []
    cursor: datetime | None = start
    while len(found) < n:
        cursor = cron.next_after(cursor)
        if cursor is None:
            break
        found.append(cursor)
    return found


def dates(*values: tuple[int, ...]) -> list[datetime]:
    return [datetime(*value) for value in values]


# -- crontab(5) and the extensions, by hand ---------------------------------------------------


def test_both_day_fields_restricted_means_either():
    # crontab(5): "0 0 1 * 1" runs at midnight on the 1st and on every Monday.
    assert runs("0 0 1 * 1", datetime(2026, 11, 30, 12, 0)) == dates(
        (2026, 12, 1),  # a Tuesday, the 1st
        (2026, 12, 7),
        (2026, 12, 14),
        (2026, 12, 21),
        (2026, 12, 28),
        (2027, 1, 1),  # a Friday, the 1st
    )
    # The man page's own example: 04:30 on the 1st and the 15th, plus every Friday.
    assert runs("30 4 1,15 * 5", datetime(2026, 5, 1, 4, 30)) == dates(
        (2026, 5, 8, 4, 30),
        (2026, 5, 15, 4, 30),
        (2026, 5, 22, 4, 30),
        (2026, 5, 29, 4, 30),
        (2026, 6, 1, 4, 30),
        (2026, 6, 5, 4, 30),
    )


def test_a_day_field_starting_with_a_star_means_both():
    # */2 is "restricted" in what it lists but counts as * for the rule: odd days AND Mondays.
    assert runs("0 0 */2 * 1", datetime(2026, 12, 1)) == dates(
        (2026, 12, 7), (2026, 12, 21), (2027, 1, 11), (2027, 1, 25), (2027, 2, 1), (2027, 2, 15)
    )
    # The same from the other side: the 1st AND Sunday/Tuesday/Thursday/Saturday (*/2 = 0,2,4,6).
    assert runs("0 0 1 * */2", datetime(2026, 1, 1), 4) == dates(
        (2026, 2, 1), (2026, 3, 1), (2026, 8, 1), (2026, 9, 1)
    )
    # A star that is not first does not count: 1,*/10 is restricted, so this ORs.
    assert runs("0 0 1,*/10 * 1", datetime(2026, 1, 1), 4) == dates(
        (2026, 1, 5), (2026, 1, 11), (2026, 1, 12), (2026, 1, 19)
    )
    # ? is *, in either field.
    assert runs("0 0 ? * 1", datetime(2026, 1, 1), 2) == runs("0 0 * * 1", datetime(2026, 1, 1), 2)
    assert runs("0 0 15 * ?", datetime(2026, 1, 1), 2) == dates((2026, 1, 15), (2026, 2, 15))


def test_man_page_examples():
    # "23 0-23/2 * * *": 23 minutes after midnight, 2am, 4am, ..., every day.
    assert runs("23 0-23/2 * * *", datetime(2026, 1, 1), 3) == dates(
        (2026, 1, 1, 0, 23), (2026, 1, 1, 2, 23), (2026, 1, 1, 4, 23)
    )
    # "5 4 * * sun": 04:05 on Sundays.
    assert runs("5 4 * * sun", datetime(2026, 1, 1), 2) == dates(
        (2026, 1, 4, 4, 5), (2026, 1, 11, 4, 5)
    )
    # "*/23" in the hour field is hours 0 and 23 (steps stay within the field).
    assert runs("0 */23 * * *", datetime(2026, 1, 1), 3) == dates(
        (2026, 1, 1, 23), (2026, 1, 2, 0), (2026, 1, 2, 23)
    )
    assert runs("0 22 * * 1-5", datetime(2026, 1, 2, 22), 2) == dates(
        (2026, 1, 5, 22), (2026, 1, 6, 22)
    )


def test_values_ranges_steps_and_names():
    assert CronExpression("5-5 * * * *").minutes == {5}  # croniter reads 5-5 as every minute
    assert CronExpression("5/20 * * * *").minutes == {5, 25, 45}
    assert CronExpression("10-30/7,59 * * * *").minutes == {10, 17, 24, 59}
    assert CronExpression("*/25 * * * *").minutes == {0, 25, 50}
    assert CronExpression("*/70 * * * *").minutes == {0}  # a wide step: cronie warns, runs
    assert CronExpression("0 0 * JAN,mar-May/2,Dec *").months == {1, 3, 5, 12}
    assert CronExpression("0 0 * 11/2 *").months == {11}
    assert CronExpression("0 0 * feb *").months == {2}
    # Aliases, and whitespace between fields.
    assert CronExpression("@Weekly").expression == "0 0 * * 0"
    assert CronExpression("  0\t0  1 *   * ").expression == "0 0 1 * *"


@pytest.mark.parametrize(
    ("dow", "weekdays"),
    [
        ("7", {0}),
        ("0,7", {0}),
        ("*", set(range(7))),
        ("0-7", set(range(7))),
        ("*/3", {0, 3, 6}),
        ("5-7", {5, 6, 0}),
        ("fri-sun", {5, 6, 0}),  # cronie: a range may end on Sunday written as 0 or sun
        ("5-0", {5, 6, 0}),
        ("1-0/3", {1, 4, 0}),
        ("MON-fri/2", {1, 3, 5}),
        ("1/2", {1, 3, 5}),  # a/n ends on Saturday, as croniter and triggers._parse_dow
        ("7/2", {0, 2, 4, 6}),  # 7 is read as 0 first
        ("sat/1", {6}),
        ("2-2", {2}),
    ],
)
def test_day_of_week_values(dow, weekdays):
    cron = CronExpression(f"0 0 * * {dow}")
    start = datetime(2026, 1, 3)  # a Saturday: the next 14 days cover every weekday twice
    found = {(day.isoweekday() % 7) for day in runs(f"0 0 * * {dow}", start, 40)}
    assert found == weekdays
    assert all(cron.matches(day) for day in runs(f"0 0 * * {dow}", start, 5))


def test_impossible_dates_never_fire():
    assert CronExpression("0 0 30 2 *").next_after(datetime(2026, 1, 1)) is None
    assert CronExpression("0 0 31 4,6,9,11 *").next_after(datetime(2026, 1, 1)) is None
    # ... but under the OR rule the weekday still fires.
    assert runs("0 0 31 2 1", datetime(2026, 1, 1), 1) == dates((2026, 2, 2))
    # 29 February waits for a leap year.
    assert runs("0 0 29 2 *", datetime(2024, 3, 1), 2) == dates((2028, 2, 29), (2032, 2, 29))
    assert runs("0 0 29 2 *", datetime(2096, 3, 1), 1) == dates((2104, 2, 29))


def test_the_search_bound_covers_the_longest_gap():
    # A leap February that starts on a Tuesday (so it has five Tuesdays): 2084, then 2124.
    assert runs("0 0 ? 2 2#5", datetime(2084, 2, 29, 0, 1), 2) == dates(
        (2124, 2, 29), (2152, 2, 29)
    )
    assert runs("0 0 29 2 */7", datetime(2072, 3, 1), 1) == dates((2088, 2, 29))


def test_max_years_is_the_longest_gap_of_the_gregorian_cycle():
    """Each month's day rule depends only on (weekday of its 1st, length); the cycle is 400."""
    years_of: dict[tuple[int, int, int], list[int]] = {}
    for year in range(2000, 2800):  # two cycles, so that gaps across the cycle's end count
        for month in range(1, 13):
            years_of.setdefault((month, *calendar.monthrange(year, month)), []).append(year)
    longest = max(b - a for years in years_of.values() for a, b in itertools.pairwise(years))
    assert longest == MAX_YEARS
    # Every month starts on every weekday, with each of its lengths (CronExpression relies on it
    # to tell an expression that can never fire).
    assert len(years_of) == 12 * 7 + 7


def test_next_after_is_strictly_after_and_drops_seconds():
    cron = CronExpression("* * * * *")
    assert cron.next_after(datetime(2026, 1, 1)) == datetime(2026, 1, 1, 0, 1)
    assert cron.next_after(datetime(2026, 1, 1, 0, 0, 59, 999999)) == datetime(2026, 1, 1, 0, 1)
    assert CronExpression("0 0 1 1 *").next_after(datetime(2026, 1, 1)) == datetime(2027, 1, 1)
    assert CronExpression("59 23 31 12 *").next_after(datetime(2026, 12, 31, 23, 58, 30)) == (
        datetime(2026, 12, 31, 23, 59)
    )
    assert cron.matches(datetime(2026, 1, 1, 0, 0, 30))


def test_the_end_of_time():
    assert CronExpression("* * * * *").next_after(datetime.max) is None
    assert CronExpression("0 0 1 1 *").next_after(datetime(9999, 6, 1)) is None
    assert CronExpression("59 23 31 12 *").next_after(datetime(9999, 6, 1)) == datetime(
        9999, 12, 31, 23, 59
    )


def test_aware_datetimes_are_refused():
    cron = CronExpression("* * * * *")
    with pytest.raises(ValueError, match="naive"):
        cron.next_after(datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="naive"):
        cron.matches(datetime(2026, 1, 1, tzinfo=UTC))


def test_last_day_of_month():
    assert runs("0 0 L * *", datetime(2027, 12, 31), 4) == dates(
        (2028, 1, 31), (2028, 2, 29), (2028, 3, 31), (2028, 4, 30)
    )
    assert runs("0 0 L-3 * *", datetime(2027, 12, 31), 4) == dates(
        (2028, 1, 28), (2028, 2, 26), (2028, 3, 28), (2028, 4, 27)
    )
    # L-30 exists only in 31-day months; L-28 of February only in a leap year.
    assert runs("0 0 L-30 * *", datetime(2026, 1, 2), 3) == dates(
        (2026, 3, 1), (2026, 5, 1), (2026, 7, 1)
    )
    assert runs("0 0 L-28 2 *", datetime(2026, 1, 1), 1) == dates((2028, 2, 1))
    assert runs("0 0 1,l-1,15 2 *", datetime(2026, 1, 1), 3) == dates(
        (2026, 2, 1), (2026, 2, 15), (2026, 2, 27)
    )


def test_last_and_nth_weekday():
    assert runs("0 0 * * 5L", datetime(2026, 1, 1), 3) == dates(
        (2026, 1, 30), (2026, 2, 27), (2026, 3, 27)
    )
    assert runs("0 0 * * 7L", datetime(2026, 1, 1), 2) == runs(
        "0 0 * * sunL", datetime(2026, 1, 1), 2
    )
    assert runs("0 0 * * 0L", datetime(2026, 1, 1), 2) == dates((2026, 1, 25), (2026, 2, 22))
    assert runs("0 0 * * 1#2", datetime(2026, 1, 1), 3) == dates(
        (2026, 1, 12), (2026, 2, 9), (2026, 3, 9)
    )
    assert runs("0 0 * * 7#1,sat#1", datetime(2026, 1, 1), 3) == dates(
        (2026, 1, 3), (2026, 1, 4), (2026, 2, 1)
    )
    # A fifth Friday: months that have none are skipped.
    assert runs("0 0 * * FRI#5", datetime(2026, 1, 1), 4) == dates(
        (2026, 1, 30), (2026, 5, 29), (2026, 7, 31), (2026, 10, 30)
    )
    # Mixed with plain weekdays: the first Monday and every Friday.
    assert runs("0 0 * * 1#1,5", datetime(2026, 1, 1), 4) == dates(
        (2026, 1, 2), (2026, 1, 5), (2026, 1, 9), (2026, 1, 16)
    )


def test_extensions_follow_the_or_rule():
    # As croniter: the last day of the month, or any Friday.
    assert runs("0 0 L * 5", datetime(2026, 1, 22), 4) == dates(
        (2026, 1, 23), (2026, 1, 30), (2026, 1, 31), (2026, 2, 6)
    )
    # The 1st, or the second Friday (croniter: only second Fridays, and an error for 15).
    assert runs("0 0 1 * 5#2", datetime(2026, 1, 1), 4) == dates(
        (2026, 1, 9), (2026, 2, 1), (2026, 2, 13), (2026, 3, 1)
    )
    assert runs("0 0 L * 5L", datetime(2026, 1, 1), 3) == dates(
        (2026, 1, 30), (2026, 1, 31), (2026, 2, 27)
    )
    # With a star in a day field, they AND: the last Friday on an odd day.
    assert runs("0 0 */2 * 5L", datetime(2026, 1, 1), 3) == dates(
        (2026, 2, 27), (2026, 3, 27), (2026, 5, 29)
    )
    assert runs("0 0 L * */7", datetime(2026, 1, 1), 2) == dates((2026, 5, 31), (2027, 1, 31))


@pytest.mark.parametrize(
    ("expression", "field", "token"),
    [
        ("0 0 * * XYZ", "day-of-week", "XYZ"),
        ("0 0 15W * *", "day-of-month", "15W"),
        ("0 0 W * *", "day-of-month", "W"),
        ("0 0 LW * *", "day-of-month", "LW"),
        ("H * * * *", "minute", "H"),
        ("H/5 * * * *", "minute", "H/5"),
        ("0 H(0-5) * * *", "hour", "H(0-5)"),
        ("R * * * *", "minute", "R"),
        ("0~30 * * * *", "minute", "0~30"),
        ("0 mon * * *", "hour", "mon"),
        ("0 0 jan * *", "day-of-month", "jan"),
        ("0 0 * monday *", "month", "monday"),
        ("0 0 * * monday", "day-of-week", "monday"),
        ("0 0 * * jan", "day-of-week", "jan"),
        ("0 0 * fri *", "month", "fri"),
        ("0 0 ?,1 * *", "day-of-month", "?"),
        ("? * * * *", "minute", "?"),
        ("0 0 * ? *", "month", "?"),
        ("0 0 ?/2 * *", "day-of-month", "?/2"),
        ("0 0 * * L", "day-of-week", "L"),
        ("0 0 * * L5", "day-of-week", "L5"),
        ("0 0 * * 5L/2", "day-of-week", "5L/2"),
        ("0 0 15-L * *", "day-of-month", "15-L"),
        ("0 0 L/2 * *", "day-of-month", "L/2"),
        ("0 0 L-L * *", "day-of-month", "L-L"),
        ("0 0 * L *", "month", "L"),
        ("5L * * * *", "minute", "5L"),
        ("0 0 * * 1#2-3", "day-of-week", "1#2-3"),
        ("0 0 * * 1#", "day-of-week", "1#"),
        ("0 0 * * 1-", "day-of-week", "1-"),
        ("-5 * * * *", "minute", "-5"),
        ("*-5 * * * *", "minute", "*-5"),
        ("*/ * * * *", "minute", "*/"),
        ("*/x * * * *", "minute", "*/x"),
        ("1.5 * * * *", "minute", "1.5"),
        ("0 0 1 1\u00a0* *", "month", "1\u00a0*"),
        # Out of range, backwards, zero steps, bad extension numbers.
        ("60 * * * *", "minute", "60"),
        ("0 24 * * *", "hour", "24"),
        ("0 0 0 * *", "day-of-month", "0"),
        ("0 0 32 * *", "day-of-month", "32"),
        ("0 0 * 0 *", "month", "0"),
        ("0 0 * 13 *", "month", "13"),
        ("0 0 * * 8", "day-of-week", "8"),
        ("0 0 * * 8#1", "day-of-week", "8#1"),
        ("0 0 * * 9L", "day-of-week", "9L"),
        ("0 0 1-40 * *", "day-of-month", "1-40"),
        ("5-1 * * * *", "minute", "5-1"),
        ("0 0 * nov-feb *", "month", "nov-feb"),
        ("0 0 * * fri-mon", "day-of-week", "fri-mon"),
        ("0 0 * * 5-1", "day-of-week", "5-1"),
        ("*/0 * * * *", "minute", "*/0"),
        ("0 0 * jan-feb/0 *", "month", "jan-feb/0"),
        ("0 0 * * 1#0", "day-of-week", "1#0"),
        ("0 0 * * 1#6", "day-of-week", "1#6"),
        ("0 0 L-31 * *", "day-of-month", "L-31"),
        ("1,,2 * * * *", "minute", "1,,2"),
        ("0 0 1, * *", "day-of-month", "1,"),
        ("0 0 * * ,1", "day-of-week", ",1"),
    ],
)
def test_refused_tokens_name_the_field_and_the_token(expression, field, token):
    with pytest.raises(InvalidTrigger) as info:
        CronExpression(expression)
    message = str(info.value)
    assert message.startswith(f"{field} field: "), message
    assert repr(token) in message, message


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("", "got 0"),
        ("* * * *", "got 4"),
        ("0 * * * * *", "got 6 (a seconds or year field is not supported)"),
        ("0 0 0 1 1 * 2026", "got 7"),
        ("@reboot", "unknown alias '@reboot'"),
        ("@every 5m", "unknown alias"),
    ],
)
def test_refused_shapes(expression, fragment):
    with pytest.raises(InvalidTrigger) as info:
        CronExpression(expression)
    assert fragment in str(info.value)


def test_hints_for_known_extensions():
    for expression, hint in [
        ("0 0 15W * *", "nearest weekday"),
        ("H * * * *", "hashed"),
        ("0 0 * * monday", "first three letters"),
        ("0 0 * * L", "5L is the last Friday"),
        ("0 0 15-L * *", "L takes no range"),
        ("0 ? * * *", "only in the day-of-month and day-of-week"),
        ("0 mon * * *", "only in the month and day-of-week"),
    ]:
        with pytest.raises(InvalidTrigger, match=hint):
            CronExpression(expression)


# -- random expressions ------------------------------------------------------------------------


def _value(rng: random.Random, field: str, value: int) -> str:
    """``value`` as a number or, now and then, as a name."""
    if field == "month" and rng.random() < 0.3:
        return MONTH_NAMES[value - 1].capitalize() if rng.random() < 0.5 else MONTH_NAMES[value - 1]
    if field == "dow" and value < 7 and rng.random() < 0.3:
        return DOW_NAMES[value].upper() if rng.random() < 0.5 else DOW_NAMES[value]
    return str(value)


def _item(rng: random.Random, field: str, first: bool) -> str:
    """A plain list item: a value, a range (never with equal ends), a/n, a-b/n or */n."""
    low, high = BOUNDS[field]
    kind = rng.choice(["value", "value", "range", "range_step", "start_step"] + ["star"] * first)
    if kind == "star":
        return f"*/{rng.randint(1, high - low + 2)}"
    a = rng.randint(low, high)
    if kind == "value":
        return _value(rng, field, a)
    if kind == "start_step":
        return f"{_value(rng, field, a)}/{rng.randint(1, high - low + 1)}"
    if a == high:
        a -= 1
    b = rng.randint(a + 1, high)
    if field == "dow" and a > 0 and rng.random() < 0.2:
        end = rng.choice(["0", "sun", "SUN"])  # cronie: fri-sun is 5-7
    else:
        end = _value(rng, field, b)
    token = f"{_value(rng, field, a)}-{end}"
    if kind == "range_step":
        token += f"/{rng.randint(1, b - a + 2)}"
    return token


def _plain_field(rng: random.Random, field: str, extras: tuple[str, ...] = ()) -> str:
    if rng.random() < 0.2:
        return "*"
    items = [_item(rng, field, first=index == 0) for index in range(rng.choice([1, 1, 2, 3]))]
    for extra in extras:
        if rng.random() < 0.25:
            items.insert(rng.randrange(len(items) + 1) if items[0][0] != "*" else 1, extra)
    return ",".join(items)


def _nth_items(rng: random.Random) -> tuple[list[str], list[str]]:
    """One or two ``n#k`` / ``nL`` items, as written here and as croniter spells them."""
    ours, theirs = [], []
    for _ in range(rng.choice([1, 1, 2])):
        weekday = rng.randint(0, 7)
        name = _value(rng, "dow", weekday)
        if rng.random() < 0.5:
            k = rng.randint(1, 5)
            ours.append(f"{name}#{k}")
            theirs.append(f"{weekday}#{k}")
        else:
            ours.append(f"{name}{rng.choice('lL')}")
            theirs.append(f"L{weekday}")
    return ours, theirs


def _random_case(rng: random.Random, *, croniter_only: bool) -> tuple[str, list[str]]:
    """An expression, and the croniter expressions whose merged runs are its runs.

    ``croniter_only``: no ``L-n`` (croniter has no such token); otherwise anything goes and the
    croniter plan is empty.
    """
    minute = _plain_field(rng, "minute") if rng.random() < 0.7 else str(rng.randint(0, 59))
    hour = _plain_field(rng, "hour") if rng.random() < 0.7 else str(rng.randint(0, 23))
    month = _plain_field(rng, "month") if rng.random() < 0.5 else "*"
    dom_extras = ("L",) if croniter_only else ("L", f"L-{rng.randint(0, 30)}")
    roll = rng.random()
    dom = "?" if roll < 0.1 else _plain_field(rng, "dom", dom_extras)
    dom_star = dom.startswith(("*", "?"))
    roll = rng.random()
    nth_ours: list[str] = []
    nth_theirs: list[str] = []
    plain = ""
    if roll < 0.1:
        dow = "?"
    elif roll < 0.4:
        nth_ours, nth_theirs = _nth_items(rng)
        # croniter ANDs a nth-only field with a star day of month; mixing it with plain days
        # is checked as a union below, so only when the day of month is restricted.
        if not dom_star and rng.random() < 0.4:
            plain = ",".join(_item(rng, "dow", first=False) for _ in range(rng.randint(1, 2)))
        dow = ",".join(nth_ours + ([plain] if plain else []))
    else:
        dow = _plain_field(rng, "dow")
    expression = f"{minute} {hour} {dom} {month} {dow}"
    if not croniter_only:
        return expression, []
    dow_theirs = ",".join(nth_theirs) if nth_theirs else dow
    if dom_star or dow.startswith(("*", "?")) or not nth_theirs:
        # croniter's own rule: AND with a star, OR (its "clean split") without one.
        return expression, [f"{minute} {hour} {dom} {month} {dow_theirs}"]
    # n#k / nL next to a restricted day of month: croniter does not OR them, so merge.
    plan = [f"{minute} {hour} {dom} {month} *", f"{minute} {hour} * {month} {dow_theirs}"]
    if plain:
        plan.append(f"{minute} {hour} * {month} {plain}")
    return expression, plan


def _random_start(rng: random.Random) -> datetime:
    start = datetime(1975, 1, 1) + timedelta(seconds=rng.randrange(115 * 365 * 86400))
    return start.replace(second=0) if rng.random() < 0.5 else start


def _croniter_next(plan: list[str], after: datetime) -> datetime | None:
    from croniter import CroniterBadDateError, croniter

    found = []
    for expression in plan:
        with contextlib.suppress(CroniterBadDateError):
            found.append(croniter(expression, after, implement_cron_bug=True).get_next(datetime))
    return min(found, default=None)


CHUNKS = 10
PER_CHUNK = 300


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_croniter_agrees_on_random_expressions(chunk):
    """CHUNKS x PER_CHUNK random expressions, two random starts each, five runs from each."""
    rng = random.Random(20260 + chunk)
    mismatches = []
    for _ in range(PER_CHUNK):
        expression, plan = _random_case(rng, croniter_only=True)
        cron = CronExpression(expression)
        for _start in range(2):
            ours: datetime | None = _random_start(rng)
            theirs: datetime | None = ours
            for _run in range(5):
                assert ours is not None and theirs is not None
                ours, theirs = cron.next_after(ours), _croniter_next(plan, theirs)
                if ours != theirs:
                    mismatches.append((expression, plan, ours, theirs))
                    break
                if ours is None:
                    break
                assert cron.matches(ours), (expression, ours)
    assert not mismatches, "\n".join(map(repr, mismatches[:10]))


def test_croniter_agrees_on_the_hand_written_schedules():
    for expression, plan in [
        ("0 0 1 * 1", ["0 0 1 * *", "0 0 * * 1"]),
        ("0 0 */2 * 1", ["0 0 */2 * 1"]),
        ("0 0 L * 5", ["0 0 L * 5"]),
        ("0 0 1 * 5#2", ["0 0 1 * *", "0 0 * * 5#2"]),
        ("0 0 ? 2 2#5", ["0 0 ? 2 2#5"]),
        ("0 0 * * 5L", ["0 0 * * L5"]),
        ("0 0 * * 1-1", ["0 0 * * 1"]),
        ("0 0 * * fri-sun", ["0 0 * * fri-sun"]),
        ("0 0 29 2 */7", ["0 0 29 2 */7"]),
    ]:
        start = datetime(2070, 1, 1)
        cursor_ours: datetime | None = start
        cursor_theirs: datetime | None = start
        for _ in range(5):
            assert cursor_ours is not None and cursor_theirs is not None
            cursor_ours = CronExpression(expression).next_after(cursor_ours)
            cursor_theirs = _croniter_next(plan, cursor_theirs)
            assert cursor_ours == cursor_theirs, expression


# -- brute force: every minute, every day ------------------------------------------------------


def test_next_after_finds_every_matching_minute():
    """A minute-by-minute scan with matches() over four days, for random expressions."""
    rng = random.Random(7)
    for _ in range(60):
        expression, _plan = _random_case(rng, croniter_only=False)
        cron = CronExpression(expression)
        start = _random_start(rng)
        end = start + timedelta(days=4)
        minute = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
        scanned = []
        while minute <= end:
            if cron.matches(minute):
                scanned.append(minute)
            minute += timedelta(minutes=1)
        walked = []
        cursor = cron.next_after(start)
        while cursor is not None and cursor <= end:
            walked.append(cursor)
            cursor = cron.next_after(cursor)
        assert walked == scanned, expression


def test_next_after_finds_every_matching_day():
    """A day-by-day scan with matches() over three years, for random day and month fields."""
    rng = random.Random(11)
    for _ in range(200):
        expression, _plan = _random_case(rng, croniter_only=False)
        _minute, _hour, dom, month, dow = expression.split(" ")
        at = (rng.randint(0, 59), rng.randint(0, 23))
        cron = CronExpression(f"{at[0]} {at[1]} {dom} {month} {dow}")
        first = datetime(rng.randint(1980, 2090), rng.randint(1, 12), 1, at[1], at[0])
        day, end = first, first + timedelta(days=3 * 365)
        scanned = []
        while day <= end:
            if cron.matches(day):
                scanned.append(day)
            day += timedelta(days=1)
        walked = []
        cursor = cron.next_after(first - timedelta(minutes=1))
        while cursor is not None and cursor <= end:
            walked.append(cursor)
            cursor = cron.next_after(cursor)
        assert walked == scanned, cron.expression


@pytest.mark.parametrize("offset", [0, 1, 3, 15, 27, 28, 29, 30])
def test_l_minus_n_against_the_calendar(offset):
    found = runs(f"0 0 L-{offset} * *", datetime(2027, 12, 31), 30)
    expected = [
        datetime(year, month, calendar.monthrange(year, month)[1] - offset)
        for year in range(2028, 2040)
        for month in range(1, 13)
        if calendar.monthrange(year, month)[1] > offset
    ][:30]
    assert found == expected
