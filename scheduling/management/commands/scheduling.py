"""``python manage.py scheduling <verb>``: operate schedules from a terminal.

Argument parsing only; the verbs live in ``scheduling.cli.SchedulingCLI``, and the JSON of each
verb in ``scheduling.cli.contract``, which each verb's ``--help`` shows. Exit codes: 0 success,
1 a run failed, 2 bad input; an error is one line on stderr, never a traceback (unless
``--traceback``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
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

from scheduling.cli import CLIError, SchedulingCLI, describe_json, one_line
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
    "resume": "Exit code 2 when the schedule is disabled: resume only ends a pause, and "
    "enabling is an admin's (the admin or the API).",
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
        "Operate schedules: list, show, run, pause, resume, history, status, export, import, "
        "validate, purge. `manage.py scheduling VERB --help` describes a verb and its JSON."
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
        scope = argparse.ArgumentParser(add_help=False)
        scope.add_argument(
            "--tenant", metavar="SLUG", help="Only this tenant (its slug, or its id)."
        )
        scope.add_argument("--kind", choices=KINDS, help="Only schedules of this kind.")
        scope.add_argument(
            "--user",
            metavar="USERNAME",
            help="Act as this user: only the tenants they may see, with their role.",
        )
        output = argparse.ArgumentParser(add_help=False)
        output.add_argument(
            "--format",
            dest="output_format",
            choices=["table", "json"],
            default="table",
            help="Output as a table (default) or as JSON.",
        )
        # Django's own options, accepted after the verb too (`scheduling list -v 2`); SUPPRESS
        # keeps the values given before the verb when they are not repeated.
        django_options = argparse.ArgumentParser(add_help=False)
        django_options.add_argument(
            "-v", "--verbosity", type=int, choices=[0, 1, 2, 3], default=argparse.SUPPRESS
        )
        for flag in ("--traceback", "--no-color", "--force-color"):
            django_options.add_argument(
                flag, action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
            )
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

        add("list", "List schedules.")
        add("show", "Show one schedule.").add_argument("id", type=positive_int)
        run = add("run", "Run a schedule now, here, and exit with its outcome.")
        run.add_argument("id", type=positive_int)
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
        pause.add_argument("id", type=positive_int)
        pause.add_argument(
            "--until", type=iso_datetime, help="ISO 8601; without an offset: TIME_ZONE."
        )
        add("resume", "End a schedule's pause (a disabled one stays disabled).").add_argument(
            "id", type=positive_int
        )
        history = add("history", "List executions, newest first.")
        history.add_argument("--schedule", type=positive_int, metavar="ID")
        history.add_argument("--status", choices=[s.value for s in Status])
        history.add_argument("--since", type=iso_datetime, help="Scheduled at or after.")
        history.add_argument("--until", type=iso_datetime, help="Scheduled before.")
        history.add_argument("--limit", type=positive_int, default=50)
        status = add("status", "Show the scheduler's leader, heartbeat, sync and next fires.")
        status.add_argument("--next", type=positive_int, default=10, dest="next_count")
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
            return cli.list_schedules()
        if verb == "show":
            return cli.show(options["id"])
        if verb == "run":
            return cli.run(options["id"], options=dict(options["run_options"]))
        if verb == "cancel":
            return cli.cancel(options["id"])
        if verb == "retry":
            return cli.retry(options["id"])
        if verb == "pause":
            return cli.pause(options["id"], until=options["until"])
        if verb == "resume":
            return cli.resume(options["id"])
        if verb == "history":
            return cli.history(
                schedule_id=options["schedule"],
                status=options["status"],
                since=options["since"],
                until=options["until"],
                limit=options["limit"],
            )
        if verb == "status":
            return cli.status(next_count=options["next_count"])
        if verb == "export":
            return cli.export(output=options["output"], file_format=options["file_format"])
        if verb == "import":
            return cli.import_file(
                options["file"], prune=options["prune"], dry_run=options["dry_run"]
            )
        if verb == "validate":
            return cli.validate(options["file"])
        if verb == "purge":
            return cli.purge(dry_run=options["dry_run"], batch_size=options["batch_size"])
        raise CLIError(f"Unknown verb {verb!r}.")  # pragma: no cover - argparse rejects it
