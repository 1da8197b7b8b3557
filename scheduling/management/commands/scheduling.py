"""``python manage.py scheduling <verb>``: operate schedules from a terminal.

Argument parsing only; the verbs live in ``scheduling.cli.SchedulingCLI``, and the JSON of each
verb in ``scheduling.cli.contract``, which each verb's ``--help`` shows. Exit codes: 0 success,
1 a run failed (or ``status --check`` found the scheduler unhealthy), 2 bad input; an error is
one line on stderr, never a traceback (unless ``--traceback``).

The common options (``--tenant``, ``--kind``, ``--user``, ``--format`` and Django's own:
``--settings``, ``--pythonpath``, ``-v``, ``--traceback``, ``--no-color``...) go anywhere on
the line, before the verb or after it: each verb's parser takes them too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import sys
from datetime import UTC, datetime
from functools import partial
from typing import Any, NoReturn

from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.management.base import (
    BaseCommand,
    CommandError,
    CommandParser,
    handle_default_options,
)
from django.db import connections
from django.utils import timezone

from scheduling.cli import (
    CLIError,
    ScheduleName,
    ScheduleRef,
    SchedulingCLI,
    describe_json,
    one_line,
)
from scheduling.exceptions import SchedulingError
from scheduling.management.commands.runscheduler import positive_int
from scheduling.models import Kind, Status

KINDS = [k.value for k in Kind]
VERBOSITY_LEVELS = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO}

# What --help adds under each verb's JSON (from scheduling.cli.contract): how it exits.
EXIT_NOTES = {
    "run": "Exit code 0 when the run succeeded, 1 when it failed or timed out.",
    "cancel": "Exit code 2 when the execution has finished already.",
    "retry": "Exit code 2 when the execution did not fail or a later attempt exists.",
    "resume": "Exit code 2 when the schedule is disabled: resume only ends a pause; enabling "
    "it is `enable`, an admin's.",
    "add": "Every problem is printed, one line each, and nothing is created (exit code 2).",
    "remove": "Asks first on a terminal; without one (a script, CI) it needs --yes, else exit "
    "code 2. A schedule declared in code (SCHEDULING_DECLARED_SCHEDULES) is not removed (2).",
    "status": "With --check: exit code 1 and the reason on stderr when the scheduler is not "
    "healthy (as /healthz), 0 when it is: a probe for a supervisor or a container.",
    "import": "Nothing is changed when any entry is invalid (exit code 2).",
    "validate": "Exit code 2 when there are errors; warnings (a schedule that will never fire "
    "again) do not fail.",
}


def run_option(value: str) -> tuple[str, Any]:
    """Parse ``--option KEY=VALUE``: the value as JSON when it parses, else as text."""
    key, sep, raw = value.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
    try:
        parsed: Any = json.loads(raw)
    except ValueError:
        parsed = raw
    return key.strip(), parsed


def schedule_ref(value: str) -> ScheduleRef:
    """Parse SCHEDULE: an id (a whole number), else a name: NAME, TENANT/NAME, TENANT/KIND/NAME."""
    if value.lstrip("-").isdigit():
        return positive_int(value)
    if not value.strip():
        raise argparse.ArgumentTypeError("expected an id or a name, got nothing")
    return ScheduleName(value)


EVERY_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
EVERY_PATTERN = re.compile(r"(?:\d+[smhdw])+|\d+")


def every(value: str) -> int:
    """Parse ``--every``: seconds, or amounts with units (``30s``, ``5m``, ``1h30m``, ``2d``)."""
    text = value.strip().lower()
    if not EVERY_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a duration (for example 30s, 5m, 1h30m, 2d, 1w, or seconds)"
        )
    if text.isdigit():
        seconds = int(text)
    else:
        seconds = sum(int(n) * EVERY_UNITS[unit] for n, unit in re.findall(r"(\d+)(\w)", text))
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be longer than zero")
    return seconds


def field_text(value: str) -> tuple[str, str]:
    """Parse ``--set FIELD=VALUE``: the value stays text, read later as its field's type."""
    key, sep, raw = value.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE, got {value!r}")
    return key.strip(), raw


def iso_datetime(value: str) -> datetime:
    """Parse an ISO 8601 date and time; one without an offset is in ``TIME_ZONE``."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an ISO 8601 date and time (for example 2026-01-31T09:00+01:00)"
        ) from None
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed)
    try:
        # In UTC: PostgreSQL rejects offsets beyond 15:59 that Python accepts (-21:00).
        return parsed.astimezone(UTC)
    except OverflowError:
        raise argparse.ArgumentTypeError(f"{value!r} is out of range once in UTC") from None


class VerbParser(CommandParser):
    """A parser whose errors are one line and exit code 2, from a shell or call_command."""

    def error(self, message: str) -> NoReturn:
        raise CommandError(f"{self.prog}: {message}", returncode=2)


def _one_line_error(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    raise CommandError(f"{parser.prog}: {message}", returncode=2)


class Command(BaseCommand):
    help = (
        "Operate schedules: list, show, add, remove, enable, disable, run, pause, resume, "
        "cancel, retry, history, status, export, import, validate, purge. "
        "`manage.py scheduling VERB --help` describes a verb and its JSON."
    )
    # Operators run `check` themselves; this command must answer fast and print nothing but
    # its own output (a check warning would precede every JSON document on stderr).
    requires_system_checks: list[str] = []

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        # Django builds this parser itself; its errors must be one line with exit code 2 too.
        parser.error = partial(_one_line_error, parser)  # type: ignore[method-assign]
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        # SUPPRESS everywhere: an option given before the verb is not reset by the verb's
        # parser when the verb does not repeat it. ``handle`` supplies the defaults.
        scope = argparse.ArgumentParser(add_help=False)
        add_scope_arguments(scope)
        output = argparse.ArgumentParser(add_help=False)
        add_output_arguments(output)
        # Django's own options, accepted after the verb too (`scheduling list -v 2`,
        # `scheduling list --settings x`): only the command's parser has them otherwise.
        django_options = argparse.ArgumentParser(add_help=False)
        django_options.add_argument(
            "-v", "--verbosity", type=int, choices=[0, 1, 2, 3], default=argparse.SUPPRESS
        )
        for flag in ("--settings", "--pythonpath"):
            django_options.add_argument(flag, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        for flag in ("--traceback", "--no-color", "--force-color"):
            django_options.add_argument(
                flag, action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
            )
        # And before the verb: `scheduling --tenant acme list`.
        add_scope_arguments(parser)
        add_output_arguments(parser)
        verbs = parser.add_subparsers(
            dest="verb", required=True, metavar="VERB", parser_class=VerbParser
        )

        def add(
            name: str,
            help_text: str,
            *,
            parents: tuple[argparse.ArgumentParser, ...] = (scope, output),
        ) -> VerbParser:
            return verbs.add_parser(
                name,
                help=help_text,
                description=help_text,
                epilog="\n".join(filter(None, [describe_json(name), EXIT_NOTES.get(name)])),
                # typeshed wants parents of the subparser class; argparse takes any parser.
                parents=[*parents, django_options],  # type: ignore[list-item]
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )

        listing = add("list", "List schedules.")
        state = listing.add_mutually_exclusive_group()
        state.add_argument(
            "--enabled",
            action="store_const",
            const=True,
            dest="enabled",
            help="Only enabled schedules (paused ones included).",
        )
        state.add_argument(
            "--disabled",
            action="store_const",
            const=False,
            dest="enabled",
            help="Only disabled schedules.",
        )
        listing.add_argument(
            "--failing",
            action="store_true",
            help="Only failing schedules: the last run failed, or failures since the last "
            "success (as on the dashboard).",
        )
        add_schedule_argument(add("show", "Show one schedule."))
        run = add("run", "Run a schedule now, here, and exit with its outcome.")
        add_schedule_argument(run)
        run.add_argument(
            "--option",
            "-o",
            action="append",
            default=[],
            type=run_option,
            metavar="KEY=VALUE",
            dest="run_options",
            help="An option for this run only, merged over the schedule's (repeatable); "
            "VALUE is read as JSON when it parses (5, true, [1, 2]), else as text.",
        )
        add("cancel", "Cancel a queued or running execution.").add_argument(
            "id", type=positive_int, help="The execution's id."
        )
        add("retry", "Queue the next attempt of a failed execution.").add_argument(
            "id", type=positive_int, help="The execution's id."
        )
        pause = add("pause", "Pause a schedule until a time, or indefinitely.")
        add_schedule_argument(pause)
        pause.add_argument(
            "--until", type=iso_datetime, help="ISO 8601; without an offset: TIME_ZONE."
        )
        add_schedule_argument(add("resume", "End a schedule's pause (a disabled one stays so)."))
        add_schedule_argument(add("enable", "Enable a schedule (admin role)."))
        add_schedule_argument(add("disable", "Disable a schedule (admin role)."))
        remove = add("remove", "Delete a schedule; its history is kept (admin role).")
        add_schedule_argument(remove)
        remove.add_argument(
            "--yes", "-y", action="store_true", help="Do not ask; needed without a terminal."
        )
        add_new_schedule_arguments(add("add", "Create a schedule (admin role), as the API does."))
        history = add("history", "List executions, newest first.")
        history.add_argument(
            "--schedule",
            type=schedule_ref,
            metavar="SCHEDULE",
            help="Its id, TENANT/NAME or TENANT/KIND/NAME.",
        )
        history.add_argument("--status", choices=[s.value for s in Status])
        history.add_argument("--since", type=iso_datetime, help="Scheduled at or after.")
        history.add_argument("--until", type=iso_datetime, help="Scheduled before.")
        history.add_argument("--limit", type=positive_int, default=50)
        status = add("status", "Show the scheduler's leader, heartbeat, sync and next fires.")
        status.add_argument("--next", type=positive_int, default=10, dest="next_count")
        status.add_argument(
            "--check",
            action="store_true",
            help="A probe: one line, and exit code 1 when the scheduler is not healthy.",
        )
        export = add("export", "Write schedules to a YAML or JSON file.", parents=(scope,))
        export.add_argument("--output", "-o", metavar="FILE", help="Default: stdout.")
        export.add_argument(
            "--format",
            dest="file_format",
            choices=["yaml", "json"],
            help="Default: from the file's extension, else yaml.",
        )
        import_ = add("import", "Apply a schedules file (all entries or nothing).")
        import_.add_argument("file", metavar="FILE", help="A YAML or JSON file; - for stdin.")
        import_.add_argument(
            "--prune",
            action="store_true",
            help="Delete the schedules of the file's tenants that the file does not name.",
        )
        import_.add_argument(
            "--dry-run", action="store_true", help="Print the changes; change nothing."
        )
        validate = add("validate", "Check a schedules file, or the schedules in the database.")
        validate.add_argument("file", metavar="FILE", nargs="?")
        purge = add("purge", "Delete finished executions past each tenant's retention now.")
        purge.add_argument("--dry-run", action="store_true", help="Count what would be deleted.")
        purge.add_argument("--batch-size", type=positive_int, metavar="N")

    def run_from_argv(self, argv: list[str]) -> None:
        # Django's version prints parser errors as usage text and other errors prefixed with
        # the exception's class name; here every error is the same single line.
        self._called_from_command_line = True
        try:
            parser = self.create_parser(argv[0], argv[1])
            options = parser.parse_args(argv[2:])
            cmd_options = vars(options)
            args = cmd_options.pop("args", ())
            handle_default_options(options)
            self.execute(*args, **cmd_options)
        except CommandError as exc:
            if "--traceback" in argv:
                raise
            self.stderr.write(f"Error: {one_line(str(exc), 2000)}")
            sys.exit(exc.returncode)
        except BrokenPipeError:
            # The reader went away (`... | head`): no traceback; Python's recommended exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        finally:
            with contextlib.suppress(ImproperlyConfigured):
                connections.close_all()

    def handle(self, *args: Any, **options: Any) -> None:
        color = False if options.get("no_color") else (True if options.get("force_color") else None)
        # The runner logs every outcome at INFO; the verbs print their own. Show the log from
        # -v 2 on, and leave the logger as it was for whatever runs next in this process.
        logger = logging.getLogger("scheduling")
        level = logger.level
        logger.setLevel(VERBOSITY_LEVELS.get(options.get("verbosity", 1), logging.DEBUG))
        try:
            cli = SchedulingCLI(
                # django-stubs leaves out OutputWrapper._out, the TextIO that it wraps.
                stdout=self.stdout._out,  # type: ignore[arg-type]
                stderr=self.stderr._out,  # type: ignore[arg-type]
                output_format=options.get("output_format") or "table",
                tenant=options.get("tenant"),
                kind=options.get("kind"),
                user=options.get("user"),
                color=color,
            )
            self.dispatch(cli, options["verb"], options)
        except CLIError as exc:
            raise CommandError(str(exc), returncode=exc.returncode) from None
        except ValidationError as exc:
            raise CommandError(one_line("; ".join(exc.messages), 2000), returncode=2) from None
        except SchedulingError as exc:
            raise CommandError(one_line(str(exc), 2000), returncode=2) from None
        finally:
            logger.setLevel(level)

    def dispatch(self, cli: SchedulingCLI, verb: str, options: dict[str, Any]) -> int:
        if verb == "list":
            return cli.list_schedules(enabled=options["enabled"], failing=options["failing"])
        if verb == "show":
            return cli.show(picked(options))
        if verb == "run":
            return cli.run(picked(options), options=dict(options["run_options"]))
        if verb == "cancel":
            return cli.cancel(options["id"])
        if verb == "retry":
            return cli.retry(options["id"])
        if verb == "pause":
            return cli.pause(picked(options), until=options["until"])
        if verb == "resume":
            return cli.resume(picked(options))
        if verb == "enable":
            return cli.enable(picked(options))
        if verb == "disable":
            return cli.disable(picked(options))
        if verb == "remove":
            return cli.remove(picked(options), yes=options["yes"])
        if verb == "add":
            return cli.add(**add_request(options))
        if verb == "history":
            return cli.history(
                schedule=options["schedule"],
                status=options["status"],
                since=options["since"],
                until=options["until"],
                limit=options["limit"],
            )
        if verb == "status":
            return cli.status(next_count=options["next_count"], check=options["check"])
        if verb == "export":
            # `--format json` before the verb (the output format) asks for the JSON file too.
            file_format = options["file_format"] or (
                "json" if options.get("output_format") == "json" else None
            )
            return cli.export(output=options["output"], file_format=file_format)
        if verb == "import":
            return cli.import_file(
                options["file"], prune=options["prune"], dry_run=options["dry_run"]
            )
        if verb == "validate":
            return cli.validate(options["file"])
        if verb == "purge":
            return cli.purge(dry_run=options["dry_run"], batch_size=options["batch_size"])
        raise CLIError(f"Unknown verb {verb!r}.")  # pragma: no cover - argparse rejects it


def add_scope_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--tenant``, ``--kind`` and ``--user``, which every verb takes."""
    parser.add_argument(
        "--tenant",
        metavar="SLUG",
        default=argparse.SUPPRESS,
        help="Only this tenant (its slug, or its id).",
    )
    parser.add_argument(
        "--kind", choices=KINDS, default=argparse.SUPPRESS, help="Only schedules of this kind."
    )
    parser.add_argument(
        "--user",
        metavar="USERNAME",
        default=argparse.SUPPRESS,
        help="Act as this user: only the tenants they may see, with their role.",
    )


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--format table|json``."""
    parser.add_argument(
        "--format",
        dest="output_format",
        choices=["table", "json"],
        default=argparse.SUPPRESS,
        help="Output as a table (default) or as JSON.",
    )


def add_schedule_argument(parser: argparse.ArgumentParser) -> None:
    """Add what picks one schedule: SCHEDULE (its id or name) or ``--name``."""
    parser.add_argument(
        "schedule",
        type=schedule_ref,
        nargs="?",
        metavar="SCHEDULE",
        help="Its id, or its name: NAME, TENANT/NAME or TENANT/KIND/NAME (as the verbs print "
        "it); a name is looked up within --tenant, --kind and --user.",
    )
    parser.add_argument(
        "--name",
        dest="schedule_name",
        metavar="NAME",
        help="Its name exactly, for a name of digits or with a slash (with --tenant, --kind).",
    )


def picked(options: dict[str, Any]) -> ScheduleRef:
    """Return the schedule SCHEDULE or ``--name`` picks; exactly one of them is needed."""
    ref, name = options["schedule"], options["schedule_name"]
    if ref is not None and name is not None:
        raise CLIError("Give the schedule once: SCHEDULE or --name, not both.")
    if name is not None:
        return ScheduleName(name, literal=True)
    if ref is None:
        raise CLIError("Give the schedule: its id, TENANT/NAME, TENANT/KIND/NAME or --name NAME.")
    return ref


def add_request(options: dict[str, Any]) -> dict[str, Any]:
    """Return ``SchedulingCLI.add``'s arguments from ``add``'s flags."""
    values: dict[str, Any] = {}
    text_values = list(options["field_values"])
    if options["type_key"] is not None:
        values["type"] = options["type_key"]
    if options["target"] is not None:
        values["target"] = options["target"]
    interval = options["every"] or options["interval_seconds"]
    if interval is not None:
        values.update(trigger_type="interval", interval_seconds=interval)
    if options["cron"] is not None:
        values.update(trigger_type="cron", cron_expression=options["cron"])
    if options["at"] is not None:
        # Read as a schedules file reads run_at: without an offset, in the schedule's zone.
        values["trigger_type"] = "once"
        text_values.append(("run_at", options["at"]))
    for name in ("timezone", "description"):
        if options[name] is not None:
            values[name] = options[name]
    if options["disabled"]:
        values["enabled"] = False
    return {
        "name": options["name"],
        "system": options["system"],
        "values": values,
        "text_values": text_values,
        "options": dict(options["add_options"]),
        "depends_on": options["depends_on"],
    }


def add_new_schedule_arguments(parser: argparse.ArgumentParser) -> None:
    """The fields of ``add``: a few flags of their own, any other with ``--set``."""
    parser.add_argument("--name", required=True, help="Unique per tenant and kind.")
    parser.add_argument(
        "--system",
        action="store_true",
        help="A system schedule (no tenant; superusers) instead of --tenant's.",
    )
    parser.add_argument(
        "--type",
        dest="type_key",
        metavar="KEY",
        help="The registered scan type, report type, cleanup target or task type.",
    )
    parser.add_argument("--target", help="A scan's target: URL, host:port or host name.")
    trigger = parser.add_mutually_exclusive_group()
    trigger.add_argument(
        "--every", type=every, metavar="DURATION", help="An interval: 30s, 5m, 1h30m, 2d."
    )
    trigger.add_argument(
        "--interval-seconds", type=positive_int, metavar="N", help="An interval in seconds."
    )
    trigger.add_argument(
        "--cron", metavar="EXPRESSION", help='Five fields ("*/5 * * * *") or @daily...'
    )
    trigger.add_argument(
        "--at",
        metavar="DATETIME",
        help="Once, at this ISO 8601 time; without an offset: the schedule's time zone.",
    )
    parser.add_argument(
        "--timezone", metavar="ZONE", help="IANA name; default: the tenant's, else UTC."
    )
    parser.add_argument("--description")
    parser.add_argument(
        "--disabled", action="store_true", help="Create it disabled (enable it later)."
    )
    parser.add_argument(
        "--option",
        "-o",
        action="append",
        default=[],
        type=run_option,
        metavar="KEY=VALUE",
        dest="add_options",
        help="An option of its type (repeatable); VALUE is read as JSON when it parses.",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        type=field_text,
        metavar="FIELD=VALUE",
        dest="field_values",
        help="Any other field, as in a schedules file (repeatable): --set max_retries=3 "
        "--set format=csv --set calendar_time=09:30.",
    )
    parser.add_argument(
        "--depends-on",
        action="append",
        default=[],
        metavar="[KIND/]NAME",
        help="A schedule of the same tenant it runs after (repeatable).",
    )
