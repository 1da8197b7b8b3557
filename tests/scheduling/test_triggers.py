from __future__ import annotations

import itertools
import pickle
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.test import override_settings

from scheduling import triggers
from scheduling.models import PeriodicScan
from tests.factories import make_scan, make_tenant

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def unsaved(**fields) -> PeriodicScan:
    defaults = {
        "name": "probe",
        "scan_type": "test_echo",
        "target": "x",
        "trigger_type": "cron",
        "timezone": "UTC",
    }
    defaults.update(fields)
    return PeriodicScan(**defaults)


def fire_times(trigger, start: datetime, end: datetime) -> list[datetime]:
    """Walk a trigger the way APScheduler does: each fire time from the previous one."""
    times = []
    fire = trigger.get_next_fire_time(None, start)
    while fire is not None and fire < end:
        times.append(fire.astimezone(UTC))
        fire = trigger.get_next_fire_time(fire, fire)
    return times


class TestCronAcrossDst:
    def test_cron_fires_once_per_local_day_across_spring_forward(self):
        schedule = unsaved(cron_expression="30 2 * * *", timezone="Europe/Berlin")
        times = fire_times(
            triggers.build_trigger(schedule), utc(2026, 3, 27, 12), utc(2026, 3, 31, 12)
        )
        assert times == [
            utc(2026, 3, 28, 1, 30),  # 02:30 CET
            utc(2026, 3, 29, 1, 0),  # 02:30 does not exist: 03:00 CEST, the next valid time
            utc(2026, 3, 30, 0, 30),  # 02:30 CEST
            utc(2026, 3, 31, 0, 30),
        ]
        assert times[1].astimezone(BERLIN).strftime("%H:%M %Z") == "03:00 CEST"

    def test_cron_fires_once_per_local_day_across_fall_back(self):
        schedule = unsaved(cron_expression="30 2 * * *", timezone="Europe/Berlin")
        times = fire_times(
            triggers.build_trigger(schedule), utc(2026, 10, 23, 12), utc(2026, 10, 27, 12)
        )
        assert times == [
            utc(2026, 10, 24, 0, 30),  # 02:30 CEST
            utc(2026, 10, 25, 0, 30),  # 02:30 happens twice: fires at the first only
            utc(2026, 10, 26, 1, 30),  # 02:30 CET
            utc(2026, 10, 27, 1, 30),
        ]

    def test_next_runs_preview_matches_the_scheduler_across_dst(self):
        schedule = unsaved(cron_expression="30 2 * * *", timezone="Europe/Berlin")
        runs = triggers.next_runs(schedule, 3, now=utc(2026, 3, 28, 12))
        assert runs == [utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30), utc(2026, 3, 31, 0, 30)]

    def test_gap_policy_skip_does_not_fire_on_the_missing_time(self):
        schedule = unsaved(
            cron_expression="30 2 * * *", timezone="Europe/Berlin", dst_gap_policy="skip"
        )
        runs = triggers.next_runs(schedule, 2, now=utc(2026, 3, 28, 12))
        assert runs == [utc(2026, 3, 30, 0, 30), utc(2026, 3, 31, 0, 30)]

    def test_fold_policy_twice_fires_at_both_occurrences(self):
        schedule = unsaved(
            cron_expression="30 1 * * *", timezone="America/New_York", dst_fold_policy="twice"
        )
        runs = triggers.next_runs(schedule, 3, now=utc(2026, 10, 31, 12))
        # 1 November 2026: 01:30 EDT (05:30Z) and 01:30 EST (06:30Z).
        assert runs == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 30), utc(2026, 11, 2, 6, 30)]

    def test_every_half_hour_through_the_gap_fires_once_at_its_end(self):
        schedule = unsaved(cron_expression="*/30 * * * *", timezone="Europe/Berlin")
        times = fire_times(
            triggers.build_trigger(schedule), utc(2026, 3, 29, 0, 15), utc(2026, 3, 29, 2, 0)
        )
        # 01:30 CET, then 02:00/02:30 do not exist and 03:00 CEST is the same instant.
        assert times == [utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 1, 30)]

    def test_interval_keeps_its_period_in_elapsed_time_across_dst(self):
        schedule = unsaved(
            trigger_type="interval",
            interval_seconds=3600,
            timezone="Europe/Berlin",
            start_at=utc(2026, 10, 24, 22),
        )
        times = fire_times(
            triggers.build_trigger(schedule), utc(2026, 10, 24, 22), utc(2026, 10, 25, 4)
        )
        gaps = {b - a for a, b in zip(times, times[1:], strict=False)}
        assert len(times) == 6 and gaps == {timedelta(hours=1)}
        spring = fire_times(
            triggers.build_trigger(
                unsaved(trigger_type="interval", interval_seconds=3600, start_at=utc(2026, 3, 28))
            ),
            utc(2026, 3, 28, 23),
            utc(2026, 3, 29, 4),
        )
        assert {b - a for a, b in zip(spring, spring[1:], strict=False)} == {timedelta(hours=1)}


class TestCronSemantics:
    def test_weekday_numbers_follow_crontab_where_zero_is_sunday(self):
        schedule = unsaved(cron_expression="0 9 * * 0")
        runs = triggers.next_runs(schedule, 2, now=utc(2026, 11, 23))  # a Monday
        assert [r.strftime("%A") for r in runs] == ["Sunday", "Sunday"]

    def test_weekday_range_monday_to_friday(self):
        schedule = unsaved(cron_expression="0 9 * * 1-5")
        runs = triggers.next_runs(schedule, 7, now=utc(2026, 11, 22))  # a Sunday
        assert [r.strftime("%a") for r in runs] == ["Mon", "Tue", "Wed", "Thu", "Fri", "Mon", "Tue"]

    def test_aliases_expand(self):
        runs = triggers.next_runs(unsaved(cron_expression="@daily"), 2, now=utc(2026, 1, 1, 5))
        assert runs == [utc(2026, 1, 2), utc(2026, 1, 3)]

    def test_cron_respects_start_and_end(self):
        schedule = unsaved(
            cron_expression="0 * * * *", start_at=utc(2026, 1, 1, 10), end_at=utc(2026, 1, 1, 12)
        )
        assert triggers.next_runs(schedule, 5, now=utc(2026, 1, 1)) == [
            utc(2026, 1, 1, 10),
            utc(2026, 1, 1, 11),
            utc(2026, 1, 1, 12),
        ]

    def test_jitter_stays_within_bounds(self):
        trigger = triggers.build_trigger(unsaved(cron_expression="0 * * * *", jitter_seconds=30))
        for _ in range(20):
            fire = trigger.get_next_fire_time(None, utc(2026, 1, 1, 0, 30))
            assert utc(2026, 1, 1, 1) <= fire <= utc(2026, 1, 1, 1, 0, 30)

    def test_trigger_survives_pickling(self):
        trigger = triggers.build_trigger(
            unsaved(cron_expression="30 2 * * *", timezone="Europe/Berlin")
        )
        restored = pickle.loads(pickle.dumps(trigger))  # noqa: S301 - our own bytes
        now = utc(2026, 3, 28, 12)
        assert restored.get_next_fire_time(None, now) == trigger.get_next_fire_time(None, now)

    def test_once_fires_at_run_at_only(self):
        schedule = unsaved(trigger_type="once", run_at=utc(2026, 5, 1, 8))
        assert triggers.next_runs(schedule, 3, now=utc(2026, 4, 1)) == [utc(2026, 5, 1, 8)]

    def test_paused_schedule_preview_starts_after_the_pause(self):
        schedule = unsaved(cron_expression="0 * * * *", paused_until=utc(2026, 1, 1, 5, 30))
        assert triggers.next_runs(schedule, 1, now=utc(2026, 1, 1)) == [utc(2026, 1, 1, 6)]


class TestDescribe:
    def test_cron_sentence_names_the_time_zone(self):
        text = triggers.describe(unsaved(cron_expression="30 2 * * 1-5", timezone="Europe/Berlin"))
        assert text == "At 02:30, Monday through Friday (Europe/Berlin)"

    def test_interval_sentence(self):
        assert triggers.describe(unsaved(trigger_type="interval", interval_seconds=300)) == (
            "Every 5 minutes"
        )
        assert triggers.describe(unsaved(trigger_type="interval", interval_seconds=90)) == (
            "Every 90 seconds"
        )


class TestCronRule:
    """The issue's example: ``0 0 1 * 1`` is the 1st of each month AND every Monday."""

    def test_both_day_fields_restricted_runs_on_either(self):
        schedule = unsaved(cron_expression="0 0 1 * 1", timezone="Europe/Berlin")
        runs = triggers.next_runs(schedule, 5, now=utc(2026, 12, 2))
        assert [r.astimezone(BERLIN).date().isoformat() for r in runs] == [
            "2026-12-07",
            "2026-12-14",
            "2026-12-21",
            "2026-12-28",
            "2027-01-01",
        ]

    def test_the_old_rule_runs_on_mondays_that_are_the_first(self):
        schedule = unsaved(
            cron_expression="0 0 1 * 1", timezone="Europe/Berlin", legacy_day_rule=True
        )
        runs = triggers.next_runs(schedule, 3, now=utc(2026, 12, 2))
        assert [r.astimezone(BERLIN).date().isoformat() for r in runs] == [
            "2027-02-01",
            "2027-03-01",
            "2027-11-01",
        ]

    def test_sentence_preview_and_trigger_agree(self):
        schedule = unsaved(cron_expression="0 0 1 * 1", timezone="Europe/Berlin")
        assert triggers.describe(schedule) == (
            "At 00:00, on day 1 of the month, or on Monday (Europe/Berlin)"
        )
        trigger = triggers.build_trigger(schedule)
        start = utc(2026, 12, 2)
        assert fire_times(trigger, start, utc(2027, 1, 2)) == triggers.next_runs(
            schedule, 5, now=start
        )

    @pytest.mark.parametrize(
        ("expression", "changed"),
        [
            ("0 0 1 * 1", True),
            ("0 0 1-7 * mon", True),
            ("0 0 L * 5", False),  # only the new reading has L: nothing to keep
            ("0 0 last * 5", True),  # APScheduler's own token: kept with the old reading
            ("0 0 * * 1", False),
            ("0 0 */2 * 1", False),
            ("0 0 1 * *", False),
            ("0 0 1-31 * 0-7", False),  # either or both: every day
            ("@weekly", False),
            ("not cron", False),
        ],
    )
    def test_which_expressions_change_meaning(self, expression, changed):
        assert triggers.cron_meaning_changed(expression) is changed


class TestExtendedSentences:
    @pytest.mark.parametrize(
        ("expression", "sentence"),
        [
            ("30 2 * * 1-5", "At 02:30, Monday through Friday"),
            ("0 9 L * *", "At 09:00, on the last day of the month"),
            ("0 9 L-3 * *", "At 09:00, on the 3rd day before the last day of the month"),
            ("0 9 * * 5L", "At 09:00, on the last Friday of the month"),
            ("0 9 * * 1#2", "At 09:00, on the second Monday of the month"),
            ("0 9 ? * 1", "At 09:00, on Monday"),
            ("0 9 */2 * 1", "At 09:00, on every 2nd day of the month, but only on Monday"),
            ("0 9 1,15 * 5", "At 09:00, on days 1 and 15 of the month, or on Friday"),
            (
                "0 9 * * 1#1,5",
                "At 09:00, on the first Monday of the month and Friday",
            ),
            (
                "0 9 L * * ",
                "At 09:00, on the last day of the month",
            ),
            (
                "*/15 9-17 L * *",
                "Every 15 minutes, between 09:00 and 17:59, on the last day of the month",
            ),
            (
                "0 9 * jan,jul 5L",
                "At 09:00, on the last Friday of the month, only in January and July",
            ),
        ],
    )
    def test_sentence(self, expression, sentence):
        assert triggers.describe(unsaved(cron_expression=expression)) == f"{sentence} (UTC)"

    def test_the_old_rule_says_so(self):
        text = triggers.describe(unsaved(cron_expression="0 0 1 * 1", legacy_day_rule=True))
        assert "but only on Monday" in text and "old rule" in text


class TestCalendar:
    def calendar(self, **fields) -> PeriodicScan:
        defaults = {
            "trigger_type": "calendar",
            "calendar_every": 1,
            "calendar_unit": "day",
            "calendar_time": time(9, 0),
            "timezone": "Europe/Berlin",
            "start_at": datetime(2027, 1, 4, tzinfo=BERLIN),  # a Monday
        }
        return unsaved(**{**defaults, **fields})

    def local_runs(self, schedule, n, now=None) -> list[str]:
        runs = triggers.next_runs(schedule, n, now=now or utc(2026, 12, 2))
        return [r.astimezone(ZoneInfo(schedule.timezone)).strftime("%Y-%m-%d %H:%M") for r in runs]

    def test_every_two_weeks_on_given_weekdays_keeps_the_wall_time_across_dst(self):
        schedule = self.calendar(
            calendar_every=2, calendar_unit="week", calendar_weekdays="mon,thu"
        )
        runs = triggers.next_runs(schedule, 12, now=utc(2027, 3, 1))
        local = [r.astimezone(BERLIN) for r in runs]
        assert {r.strftime("%H:%M") for r in local} == {"09:00"}
        assert {r.utcoffset() for r in local} == {timedelta(hours=1), timedelta(hours=2)}
        assert [r.strftime("%a %d %b") for r in local[:4]] == [
            "Mon 01 Mar",
            "Thu 04 Mar",
            "Mon 15 Mar",
            "Thu 18 Mar",
        ]
        # Every other week from the start's week: never two consecutive weeks.
        weeks = sorted({r.isocalendar().week for r in local})
        assert all(b - a == 2 for a, b in itertools.pairwise(weeks))

    def test_weekly_without_weekdays_is_the_weekday_of_the_start(self):
        schedule = self.calendar(calendar_every=3, calendar_unit="week")
        assert self.local_runs(schedule, 3) == [
            "2027-01-04 09:00",
            "2027-01-25 09:00",
            "2027-02-15 09:00",
        ]

    def test_monthly_on_the_31st_uses_the_last_day_of_shorter_months(self):
        schedule = self.calendar(
            calendar_unit="month", start_at=datetime(2027, 1, 31, tzinfo=BERLIN)
        )
        assert self.local_runs(schedule, 4) == [
            "2027-01-31 09:00",
            "2027-02-28 09:00",
            "2027-03-31 09:00",
            "2027-04-30 09:00",
        ]

    def test_nothing_before_the_start_then_every_n_days(self):
        schedule = self.calendar(
            calendar_every=10, start_at=datetime(2027, 1, 4, 12, 0, tzinfo=BERLIN)
        )
        # 09:00 on the 4th is before the start: the first run is ten days on.
        assert self.local_runs(schedule, 2) == ["2027-01-14 09:00", "2027-01-24 09:00"]

    @pytest.mark.django_db
    def test_without_a_start_it_counts_from_the_creation_date(self):
        with time_machine.travel(utc(2027, 5, 5, 12), tick=False):
            schedule = make_scan(
                tenant=make_tenant(),
                scan_type="test_echo",
                target="x",
                trigger_type="calendar",
                calendar_every=2,
                calendar_unit="day",
                calendar_time=time(6, 0),
                timezone="UTC",
            )
        assert self.local_runs(schedule, 2, now=utc(2027, 5, 5, 12)) == [
            "2027-05-07 06:00",
            "2027-05-09 06:00",
        ]

    def test_the_spring_gap_and_the_autumn_fold_follow_the_policies(self):
        daily = {"calendar_time": time(2, 30), "start_at": datetime(2027, 3, 1, tzinfo=BERLIN)}
        spring = utc(2027, 3, 27, 12)
        assert triggers.next_runs(self.calendar(**daily), 2, now=spring) == [
            utc(2027, 3, 28, 1, 0),  # 02:30 does not exist: 03:00 CEST
            utc(2027, 3, 29, 0, 30),
        ]
        assert triggers.next_runs(self.calendar(**daily, dst_gap_policy="skip"), 1, now=spring) == [
            utc(2027, 3, 29, 0, 30)
        ]
        autumn = utc(2027, 10, 30, 12)
        assert triggers.next_runs(self.calendar(**daily), 2, now=autumn) == [
            utc(2027, 10, 31, 0, 30),  # the first 02:30 (CEST)
            utc(2027, 11, 1, 1, 30),
        ]
        assert triggers.next_runs(
            self.calendar(**daily, dst_fold_policy="twice"), 3, now=autumn
        ) == [utc(2027, 10, 31, 0, 30), utc(2027, 10, 31, 1, 30), utc(2027, 11, 1, 1, 30)]

    @pytest.mark.parametrize(
        ("fields", "sentence"),
        [
            ({}, "Every day at 09:00 (Europe/Berlin)"),
            (
                {"calendar_every": 2, "calendar_unit": "week", "calendar_weekdays": "thu,mon"},
                "Every 2 weeks on Monday and Thursday at 09:00, from 2027-01-04 (Europe/Berlin)",
            ),
            (
                {"calendar_every": 3, "calendar_unit": "month"},
                "Every 3 months on day 4 at 09:00, from 2027-01-04 (Europe/Berlin)",
            ),
        ],
    )
    def test_sentence(self, fields, sentence):
        assert triggers.describe(self.calendar(**fields)) == sentence

    def test_survives_pickling(self):
        trigger = triggers.build_trigger(
            self.calendar(calendar_every=2, calendar_unit="week", calendar_weekdays="fri")
        )
        copy = pickle.loads(pickle.dumps(trigger))  # noqa: S301 - our own bytes
        now = utc(2027, 6, 1)
        assert copy.get_next_fire_time(None, now) == trigger.get_next_fire_time(None, now)


@pytest.mark.django_db
class TestValidation:
    def errors(self, **fields) -> dict:
        tenant = make_tenant()
        schedule = unsaved(tenant=tenant, **fields)
        with pytest.raises(ValidationError) as info:
            schedule.full_clean()
        return info.value.message_dict

    @pytest.mark.parametrize(
        ("fields", "field"),
        [
            ({"cron_expression": "61 * * * *"}, "cron_expression"),
            ({"cron_expression": "* * * *"}, "cron_expression"),
            ({"cron_expression": "@sometimes"}, "cron_expression"),
            ({"cron_expression": "0 0 30 2 *"}, "cron_expression"),
            ({"cron_expression": ""}, "cron_expression"),
            ({"trigger_type": "interval", "interval_seconds": None}, "interval_seconds"),
            ({"trigger_type": "interval", "interval_seconds": 0}, "interval_seconds"),
            ({"trigger_type": "once", "run_at": None}, "run_at"),
            ({"cron_expression": "* * * * *", "timezone": "Mars/Olympus"}, "timezone"),
            (
                {
                    "cron_expression": "* * * * *",
                    "start_at": utc(2026, 2, 1),
                    "end_at": utc(2026, 1, 1),
                },
                "end_at",
            ),
            ({"cron_expression": "0 0 W * *"}, "cron_expression"),
            ({"cron_expression": "0 0 * * 1#6"}, "cron_expression"),
            ({"trigger_type": "calendar", "calendar_unit": "day"}, "calendar_every"),
            ({"trigger_type": "calendar", "calendar_every": 0}, "calendar_every"),
            ({"trigger_type": "calendar", "calendar_every": 1001}, "calendar_every"),
            ({"trigger_type": "calendar", "calendar_every": 2}, "calendar_unit"),
            ({"trigger_type": "calendar", "calendar_unit": "year"}, "calendar_unit"),
            ({"trigger_type": "calendar", "calendar_every": 1}, "calendar_time"),
            (
                {"trigger_type": "calendar", "calendar_unit": "day", "calendar_weekdays": "mon"},
                "calendar_weekdays",
            ),
            (
                {"trigger_type": "calendar", "calendar_unit": "week", "calendar_weekdays": "fun"},
                "calendar_weekdays",
            ),
            ({"cron_expression": "* * * * *", "scan_type": "nope"}, "scan_type"),
            ({"cron_expression": "* * * * *", "options": {"bogus": 1}}, "options"),
            (
                {
                    "cron_expression": "* * * * *",
                    "scan_type": "test_sleep",
                    "options": {"seconds": -1},
                },
                "options",
            ),
        ],
    )
    def test_invalid_input_is_rejected_naming_the_field(self, fields, field):
        assert field in self.errors(**fields)

    def test_a_refused_cron_token_is_named(self):
        message = self.errors(cron_expression="0 0 15W * *")["cron_expression"][0]
        assert "day-of-month" in message and "'15W'" in message and "nearest weekday" in message

    def test_an_unknown_weekday_is_named(self):
        message = self.errors(
            trigger_type="calendar",
            calendar_every=1,
            calendar_unit="week",
            calendar_time=time(9),
            calendar_weekdays="mon,funday",
        )["calendar_weekdays"][0]
        assert "'funday'" in message

    def test_a_valid_calendar_schedule_passes(self):
        unsaved(
            tenant=make_tenant(),
            trigger_type="calendar",
            calendar_every=2,
            calendar_unit="week",
            calendar_time=time(9),
            calendar_weekdays="Mon, thursday",
        ).full_clean()

    def test_never_firing_cron_says_so(self):
        message = self.errors(cron_expression="0 0 30 2 *")["cron_expression"][0]
        assert "never fire" in message

    def test_unknown_scan_type_lists_what_is_registered(self):
        message = self.errors(cron_expression="* * * * *", scan_type="nope")["scan_type"][0]
        assert "nope" in message and "test_echo" in message

    @override_settings(SCHEDULING_MIN_INTERVAL=60)
    def test_interval_below_the_minimum_is_rejected(self):
        message = self.errors(trigger_type="interval", interval_seconds=30)["interval_seconds"][0]
        assert "60" in message

    def test_valid_schedule_gets_the_tenant_time_zone_by_default(self):
        tenant = make_tenant(timezone="Asia/Tokyo")
        scan = make_scan(tenant=tenant, scan_type="test_echo", target="x", timezone="")
        assert scan.timezone == "Asia/Tokyo"

    def test_valid_schedule_passes(self):
        tenant = make_tenant()
        schedule = unsaved(tenant=tenant, cron_expression="*/5 * * * 1-5")
        schedule.full_clean()


@pytest.mark.django_db
def test_next_runs_of_a_saved_schedule_starts_from_now():
    tenant = make_tenant()
    with time_machine.travel(utc(2026, 6, 1, 12, 0, 0), tick=False):
        scan = make_scan(tenant=tenant, scan_type="test_echo", interval_seconds=600)
        runs = triggers.next_runs(scan, 3)
    assert runs == [utc(2026, 6, 1, 12, 10), utc(2026, 6, 1, 12, 20), utc(2026, 6, 1, 12, 30)]


def test_new_york_spring_gap_runs_at_the_next_valid_time_or_skips():
    base = {"cron_expression": "30 2 * * *", "timezone": "America/New_York"}
    runs = triggers.next_runs(unsaved(**base), 2, now=utc(2026, 3, 7, 12))
    # 8 March 2026: 02:30 does not exist in New York; 03:00 EDT is 07:00Z.
    assert runs == [utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)]
    skipping = triggers.next_runs(
        unsaved(**base, dst_gap_policy="skip"), 2, now=utc(2026, 3, 7, 12)
    )
    assert skipping == [utc(2026, 3, 9, 6, 30), utc(2026, 3, 10, 6, 30)]


def test_berlin_fold_policy_twice_runs_both_0230s():
    schedule = unsaved(
        cron_expression="30 2 * * *", timezone="Europe/Berlin", dst_fold_policy="twice"
    )
    runs = triggers.next_runs(schedule, 3, now=utc(2026, 10, 24, 12))
    assert runs == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30), utc(2026, 10, 26, 1, 30)]
