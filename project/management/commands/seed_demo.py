"""``python manage.py seed_demo``: the demo tenant, an admin user and one schedule of each kind.

Idempotent: run it again and it finds the tenant, the user and the schedules by name and puts
them back to the demo's values; nothing is duplicated. The interval schedules start a few
seconds after each run, so that the first executions show up while you watch.
"""

from __future__ import annotations

import os
import secrets
from datetime import time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from scheduling.models import CleanupConfig, PeriodicScan, Report, Schedule, ScheduledTask
from scheduling.triggers import describe, next_runs
from tenants.models import Membership, Role, Tenant

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

# The interval schedules' first run, counted from the seeding: time for runscheduler and the
# development server to start.
FIRST_RUN_DELAY = timedelta(seconds=10)


def demo_schedules(port: int) -> list[tuple[type[Schedule], str, dict[str, object]]]:
    """Return (model, name, fields) of every demo schedule: all but the last two fire within a
    minute; those two show a calendar schedule and cron's last-weekday syntax."""
    base = f"127.0.0.1:{port}"
    every_minute = {"trigger_type": "cron", "cron_expression": "* * * * *"}
    return [
        (
            PeriodicScan,
            "Demo server accepts TCP",
            {
                "scan_type": "tcp",
                "target": base,
                "trigger_type": "interval",
                "interval_seconds": 60,
            },
        ),
        (
            PeriodicScan,
            "Admin login page answers 200",
            {
                "scan_type": "http",
                "target": f"http://{base}/admin/login/",
                "options": {"expected_status": 200},
                "trigger_type": "interval",
                "interval_seconds": 30,
            },
        ),
        (
            Report,
            "Execution summary (JSON)",
            {
                "report_type": "execution_summary",
                "format": "json",
                "options": {"period_hours": 24},
                "trigger_type": "interval",
                "interval_seconds": 60,
            },
        ),
        (
            Report,
            "Execution summary (HTML)",
            {
                "report_type": "execution_summary",
                "format": "html",
                "options": {"period_hours": 1},
                **every_minute,
            },
        ),
        (
            CleanupConfig,
            "Purge executions older than 7 days",
            {
                "cleanup_target": "executions",
                "retain_days": 7,
                "trigger_type": "cron",
                "cron_expression": "@hourly",
            },
        ),
        (
            CleanupConfig,
            "Purge report artifacts older than 1 day",
            {"cleanup_target": "report_artifacts", "retain_days": 1, **every_minute},
        ),
        (
            # The project's own function (project/scheduling_tasks.py).
            ScheduledTask,
            "Tenant digest",
            {
                "task_type": "demo_digest",
                "options": {"period_hours": 24},
                "trigger_type": "interval",
                "interval_seconds": 60,
            },
        ),
        (
            # A system schedule: no tenant; only superusers see it.
            CleanupConfig,
            "Purge APScheduler's log older than 1 day (all tenants)",
            {
                "tenant": None,
                "cleanup_target": "apscheduler_job_executions",
                "retain_days": 1,
                **every_minute,
            },
        ),
        (
            ScheduledTask,
            "Fortnightly digest (calendar)",
            {
                "task_type": "demo_digest",
                "options": {"period_hours": 24 * 14},
                "trigger_type": "calendar",
                "calendar_every": 2,
                "calendar_unit": "week",
                "calendar_weekdays": "mon",
                "calendar_time": time(9, 0),
            },
        ),
        (
            Report,
            "Month-end summary (last Friday)",
            {
                "report_type": "execution_summary",
                "format": "html",
                "options": {"period_hours": 24 * 31},
                "trigger_type": "cron",
                "cron_expression": "0 17 * * 5L",
            },
        ),
    ]


class Command(BaseCommand):
    help = (
        "Create (or reset) the demo tenant, the admin user, schedules of each kind and a "
        "system schedule."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--port",
            type=int,
            default=8000,
            help="Port of the development server the demo scans check (default 8000).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            tenant = self.seed_tenant()
            user, password = self.seed_admin(tenant)
            schedules = self.seed_schedules(tenant, options["port"])
        self.report(user, password, schedules)

    def seed_tenant(self) -> Tenant:
        tenant, created = Tenant.objects.update_or_create(
            slug="demo",
            defaults={"name": "Demo", "timezone": "Europe/Berlin", "is_active": True},
        )
        self.stdout.write(
            f"{'Created' if created else 'Found'} tenant {tenant.name} ({tenant.slug})."
        )
        return tenant

    def seed_admin(self, tenant: Tenant) -> tuple[AbstractBaseUser, str]:
        """Create the superuser ``admin`` or reset its password; return it and the password."""
        password = os.environ.get("DEMO_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        user_model = get_user_model()
        user = user_model._default_manager.filter(username="admin").first()
        if user is None:
            user = user_model._default_manager.create_superuser(
                username="admin", email="admin@example.com", password=password
            )
        else:
            user.set_password(password)
            user.is_active = user.is_staff = user.is_superuser = True
            user.save()
        Membership.objects.update_or_create(user=user, tenant=tenant, defaults={"role": Role.OWNER})
        return user, password

    def seed_schedules(self, tenant: Tenant, port: int) -> list[tuple[Schedule, bool]]:
        first_run = timezone.now().replace(microsecond=0) + FIRST_RUN_DELAY
        seeded = []
        for model, name, fields in demo_schedules(port):
            fields = dict(fields)
            owner = fields.pop("tenant", tenant)  # None: a system schedule
            schedule = model.objects.filter(tenant=owner, name=name).first()
            created = schedule is None
            if schedule is None:
                schedule = model(tenant=owner, name=name, kind=model.KIND)
            values = {
                "description": "Created by seed_demo.",
                "enabled": True,
                "paused_until": None,
                "timezone": "",  # the tenant's
                "start_at": first_run if fields["trigger_type"] == "interval" else None,
                "end_at": None,
                "run_at": None,
                "options": {},
                **fields,
            }
            for field, value in values.items():
                setattr(schedule, field, value)
            try:
                schedule.full_clean()
            except ValidationError as exc:
                raise CommandError(f"Demo schedule {name!r} is not valid: {exc}") from exc
            schedule.save()
            seeded.append((schedule, created))
        return seeded

    def report(
        self, user: AbstractBaseUser, password: str, schedules: list[tuple[Schedule, bool]]
    ) -> None:
        self.stdout.write("")
        for schedule, created in schedules:
            upcoming = next_runs(schedule, 1)
            zone = ZoneInfo(schedule.effective_timezone)
            first = upcoming[0].astimezone(zone).strftime("%H:%M:%S %Z") if upcoming else "never"
            self.stdout.write(
                f"  {'created' if created else 'reset  '}  {schedule.kind:<7}  "
                f"{schedule.name:<40}  {describe(schedule):<28}  next run {first}"
            )
        self.stdout.write("")
        self.stdout.write(
            self.style.SUCCESS(f"Admin user: {user.get_username()}   password: {password}")
        )
