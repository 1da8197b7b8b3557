"""The verbs of ``python manage.py scheduling``: what each does, on the schedules in scope.

Each verb is a method of ``SchedulingCLI`` that returns an exit code or raises ``CLIError``.
It asks ``Scope`` for the tenants and schedules it may touch, calls the services, the runner
and ``scheduling.schedules_io`` for the work, and prints through ``Output``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from django.core.exceptions import ValidationError
from django.db import DatabaseError, connections
from django.utils import timezone
from rich.text import Text

from .. import kinds, runner, schedules_io, services
from ..conf import conf
from ..exceptions import SchedulingError
from ..kinds import KINDS, cleanup
from ..models import AuditAction, Execution, Schedule, Status, TriggerKind
from ..registry import cleanup_targets
from ..retention import RETENTION_TARGET, retention_cutoff, retention_days
from ..status import scheduler_status
from ..tenancy import tenant_key
from ..triggers import next_runs
from .contract import execution_data, schedule_data
from .exceptions import CLIError
from .fields import build_schedule, merge_errors
from .output import (
    Output,
    display_duration,
    display_pause,
    executions_table,
    json_default,
    one_line,
    purge_table,
    schedule_table,
    schedules_table,
    status_style,
    status_tables,
)
from .scope import ADMIN, OPERATOR, ScheduleRef, Scope


class SchedulingCLI:
    """The verbs of the ``scheduling`` command; each returns an exit code or raises CLIError."""

    def __init__(
        self,
        *,
        stdout: TextIO | None = None,
        output_format: str = "table",
        tenant: str | None = None,
        kind: str | None = None,
        user: str | None = None,
        color: bool | None = None,
        stdin: TextIO | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        self.out = Output(stdout=stdout, output_format=output_format, color=color)
        self.scope = Scope(tenant=tenant, kind=kind, user=user)
        # Where ``remove`` asks for confirmation: a question on stderr keeps stdout for output.
        self.stdin = stdin or sys.stdin
        self.stderr = stderr or sys.stderr

    # -- reading ----------------------------------------------------------------------------

    def list_schedules(self, *, enabled: bool | None = None, failing: bool = False) -> int:
        """List the schedules in scope: all, the enabled or disabled ones, the failing ones.

        Failing is what the dashboard lists as failing (``Schedule.objects.failing()``).
        """
        queryset = self.scope.schedules()
        if enabled is not None:
            queryset = queryset.filter(enabled=enabled)
        if failing:
            queryset = queryset.failing()
        rows = [schedule_data(s) for s in queryset.order_by("tenant_id", "kind", "name")]
        if self.out.as_json:
            self.out.emit_json({"schedules": rows})
        elif rows:
            self.out.print(schedules_table(rows))
        else:
            self.out.print("No schedules.")
        return 0

    def show(self, ref: ScheduleRef) -> int:
        """Show one schedule: its configuration, next runs and recent executions."""
        schedule = self.scope.find_schedule(ref)
        data = schedule_data(schedule)
        data["description"] = schedule.description
        data["config"] = schedules_io.export_entry(schedule, include_defaults=True)
        data["dependents"] = [
            {"kind": d.kind, "name": d.name} for d in schedule.dependents.order_by("kind", "name")
        ]
        try:
            upcoming = next_runs(schedule, 5) if schedule.enabled else []
        except (ArithmeticError, ValueError, SchedulingError):
            upcoming = []
        recent = [
            self._execution_data(e)
            for e in Execution.objects.filter(schedule=schedule).select_related("tenant")[:5]
        ]
        if self.out.as_json:
            self.out.emit_json(
                {"schedule": data, "next_runs": upcoming, "recent_executions": recent}
            )
            return 0
        self.out.print(schedule_table(data, upcoming))
        if recent:
            self.out.print(executions_table(recent))
        return 0

    def history(
        self,
        *,
        schedule: ScheduleRef | None = None,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
    ) -> int:
        """List executions, newest first, filtered by schedule, status and time."""
        queryset = self.scope.in_scope(
            Execution.objects.select_related("tenant").order_by("-scheduled_for", "-pk"),
            kind_field="schedule_kind",
        )
        if schedule is not None:
            queryset = queryset.filter(schedule=self.scope.find_schedule(schedule))
        if status:
            queryset = queryset.filter(status=status)
        if since is not None:
            queryset = queryset.filter(scheduled_for__gte=since)
        if until is not None:
            queryset = queryset.filter(scheduled_for__lt=until)
        rows = [self._execution_data(e) for e in queryset[:limit]]
        if self.out.as_json:
            self.out.emit_json({"executions": rows})
        elif rows:
            self.out.print(executions_table(rows))
        else:
            self.out.print("No executions.")
        return 0

    def status(self, *, next_count: int = 10, check: bool = False) -> int:
        """Show the leader, its heartbeat, the last sync and the next fires.

        With ``check``, a probe: one line (or the JSON), and exit code 1 with the reason when
        the scheduler is not healthy (as ``/healthz`` decides).
        """
        data = scheduler_status(tenant_ids=self.scope.tenant_ids(), next_count=next_count)
        if not self.scope.sees_scheduler_hosts():
            data["leader"] = None  # a host name: infrastructure, not tenant data (as the API)
        if self.out.as_json:
            self.out.emit_json(data)
        if check:
            if not data["healthy"]:
                raise CLIError(f"Scheduler not healthy: {data['problem']}.", returncode=1)
            if not self.out.as_json:
                leader = f"leader {data['leader']}, " if data["leader"] else ""
                self.out.print(
                    f"Scheduler healthy: {leader}heartbeat "
                    f"{data['heartbeat_age_seconds']:.1f} s old."
                )
            return 0
        if self.out.as_json:
            return 0
        summary, fires = status_tables(data)
        self.out.print(summary)
        self.out.print(fires)
        return 0

    # -- acting on one schedule -------------------------------------------------------------

    def run(self, ref: ScheduleRef, *, options: dict[str, Any] | None = None) -> int:
        """Run a schedule now in this process; exit 0 when it succeeded, 1 otherwise.

        ``options`` are this run's own, merged over the schedule's (validated first).
        """
        schedule = self.scope.find_schedule(ref)
        self.scope.require_role(schedule.tenant, OPERATOR, "run")
        run_options = kinds.clean_run_options(schedule, options)
        # A claimed_by of its own: the scheduler's pick-up of manual runs leaves it alone.
        execution = runner.claim(
            schedule,
            timezone.now(),
            trigger=TriggerKind.MANUAL,
            claimed_by=f"cli:{runner.worker_id()}",
            triggered_by=self.scope.user,
            options=run_options,
        )
        if execution is None:
            raise CLIError(f"Schedule {schedule.pk} is being run by someone else right now.")
        services.record_audit(
            schedule=schedule,
            action=AuditAction.RUN,
            user=self.scope.user,
            source="cli",
            changes={"execution": [None, execution.pk]},
        )
        if not self.out.as_json:
            self.out.print(
                f"Running {tenant_key(schedule.tenant) or '(system)'}/{schedule.kind}/"
                f"{schedule.name} (execution {execution.pk})..."
            )
        execution = run_in_foreground(execution.pk, timeout=schedule.effective_timeout)
        if self.out.as_json:
            self.out.emit_json({"execution": self._execution_data(execution)})
        else:
            self.out.print(
                Text.assemble(
                    (execution.status, status_style(execution.status)),
                    f" in {display_duration(execution.duration_ms)}",
                )
            )
            if execution.result is not None:
                self.out.print(json.dumps(execution.result, indent=2, default=json_default))
            if execution.error:
                self.out.print(execution.error)
        if execution.status != Status.SUCCEEDED:
            raise CLIError(
                f"Execution {execution.pk} {execution.status}: {one_line(execution.error)}",
                returncode=1,
            )
        return 0

    def cancel(self, pk: int) -> int:
        """Cancel a queued or running execution; exit 2 when it has finished already."""
        execution = self.scope.get_execution(pk)
        self.scope.require_role(execution.tenant, OPERATOR, "cancel")
        runner.cancel(execution, by=self.scope.user)
        self._audit_execution(execution, AuditAction.CANCEL, execution)
        return self._execution_changed(execution, "Cancelled")

    def retry(self, pk: int) -> int:
        """Queue the next attempt of a failed, timed-out, interrupted or missed execution."""
        execution = self.scope.get_execution(pk)
        self.scope.require_role(execution.tenant, OPERATOR, "retry")
        queued = runner.retry(execution, by=self.scope.user)
        self._audit_execution(execution, AuditAction.RETRY, queued)
        return self._execution_changed(queued, "Queued")

    def _execution_data(self, execution: Execution) -> dict[str, Any]:
        return execution_data(execution, internals=self.scope.sees_internals(execution.tenant_id))

    def _audit_execution(self, execution: Execution, action: str, result: Execution) -> None:
        if execution.schedule is not None:
            services.record_audit(
                schedule=execution.schedule,
                action=action,
                user=self.scope.user,
                source="cli",
                changes={"execution": [execution.pk, result.pk]},
            )

    def _execution_changed(self, execution: Execution, verb: str) -> int:
        if self.out.as_json:
            self.out.emit_json({"execution": self._execution_data(execution)})
        else:
            self.out.print(
                f"{verb} execution {execution.pk} of {execution.schedule_name} "
                f"(attempt {execution.attempt}, {execution.status})."
            )
        return 0

    def pause(self, ref: ScheduleRef, *, until: datetime | None = None) -> int:
        """Pause a schedule until a time, or until resumed (``enabled`` is left alone)."""
        schedule = self.scope.find_schedule(ref)
        self.scope.require_role(schedule.tenant, OPERATOR, "pause")
        if until is not None and until <= timezone.now():
            raise CLIError(f"--until {until.isoformat()} is not in the future.")
        services.pause_schedule(schedule=schedule, until=until, user=self.scope.user, source="cli")
        return self._changed(schedule, "Paused")

    def resume(self, ref: ScheduleRef) -> int:
        """End a schedule's pause; a disabled one stays so (exit 2): enabling is an admin's."""
        schedule = self.scope.find_schedule(ref)
        self.scope.require_role(schedule.tenant, OPERATOR, "resume")
        services.resume_schedule(schedule=schedule, user=self.scope.user, source="cli")
        return self._changed(schedule, "Resumed")

    def enable(self, ref: ScheduleRef) -> int:
        """Enable a schedule (an admin's); a pause it has stays until it ends or is resumed."""
        return self._set_enabled(ref, enabled=True)

    def disable(self, ref: ScheduleRef) -> int:
        """Disable a schedule (an admin's): it does not fire until enabled again."""
        return self._set_enabled(ref, enabled=False)

    def _set_enabled(self, ref: ScheduleRef, *, enabled: bool) -> int:
        schedule = self.scope.find_schedule(ref)
        verb = "enable" if enabled else "disable"
        self.scope.require_role(schedule.tenant, ADMIN, verb)
        if schedule.enabled == enabled:
            # Nothing to change, and nothing for the audit trail: a script may repeat itself.
            data = schedule_data(schedule)
            if self.out.as_json:
                self.out.emit_json({"schedule": data})
            else:
                self.out.print(f"{identity(data)} is {verb}d already.")
            return 0
        services.set_schedule_enabled(
            schedule=schedule, enabled=enabled, user=self.scope.user, source="cli"
        )
        return self._changed(schedule, f"{verb.capitalize()}d")

    def remove(self, ref: ScheduleRef, *, yes: bool = False) -> int:
        """Delete a schedule (an admin's), its history kept; asks first unless ``yes``."""
        schedule = self.scope.find_schedule(ref)
        self.scope.require_role(schedule.tenant, ADMIN, "remove")
        data = schedule_data(schedule)
        if not yes and not self._confirm(f"Remove {identity(data)}? Its history is kept."):
            self.out.print("Nothing was removed.")
            return 0
        services.delete_schedule(schedule=schedule, user=self.scope.user, source="cli")
        if self.out.as_json:
            self.out.emit_json({"removed": data})
        else:
            self.out.print(f"Removed {identity(data)}.")
        return 0

    def _confirm(self, question: str) -> bool:
        """Ask ``question`` on the terminal; without one (a script, CI) refuse to guess."""
        if not (hasattr(self.stdin, "isatty") and self.stdin.isatty()):
            raise CLIError("Not removed: give --yes to remove without a terminal to confirm on.")
        self.stderr.write(f"{question} [y/N] ")
        self.stderr.flush()
        return self.stdin.readline().strip().lower() in ("y", "yes")

    def add(
        self,
        *,
        name: str,
        values: Mapping[str, Any],
        text_values: Iterable[tuple[str, str]] = (),
        options: Mapping[str, Any] | None = None,
        depends_on: Iterable[str] = (),
        system: bool = False,
    ) -> int:
        """Create a schedule of ``--kind`` in ``--tenant`` (or a system one), as the API does.

        ``values`` are fields from flags of their own (``type`` is the kind's type field),
        ``text_values`` the ``--set FIELD=VALUE`` pairs, read as a schedules file is. Every
        problem is printed, one line each, and nothing is created (exit 2); on success the
        new schedule is printed with its id.
        """
        if not self.scope.kind:
            raise CLIError(f"add needs --kind: one of {', '.join(KINDS)}.")
        tenant = self.scope.tenant()
        if system == (tenant is not None):
            raise CLIError(
                "add needs --tenant SLUG, or --system for a schedule of no tenant (superusers)."
            )
        self.scope.require_role(tenant, ADMIN, "add")
        spec = KINDS[self.scope.kind]
        new = build_schedule(
            spec=spec,
            tenant=tenant,
            name=name,
            values=values,
            text_values=text_values,
            options=options,
            depends_on=depends_on,
        )
        fields = {**new.values, "name": name}
        schedule: Schedule | None = None
        invalid: ValidationError | None = None
        try:
            if new.errors:
                # What validation says of the rest is reported too; nothing is saved.
                services.validate_schedule(
                    spec.model(tenant=tenant, **fields), depends_on=new.depends_on, creating=True
                )
            else:
                schedule = services.create_schedule(
                    model=spec.model,
                    tenant=tenant,
                    user=self.scope.user,
                    source="cli",
                    depends_on=new.depends_on,
                    **fields,
                )
        except ValidationError as exc:
            invalid = exc
        if schedule is None:
            errors = schedules_io.problems_from(
                merge_errors(new, invalid), tenant=tenant_key(tenant), kind=spec.kind, name=name
            )
            if self.out.as_json:
                self.out.emit_json({"schedule": None, "errors": [p.as_dict() for p in errors]})
            else:
                for problem in errors:
                    self.out.line(Text(str(problem), style="red"))
            raise CLIError(f"{len(errors)} error(s); nothing was added.")
        data = schedule_data(schedule)
        if self.out.as_json:
            self.out.emit_json({"schedule": data})
            return 0
        state = data["state"] + display_pause(data["paused_until"])
        self.out.print(f"Added {identity(data)}: {state}, {data['trigger']}.")
        if schedules_io.never_fires_again(schedule):
            self.out.line(Text(f"warning: {schedules_io.NEVER_FIRES_AGAIN}", style="yellow"))
        return 0

    def _changed(self, schedule: Schedule, verb: str) -> int:
        schedule.refresh_from_db()
        data = schedule_data(schedule)
        if self.out.as_json:
            self.out.emit_json({"schedule": data})
        else:
            state = data["state"] + display_pause(data["paused_until"])
            self.out.print(f"{verb} {identity(data)}: {state}.")
        return 0

    # -- schedules files --------------------------------------------------------------------

    def export(self, *, output: str | None = None, file_format: str | None = None) -> int:
        """Write the schedules in scope as a YAML or JSON file (or to stdout)."""
        if file_format is None:
            file_format = "json" if output and output.lower().endswith(".json") else "yaml"
        document = schedules_io.export_schedules(self.scope.schedules())
        text = schedules_io.dump(document, file_format)
        if output in (None, "-"):
            self.out.write(text)
            return 0
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CLIError(f"Cannot write {output}: {exc.strerror or exc}.") from None
        self.out.print(f"Exported {len(document['schedules'])} schedule(s) to {output}.")
        return 0

    def _read(self, path: str) -> schedules_io.Document:
        try:
            text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise CLIError(f"Cannot read {path}: {reason}.") from None
        try:
            return schedules_io.parse(text, file_format=schedules_io.guess_format(path, text))
        except schedules_io.ScheduleFileError as exc:
            raise CLIError(f"{path}: {exc}") from None

    def import_file(self, path: str, *, prune: bool = False, dry_run: bool = False) -> int:
        """Apply a schedules file: create, update and (with prune) delete; all or nothing."""
        document = self._read(path)
        tenant = self.scope.tenant()
        if tenant is not None:
            self.scope.require_role(tenant, ADMIN, "import")
        plan = schedules_io.plan_import(
            document,
            tenants=self.scope.tenants(ADMIN),
            only_tenant=tenant,
            only_kind=self.scope.kind,
            prune=prune,
        )
        applied = False
        if plan.valid and not dry_run:
            try:
                schedules_io.apply_plan(plan, user=self.scope.user, source="cli")
            except (ValidationError, DatabaseError) as exc:
                raise CLIError(f"{path}: nothing was changed: {one_line(str(exc))}") from None
            applied = True
        if self.out.as_json:
            self.out.emit_json(
                {"file": path, "dry_run": dry_run, "applied": applied, **plan.as_dict()}
            )
        else:
            self.out.problems(path, plan.errors, plan.warnings)
            if plan.valid:
                self.out.plan(plan)
                summary = plan.summary()
                verb = "Would" if dry_run else "Done:"
                self.out.print(
                    f"{verb} create {summary['create']}, update {summary['update']}, "
                    f"delete {summary['delete']}; {summary['unchanged']} unchanged."
                )
        if not plan.valid:
            count = len(plan.errors)
            raise CLIError(f"{path}: {count} error(s); nothing was changed.")
        return 0

    def validate(self, path: str | None = None) -> int:
        """Check a schedules file, or the schedules in the database; exit 2 on errors."""
        if path is not None:
            plan = schedules_io.plan_import(
                self._read(path),
                tenants=self.scope.tenants(),
                only_tenant=self.scope.tenant(),
                only_kind=self.scope.kind,
            )
            source, errors, warnings = path, plan.errors, plan.warnings
            checked = len([c for c in plan.changes if c.action != "delete"])
        else:
            queryset = self.scope.schedules()
            source = "database"
            errors, warnings = schedules_io.validate_database(queryset)
            checked = queryset.count()
        if self.out.as_json:
            self.out.emit_json(
                {
                    "source": source,
                    "valid": not errors,
                    "errors": [p.as_dict() for p in errors],
                    "warnings": [p.as_dict() for p in warnings],
                }
            )
        else:
            self.out.problems(source, errors, warnings)
            if not errors:
                self.out.print(
                    f"{source}: {checked} schedule(s) valid"
                    + (f", {len(warnings)} warning(s)." if warnings else ".")
                )
        if errors:
            raise CLIError(f"{source}: {len(errors)} error(s).")
        return 0

    # -- execution history ------------------------------------------------------------------

    def purge(self, *, dry_run: bool = False, batch_size: int | None = None) -> int:
        """Apply execution retention now: delete finished executions past each tenant's."""
        tenant = self.scope.tenant()
        if tenant is not None:
            self.scope.require_role(tenant, ADMIN, "purge")
            tenants = [tenant]
        else:
            tenants = list(self.scope.tenants(ADMIN).order_by("pk"))
        entry = cleanup_targets.get(RETENTION_TARGET)
        size = batch_size or conf.CLEANUP_BATCH_SIZE
        now = timezone.now()
        plan = []
        for item in tenants:
            cutoff = retention_cutoff(item, now)
            count = cleanup.purgeable(entry, tenant=item, older_than=cutoff).count()
            plan.append((item, cutoff, count))
        results: list[dict[str, Any]] = []
        progress = self.out.progress(disable=self.out.as_json or dry_run)
        with progress:
            task = progress.add_task("Purging executions", total=sum(c for _t, _c, c in plan))
            for item, cutoff, count in plan:
                deleted = count
                if not dry_run and count:

                    def advance(batch: int, _total: int) -> None:
                        progress.advance(task, batch)

                    deleted = cleanup.purge(
                        entry, tenant=item, older_than=cutoff, batch_size=size, progress=advance
                    )
                results.append(
                    {
                        "tenant": tenant_key(item),
                        "retain_days": retention_days(item),
                        "cutoff": cutoff,
                        "deleted": deleted,
                    }
                )
        total = sum(r["deleted"] for r in results)
        if self.out.as_json:
            self.out.emit_json({"dry_run": dry_run, "deleted": total, "tenants": results})
            return 0
        self.out.print(purge_table(results, dry_run=dry_run))
        self.out.print(
            f"{'Would delete' if dry_run else 'Deleted'} {total} execution(s) "
            f"of {len(results)} tenant(s)."
        )
        return 0


def identity(data: dict[str, Any]) -> str:
    """Return how the verbs name the SCHEDULE ``data``: ``TENANT/KIND/NAME (ID)``."""
    return f"{data['tenant'] or '(system)'}/{data['kind']}/{data['name']} ({data['id']})"


def run_in_foreground(execution_id: int, *, timeout: float) -> Execution:
    """Execute a claimed execution in a worker thread, waiting at most ``timeout`` seconds.

    The thread is what the schedule's timeout can abandon (a thread cannot be killed): it is
    then marked ``timed_out`` like the scheduler's watchdog does, and Ctrl-C marks it
    ``interrupted``; the conditional outcome write discards a late result either way.
    """
    done = threading.Event()

    def work() -> None:
        try:
            runner.execute(execution_id)
        finally:
            connections.close_all()  # this thread's connections
            done.set()

    with outcome_reported_once():
        thread = threading.Thread(target=work, name="scheduling-cli-run", daemon=True)
        thread.start()
        try:
            if not done.wait(timeout):
                runner.time_out(execution_id)
        except KeyboardInterrupt:
            runner.interrupt(
                Execution.objects.filter(pk=execution_id).select_related("schedule"),
                "Interrupted at the command line.",
            )
    return Execution.objects.select_related("tenant").get(pk=execution_id)


@contextlib.contextmanager
def outcome_reported_once() -> Iterator[None]:
    """Keep the runner's log lines off stderr where the project configured no handler for them.

    The verb reports the outcome itself, in one line; without a handler, Python's last resort
    would print the runner's warning and error lines to stderr too. Where the project
    configured logging, its handlers get them as usual.
    """
    logger = logging.getLogger("scheduling")
    if logger.hasHandlers():
        yield
        return
    handler = logging.NullHandler()
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
