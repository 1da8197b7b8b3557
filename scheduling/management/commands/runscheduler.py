"""``python manage.py runscheduler``: run the scheduler process (``scheduling.scheduler``)."""

from __future__ import annotations

import argparse
import gc
import logging
from typing import Any

from django.core.management.base import BaseCommand

from scheduling.scheduler.service import SchedulerService
from scheduling.schedules_io.declared import sync_at_start


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be greater than zero")
    return number


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be greater than zero")
    return number


VERBOSITY_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG, 3: logging.DEBUG}


class Command(BaseCommand):
    help = "Run the scheduler: sync schedules into APScheduler, fire them, record executions."
    requires_system_checks = ["compatibility", "models", "database"]

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--max-seconds",
            type=positive_float,
            help="Stop by itself after this many seconds (for tests and batch runs).",
        )
        parser.add_argument(
            "--sync-interval", type=positive_float, help="Override SCHEDULING_SYNC_INTERVAL."
        )
        parser.add_argument("--workers", type=positive_int, help="Override SCHEDULING_MAX_WORKERS.")
        parser.add_argument(
            "--lease-ttl", type=positive_float, help="Override SCHEDULING_LEASE_TTL."
        )
        parser.add_argument(
            "--grace", type=positive_float, help="Override SCHEDULING_SHUTDOWN_GRACE."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        level = VERBOSITY_LEVELS.get(options["verbosity"], logging.INFO)
        logging.getLogger("scheduling").setLevel(level)
        if not logging.getLogger("scheduling").handlers and not logging.getLogger().handlers:
            logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s %(message)s")
        # SCHEDULING_DECLARED_SCHEDULES, once, before the first full sync; it logs and never
        # raises (a bad declaration or a database down must not keep the scheduler from starting).
        sync_at_start()
        service = SchedulerService(
            max_seconds=options["max_seconds"],
            sync_interval=options["sync_interval"],
            max_workers=options["workers"],
            lease_ttl=options["lease_ttl"],
            shutdown_grace=options["grace"],
        )
        # Everything loaded so far (Django, the project, the app) lives as long as the process:
        # moved out of the collector's reach, a full collection no longer walks it. Each one
        # stopped every thread for 55 to 80 ms, every second or two at a thousand fires a
        # second, in the middle of the bursts it was measured against.
        gc.collect()
        gc.freeze()
        code = service.run()
        if code:
            raise SystemExit(code)
