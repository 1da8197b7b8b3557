"""Benchmark: evaluating cron and calendar triggers (``scheduling.triggers``).

``python bench/triggers.py [--quick]`` builds triggers for a fixed, seeded sample of crontab
expressions (plain fields, ranges, steps, lists, names; no extension, so that both readings
accept them) in several time zones, and measures per trigger:

- build: ``build_trigger`` of an unsaved schedule (parsing the expression), as the full sync
  does for every schedule;
- first fire: ``get_next_fire_time(None, now)``, as the full sync does for a new job;
- next 20 runs: the chain of ``get_next_fire_time(previous, previous)``, as the scheduler does
  after each fire and the preview does five at a time.

The baseline, in the same process, is the reading this project had before it followed
crontab(5): the same ``ZonedCronTrigger`` with ``legacy=True`` walks the wall clock with
APScheduler's ``CronTrigger`` (the rest of the trigger, the DST mapping, is shared). Where the
two readings differ (both day fields restricted), they walk different days, which is why the
sample keeps one day field ``*``. Calendar triggers (``every N days/weeks/months``) are timed
the same way, without a baseline of their own (APScheduler has no such trigger).

Target: the new evaluation is not slower than the APScheduler baseline (ratio <= 1.0).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from datetime import time as wall_time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402

django.setup()

from scheduling import triggers  # noqa: E402
from scheduling.models import PeriodicScan  # noqa: E402

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
NOW = datetime(2026, 12, 2, 10, 17, tzinfo=UTC)


def sample_expressions(count: int, seed: int = 16) -> list[str]:
    rng = random.Random(seed)

    def field(low: int, high: int, names: list[str] | None = None) -> str:
        shape = rng.random()
        if shape < 0.35:
            return "*"
        if shape < 0.5:
            return f"*/{rng.randint(2, max(2, (high - low) // 2))}"
        if shape < 0.7:
            a = rng.randint(low, high)
            return str(a) if names is None or rng.random() < 0.5 else names[a - low]
        if shape < 0.85:
            a = rng.randint(low, high)
            return f"{a}-{rng.randint(a, high)}"
        return ",".join(str(v) for v in sorted(rng.sample(range(low, high + 1), 3)))

    months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    expressions = []
    while len(expressions) < count:
        dom, dow = field(1, 28), field(0, 6)
        if dom != "*" and dow != "*":
            dom = "*"  # one day field restricted: both readings give the same days
        expressions.append(f"{field(0, 59)} {field(0, 23)} {dom} {field(1, 12, months)} {dow}")
    return expressions


def cron_schedule(expression: str, zone: str, *, legacy: bool) -> PeriodicScan:
    return PeriodicScan(
        trigger_type="cron", cron_expression=expression, timezone=zone, legacy_day_rule=legacy
    )


def calendar_schedules(count: int, seed: int = 16) -> list[PeriodicScan]:
    rng = random.Random(seed)
    schedules = []
    for i in range(count):
        unit = rng.choice(["day", "week", "month"])
        schedules.append(
            PeriodicScan(
                trigger_type="calendar",
                calendar_every=rng.randint(1, 4),
                calendar_unit=unit,
                calendar_time=wall_time(rng.randint(0, 23), rng.choice([0, 15, 30, 45])),
                calendar_weekdays=",".join(
                    rng.sample(["mon", "tue", "wed", "thu", "fri", "sat", "sun"], 2)
                )
                if unit == "week"
                else "",
                timezone=ZONES[i % len(ZONES)],
                start_at=NOW - timedelta(days=rng.randint(0, 400)),
            )
        )
    return schedules


def per_item(func: Callable[[], int], repeat: int) -> float:
    """Best of ``repeat`` runs of ``func`` (which returns how many items it did), in µs/item."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        items = func()
        best = min(best, (time.perf_counter() - start) / items)
    return best * 1e6


def measure(schedules: list[PeriodicScan], repeat: int) -> dict[str, float]:
    built = [triggers.build_trigger(s, jitter=False) for s in schedules]

    def build() -> int:
        for schedule in schedules:
            triggers.build_trigger(schedule, jitter=False)
        return len(schedules)

    def first() -> int:
        for trigger in built:
            trigger.get_next_fire_time(None, NOW)
        return len(built)

    def chain() -> int:
        runs = 0
        for trigger in built:
            fire = trigger.get_next_fire_time(None, NOW)
            for _ in range(20):
                if fire is None:
                    break
                fire = trigger.get_next_fire_time(fire, fire)
                runs += 1
        return max(runs, 1)

    return {
        "build": per_item(build, repeat),
        "first fire": per_item(first, repeat),
        "next 20 runs (per run)": per_item(chain, repeat),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller sample, fewer repeats")
    args = parser.parse_args()
    count, repeat = (200, 2) if args.quick else (1_000, 5)
    expressions = sample_expressions(count)
    pairs = [(e, ZONES[i % len(ZONES)]) for i, e in enumerate(expressions)]
    new = measure([cron_schedule(e, z, legacy=False) for e, z in pairs], repeat)
    old = measure([cron_schedule(e, z, legacy=True) for e, z in pairs], repeat)
    print(f"cron: {count} expressions in {len(ZONES)} zones, best of {repeat} (µs per item)")
    print(f"  {'':<24} {'scheduling.cron':>16} {'APScheduler':>12} {'ratio':>7}")
    for name in new:
        print(f"  {name:<24} {new[name]:>16.1f} {old[name]:>12.1f} {new[name] / old[name]:>7.2f}")
    worst = max(new[name] / old[name] for name in new)
    verdict = "PASS" if worst <= 1.0 else "MISS"
    print(f"  target: not slower than APScheduler (worst ratio {worst:.2f}): {verdict}")
    calendars = measure(calendar_schedules(count), repeat)
    print(f"calendar: {count} schedules (day, week, month; 1-4 apart) (µs per item)")
    for name, value in calendars.items():
        print(f"  {name:<24} {value:>16.1f}")


if __name__ == "__main__":
    main()
