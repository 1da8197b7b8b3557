"""The verbs of ``python manage.py scheduling``, as a plain class the command wraps.

``SchedulingCLI`` does the work of each verb and renders it as a ``rich`` table or as JSON;
the management command only parses arguments. Bad input raises ``CLIError`` (exit code 2,
one line on stderr); a run that failed raises it with exit code 1.

Scope: ``--tenant SLUG`` (or id) limits every verb to one tenant, ``--kind`` to one kind of
schedule. ``--user USERNAME`` acts as that user: only the tenants the tenant resolver lets the
user see exist, and changing verbs need a role (run, pause, resume: operator; import, purge:
admin). Without ``--user`` the shell user sees every tenant, as with ``manage.py shell``.
An id or a tenant outside the scope is "not found", never "forbidden".

JSON output (``--format json``) is stable: keys are only ever added. Datetimes are ISO 8601
strings with offset (UTC), durations integers in milliseconds.

- ``list``: ``{"schedules": [SCHEDULE, ...]}`` where SCHEDULE is
  ``{"id", "tenant", "kind", "name", "type", "trigger_type", "trigger", "timezone", "enabled",
  "paused_until", "state", "next_run_at", "last_run_at", "last_status", "run_count",
  "consecutive_failures"}``; ``type`` is the scan type, report type or cleanup target,
  ``trigger`` the trigger in words, ``state`` one of enabled, paused, disabled.
- ``show``: ``{"schedule": SCHEDULE + {"description", "config", "dependents"},
  "next_runs": [datetime, ...], "recent_executions": [EXECUTION, ...]}``; ``config`` is the
  schedule as an entry of an exported file, every field included.
- ``run``: ``{"execution": EXECUTION}``, where EXECUTION is ``{"id", "tenant", "schedule_id",
  "schedule_name", "kind", "scheduled_for", "attempt", "trigger", "status", "queued_at",
  "started_at", "finished_at", "duration_ms", "worker", "error", "result"}``.
- ``pause``, ``resume``: ``{"schedule": SCHEDULE}``.
- ``history``: ``{"executions": [EXECUTION, ...]}``, newest first.
- ``status``: ``scheduling.status.scheduler_status()`` (lease, heartbeat, sync, next fires).
- ``export``: the schedules file itself (see ``scheduling.schedules_io``).
- ``import``: ``{"file", "dry_run", "applied", "valid", "summary": {"create", "update",
  "delete", "unchanged"}, "changes": [{"action", "tenant", "kind", "name", "id", "index",
  "changes"?: {field: [old, new]}}], "errors": [PROBLEM], "warnings": [PROBLEM]}``.
- ``validate``: ``{"source", "valid", "errors": [PROBLEM], "warnings": [PROBLEM]}`` where
  PROBLEM is ``{"level", "index", "line", "schedule_id", "tenant", "kind", "name", "field",
  "message"}`` (``index``/``line``: position in a file; ``schedule_id``: a stored schedule).
- ``purge``: ``{"dry_run", "deleted", "tenants": [{"tenant", "retain_days", "cutoff",
  "deleted"}]}``; with ``--dry-run`` ``deleted`` counts what would go.
"""

from __future__ import annotations

import json
import sys
import threading
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO
from uuid import UUID

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connections
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .. import runner, schedules_io, services
from ..exceptions import SchedulingError
from ..models import FAILURE_STATUSES, AuditAction, Execution, Kind, Schedule, Status, TriggerKind
from ..status import scheduler_status
from ..tenancy import (
    get_tenant_model,
    tenants_visible_to,
    visible_tenant_ids,
)

OPERATOR, ADMIN = "operator", "admin"
TYPE_FIELDS = {Kind.SCAN: "scan_type", Kind.REPORT: "report_type", Kind.CLEANUP: "cleanup_target"}
KIND_RELATIONS = ("tenant", "periodicscan", "report", "cleanupconfig")


class CLIError(SchedulingError):
    """Bad input at the command line (exit code 2), or a failed run (exit code 1)."""

    def __init__(self, message: str, returncode: int = 2) -> None:
        super().__init__(message)
        self.returncode = returncode


def json_default(value: Any) -> Any:
    """Encode what ``json`` cannot: datetimes as ISO 8601, decimals and UUIDs as strings."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def display_time(value: datetime | None) -> str:
    if value is None:
        return "-"
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S %Z")


def display_duration(ms: int | None) -> str:
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms} ms"
    return f"{ms / 1000:.1f} s"


def one_line(text: str, limit: int = 200) -> str:
    first = " ".join(str(text).split())
    return first if len(first) <= limit else first[: limit - 1] + "…"


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
    ) -> None:
        self.stdout = stdout or sys.stdout
        self.output_format = output_format
        self.tenant_key = tenant
        self._tenant: Any = None
        self.kind = kind
        self.user = self._user(user) if user else None
        terminal = self.stdout.isatty() if hasattr(self.stdout, "isatty") else False
        self.console = Console(
            file=self.stdout,
            width=None if terminal else 200,
            no_color=color is False,
            force_terminal=True if color else None,
            markup=False,
            highlight=False,
            emoji=False,
        )

    # -- scope ------------------------------------------------------------------------------

    def _user(self, username: str) -> Any:
        model = get_user_model()
        try:
            return model._default_manager.get_by_natural_key(username)
        except model.DoesNotExist:
            raise CLIError(f"Unknown user {username!r}.") from None

    def tenants(self, role: str | None = None) -> QuerySet:
        """The tenants in scope: all, or those ``--user`` holds ``role`` in."""
        if self.user is None:
            return get_tenant_model()._default_manager.all()
        return tenants_visible_to(self.user, min_role=role)

    def tenant(self) -> Any | None:
        """The ``--tenant`` tenant, or None; an unknown or invisible one is bad input."""
        if self.tenant_key is not None and self._tenant is None:
            self._tenant = schedules_io.find_tenant(self.tenant_key, self.tenants())
            if self._tenant is None:
                raise CLIError(f"Unknown tenant {self.tenant_key!r}.")
        return self._tenant

    def require_role(self, tenant: Any, role: str, verb: str) -> None:
        if self.user is None:
            return
        ids = visible_tenant_ids(self.user, min_role=role)
        if ids is not None and tenant.pk not in ids:
            raise CLIError(
                f"Your role in tenant {schedules_io.tenant_key(tenant)!r} does not allow {verb}."
            )

    def schedules(self) -> QuerySet:
        """The schedules in scope (``--tenant``, ``--kind``, ``--user``)."""
        return self.in_scope(Schedule.objects.select_related(*KIND_RELATIONS), kind_field="kind")

    def in_scope(self, queryset: QuerySet, *, kind_field: str) -> QuerySet:
        """Limit ``queryset`` (rows with a ``tenant``) to the tenant, user and kind in scope."""
        tenant = self.tenant()
        if tenant is not None:
            queryset = queryset.filter(tenant=tenant)
        elif self.user is not None:
            queryset = queryset.filter(tenant__in=self.tenants())
        if self.kind:
            queryset = queryset.filter(**{kind_field: self.kind})
        return queryset

    def get_schedule(self, pk: int) -> Schedule:
        """Return schedule ``pk`` in scope, as its kind; outside the scope it is not found."""
        tenant = self.tenant()
        try:
            if tenant is not None:
                schedule = self.schedules().get_for_tenant(tenant, pk)
            else:
                schedule = self.schedules().get(pk=pk)
        except (Http404, Schedule.DoesNotExist):
            raise CLIError(f"Schedule {pk} not found.") from None
        return schedule.get_kind_object()

    # -- output -----------------------------------------------------------------------------

    @property
    def as_json(self) -> bool:
        return self.output_format == "json"

    def emit_json(self, data: Any) -> None:
        self.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=json_default))
        self.stdout.write("\n")

    def table(self, *columns: str) -> Table:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        for column in columns:
            table.add_column(column, overflow="fold")
        return table

    def print(self, *objects: Any) -> None:
        self.console.print(*objects)

    def line(self, text: str | Text) -> None:
        """Print one line as it is: never wrapped, so each finding stays one line."""
        self.console.print(text, soft_wrap=True)

    def schedule_data(self, schedule: Schedule) -> dict[str, Any]:
        from ..triggers import describe

        kind_object = schedule.get_kind_object()
        now = timezone.now()
        state = (
            "disabled"
            if not schedule.enabled
            else ("paused" if schedule.is_paused(now) else "enabled")
        )
        return {
            "id": schedule.pk,
            "tenant": schedules_io.tenant_key(schedule.tenant),
            "kind": schedule.kind,
            "name": schedule.name,
            "type": getattr(kind_object, TYPE_FIELDS.get(schedule.kind, ""), None),
            "trigger_type": schedule.trigger_type,
            "trigger": str(describe(schedule)),
            "timezone": schedule.effective_timezone,
            "enabled": schedule.enabled,
            "paused_until": schedule.paused_until,
            "state": state,
            "next_run_at": schedule.next_run_at,
            "last_run_at": schedule.last_run_at,
            "last_status": schedule.last_status or None,
            "run_count": schedule.run_count,
            "consecutive_failures": schedule.consecutive_failures,
        }

    def execution_data(self, execution: Execution) -> dict[str, Any]:
        return {
            "id": execution.pk,
            "tenant": schedules_io.tenant_key(execution.tenant),
            "schedule_id": execution.schedule_id,
            "schedule_name": execution.schedule_name,
            "kind": execution.schedule_kind,
            "scheduled_for": execution.scheduled_for,
            "attempt": execution.attempt,
            "trigger": execution.trigger,
            "status": execution.status,
            "queued_at": execution.queued_at,
            "started_at": execution.started_at,
            "finished_at": execution.finished_at,
            "duration_ms": execution.duration_ms,
            "worker": execution.worker,
            "error": execution.error,
            "result": execution.result,
        }

    def schedules_table(self, rows: list[dict[str, Any]]) -> Table:
        table = self.table(
            "ID", "Tenant", "Kind", "Name", "Type", "Trigger", "State", "Next run", "Last"
        )
        for row in rows:
            table.add_row(
                str(row["id"]),
                row["tenant"],
                row["kind"],
                row["name"],
                row["type"] or "-",
                row["trigger"],
                row["state"]
                + (f" until {display_time(row['paused_until'])}" if row["paused_until"] else ""),
                display_time(row["next_run_at"]),
                row["last_status"] or "-",
            )
        return table

    def executions_table(self, rows: list[dict[str, Any]]) -> Table:
        table = self.table(
            *("ID", "Tenant", "Schedule", "Kind", "Scheduled for", "#", "Trigger", "Status"),
            *("Duration", "Error"),
        )
        for row in rows:
            table.add_row(
                str(row["id"]),
                row["tenant"],
                f"{row['schedule_name']} ({row['schedule_id'] or 'deleted'})",
                row["kind"],
                display_time(row["scheduled_for"]),
                str(row["attempt"]),
                row["trigger"],
                Text(row["status"], style=_status_style(row["status"])),
                display_duration(row["duration_ms"]),
                one_line(row["error"], 80) if row["error"] else "",
            )
        return table

    # -- verbs ------------------------------------------------------------------------------

    def list_schedules(self) -> int:
        """List the schedules in scope."""
        rows = [
            self.schedule_data(s) for s in self.schedules().order_by("tenant_id", "kind", "name")
        ]
        if self.as_json:
            self.emit_json({"schedules": rows})
        elif rows:
            self.print(self.schedules_table(rows))
        else:
            self.print("No schedules.")
        return 0

    def show(self, pk: int) -> int:
        """Show one schedule: its configuration, next runs and recent executions."""
        from ..triggers import next_runs

        schedule = self.get_schedule(pk)
        data = self.schedule_data(schedule)
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
            self.execution_data(e)
            for e in Execution.objects.filter(schedule=schedule).select_related("tenant")[:5]
        ]
        if self.as_json:
            self.emit_json({"schedule": data, "next_runs": upcoming, "recent_executions": recent})
            return 0
        details = self.table("Field", "Value")
        for key in ("id", "tenant", "kind", "name", "type", "trigger", "timezone", "state"):
            details.add_row(key, str(data[key] if data[key] is not None else "-"))
        for key in ("paused_until", "next_run_at", "last_run_at"):
            details.add_row(key, display_time(data[key]))
        details.add_row("last_status", data["last_status"] or "-")
        details.add_row("run_count", str(data["run_count"]))
        details.add_row("consecutive_failures", str(data["consecutive_failures"]))
        for key, value in data["config"].items():
            if key in ("tenant", "kind", "name", "depends_on", "timezone", "paused_until"):
                continue  # shown above
            text = json.dumps(value, default=json_default) if isinstance(value, dict) else value
            details.add_row(key, "-" if value in (None, "") else str(text))
        deps = data["config"].get("depends_on") or []
        details.add_row("depends_on", ", ".join(f"{d['kind']}/{d['name']}" for d in deps) or "-")
        details.add_row(
            "dependents", ", ".join(f"{d['kind']}/{d['name']}" for d in data["dependents"]) or "-"
        )
        details.add_row("next runs", "\n".join(display_time(t) for t in upcoming) or "-")
        self.print(details)
        if recent:
            self.print(self.executions_table(recent))
        return 0

    def run(self, pk: int) -> int:
        """Run a schedule now in this process; exit 0 when it succeeded, 1 otherwise."""
        schedule = self.get_schedule(pk)
        self.require_role(schedule.tenant, OPERATOR, "run")
        # A claimed_by of its own: the scheduler's pick-up of manual runs leaves it alone.
        execution = runner.claim(
            schedule,
            timezone.now(),
            trigger=TriggerKind.MANUAL,
            claimed_by=f"cli:{runner.worker_id()}",
            triggered_by=self.user,
        )
        if execution is None:
            raise CLIError(f"Schedule {pk} is being run by someone else right now.")
        services.record_audit(
            schedule=schedule,
            action=AuditAction.RUN,
            user=self.user,
            source="cli",
            changes={"execution": [None, execution.pk]},
        )
        if not self.as_json:
            self.print(
                f"Running {schedules_io.tenant_key(schedule.tenant)}/{schedule.kind}/"
                f"{schedule.name} (execution {execution.pk})..."
            )
        execution = run_in_foreground(execution.pk, timeout=schedule.effective_timeout)
        data = self.execution_data(execution)
        if self.as_json:
            self.emit_json({"execution": data})
        else:
            self.print(
                Text.assemble(
                    (execution.status, _status_style(execution.status)),
                    f" in {display_duration(execution.duration_ms)}",
                )
            )
            if execution.result is not None:
                self.print(json.dumps(execution.result, indent=2, default=json_default))
            if execution.error:
                self.print(execution.error)
        if execution.status != Status.SUCCEEDED:
            raise CLIError(
                f"Execution {execution.pk} {execution.status}: {one_line(execution.error)}",
                returncode=1,
            )
        return 0

    def pause(self, pk: int, *, until: datetime | None = None) -> int:
        """Pause a schedule until a time, or indefinitely (it is disabled)."""
        schedule = self.get_schedule(pk)
        self.require_role(schedule.tenant, OPERATOR, "pause")
        if until is not None and until <= timezone.now():
            raise CLIError(f"--until {until.isoformat()} is not in the future.")
        services.pause_schedule(schedule=schedule, until=until, user=self.user, source="cli")
        return self._changed(schedule, "Paused")

    def resume(self, pk: int) -> int:
        """Resume a paused or disabled schedule."""
        schedule = self.get_schedule(pk)
        self.require_role(schedule.tenant, OPERATOR, "resume")
        services.resume_schedule(schedule=schedule, user=self.user, source="cli")
        return self._changed(schedule, "Resumed")

    def _changed(self, schedule: Schedule, verb: str) -> int:
        schedule.refresh_from_db()
        data = self.schedule_data(schedule)
        if self.as_json:
            self.emit_json({"schedule": data})
        else:
            state = data["state"]
            if data["paused_until"]:
                state += f" until {display_time(data['paused_until'])}"
            self.print(
                f"{verb} {data['tenant']}/{data['kind']}/{data['name']} ({data['id']}): {state}."
            )
        return 0

    def history(
        self,
        *,
        schedule_id: int | None = None,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
    ) -> int:
        """List executions, newest first, filtered by schedule, status and time."""
        queryset = self.in_scope(
            Execution.objects.select_related("tenant").order_by("-scheduled_for", "-pk"),
            kind_field="schedule_kind",
        )
        if schedule_id is not None:
            queryset = queryset.filter(schedule=self.get_schedule(schedule_id))
        if status:
            queryset = queryset.filter(status=status)
        if since is not None:
            queryset = queryset.filter(scheduled_for__gte=since)
        if until is not None:
            queryset = queryset.filter(scheduled_for__lt=until)
        rows = [self.execution_data(e) for e in queryset[:limit]]
        if self.as_json:
            self.emit_json({"executions": rows})
        elif rows:
            self.print(self.executions_table(rows))
        else:
            self.print("No executions.")
        return 0

    def status(self, *, next_count: int = 10) -> int:
        """Show the leader, its heartbeat, the last sync and the next fires."""
        tenant = self.tenant()
        if tenant is not None:
            ids: Any = [tenant.pk]
        elif self.user is not None:
            ids = list(self.tenants().values_list("pk", flat=True))
        else:
            ids = None
        data = scheduler_status(tenant_ids=ids, next_count=next_count)
        if self.as_json:
            self.emit_json(data)
            return 0
        health = Text("healthy", style="green") if data["healthy"] else Text("NOT healthy", "red")
        age = data["heartbeat_age_seconds"]
        summary = self.table("Scheduler", "")
        summary.add_row("health", health)
        summary.add_row("leader", data["leader"] or "none")
        summary.add_row(
            "heartbeat age",
            "-" if age is None else f"{age:.1f} s (max {data['max_heartbeat_age_seconds']:g} s)",
        )
        summary.add_row("lease expires", display_time(data["expires_at"]))
        summary.add_row("last sync", display_time(data["last_sync_at"]))
        summary.add_row("sync lag", display_duration(data["sync_lag_ms"]))
        summary.add_row("jobs", str(data["job_count"]))
        self.print(summary)
        fires = self.table("Next fire", "ID", "Tenant", "Kind", "Name")
        for row in data["next_fires"]:
            fires.add_row(
                display_time(row["next_run_at"]),
                *(str(row["id"]), row["tenant"], row["kind"], row["name"]),
            )
        self.print(fires if data["next_fires"] else "No upcoming fires.")
        return 0

    def export(self, *, output: str | None = None, file_format: str | None = None) -> int:
        """Write the schedules in scope as a YAML or JSON file (or to stdout)."""
        if file_format is None:
            file_format = "json" if output and output.lower().endswith(".json") else "yaml"
        document = schedules_io.export_schedules(self.schedules())
        text = schedules_io.dump(document, file_format)
        if output in (None, "-"):
            self.stdout.write(text)
            return 0
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CLIError(f"Cannot write {output}: {exc.strerror or exc}.") from None
        self.print(f"Exported {len(document['schedules'])} schedule(s) to {output}.")
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

    def _problems(self, source: str, errors: list, warnings: list) -> None:
        for problem in errors:
            self.line(Text(f"{source}: {problem}", style="red"))
        for problem in warnings:
            self.line(Text(f"{source}: warning: {problem}", style="yellow"))

    def import_file(self, path: str, *, prune: bool = False, dry_run: bool = False) -> int:
        """Apply a schedules file: create, update and (with prune) delete; all or nothing."""
        document = self._read(path)
        tenant = self.tenant()
        if tenant is not None:
            self.require_role(tenant, ADMIN, "import")
        plan = schedules_io.plan_import(
            document,
            tenants=self.tenants(ADMIN),
            only_tenant=tenant,
            only_kind=self.kind,
            prune=prune,
        )
        applied = False
        if plan.valid and not dry_run:
            try:
                schedules_io.apply_plan(plan, user=self.user, source="cli")
            except (ValidationError, DatabaseError) as exc:
                raise CLIError(f"{path}: nothing was changed: {one_line(str(exc))}") from None
            applied = True
        if self.as_json:
            self.emit_json({"file": path, "dry_run": dry_run, "applied": applied, **plan.as_dict()})
        else:
            self._problems(path, plan.errors, plan.warnings)
            if plan.valid:
                self._print_plan(plan)
                summary = plan.summary()
                verb = "Would" if dry_run else "Done:"
                self.print(
                    f"{verb} create {summary['create']}, update {summary['update']}, "
                    f"delete {summary['delete']}; {summary['unchanged']} unchanged."
                )
        if not plan.valid:
            count = len(plan.errors)
            raise CLIError(f"{path}: {count} error(s); nothing was changed.")
        return 0

    def _print_plan(self, plan: schedules_io.ImportPlan) -> None:
        marks = {"create": ("+", "green"), "update": ("~", "yellow"), "delete": ("-", "red")}
        for change in plan.changes:
            if change.action not in marks:
                continue
            mark, style = marks[change.action]
            self.line(Text(f"{mark} {change.action} {change.identity}", style=style))
            for name, (old, new) in change.changes.items():
                self.line(
                    f"    {name}: {json.dumps(old, default=json_default)} -> "
                    f"{json.dumps(new, default=json_default)}"
                )

    def validate(self, path: str | None = None) -> int:
        """Check a schedules file, or the schedules in the database; exit 2 on errors."""
        if path is not None:
            plan = schedules_io.plan_import(
                self._read(path),
                tenants=self.tenants(),
                only_tenant=self.tenant(),
                only_kind=self.kind,
            )
            source, errors, warnings = path, plan.errors, plan.warnings
            checked = len([c for c in plan.changes if c.action != "delete"])
        else:
            queryset = self.schedules()
            source = "database"
            errors, warnings = schedules_io.validate_database(queryset)
            checked = queryset.count()
        if self.as_json:
            self.emit_json(
                {
                    "source": source,
                    "valid": not errors,
                    "errors": [p.as_dict() for p in errors],
                    "warnings": [p.as_dict() for p in warnings],
                }
            )
        else:
            self._problems(source, errors, warnings)
            if not errors:
                self.print(
                    f"{source}: {checked} schedule(s) valid"
                    + (f", {len(warnings)} warning(s)." if warnings else ".")
                )
        if errors:
            raise CLIError(f"{source}: {len(errors)} error(s).")
        return 0

    def purge(self, *, dry_run: bool = False, batch_size: int | None = None) -> int:
        """Apply execution retention now: delete finished executions past each tenant's."""
        from ..conf import conf
        from ..kinds.cleanup import purge, purgeable
        from ..registry import cleanup_targets
        from ..retention import RETENTION_TARGET, retention_cutoff, retention_days

        tenant = self.tenant()
        if tenant is not None:
            self.require_role(tenant, ADMIN, "purge")
            tenants = [tenant]
        else:
            tenants = list(self.tenants(ADMIN).order_by("pk"))
        entry = cleanup_targets.get(RETENTION_TARGET)
        size = batch_size or conf.CLEANUP_BATCH_SIZE
        now = timezone.now()
        plan = []
        for item in tenants:
            cutoff = retention_cutoff(item, now)
            count = purgeable(entry, tenant=item, older_than=cutoff).count()
            plan.append((item, cutoff, count))
        results = []
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            disable=self.as_json or dry_run,
        )
        with progress:
            task = progress.add_task("Purging executions", total=sum(c for _t, _c, c in plan))
            for item, cutoff, count in plan:
                deleted = count
                if not dry_run and count:

                    def advance(batch: int, _total: int) -> None:
                        progress.advance(task, batch)

                    deleted = purge(
                        entry, tenant=item, older_than=cutoff, batch_size=size, progress=advance
                    )
                results.append(
                    {
                        "tenant": schedules_io.tenant_key(item),
                        "retain_days": retention_days(item),
                        "cutoff": cutoff,
                        "deleted": deleted,
                    }
                )
        total = sum(r["deleted"] for r in results)
        if self.as_json:
            self.emit_json({"dry_run": dry_run, "deleted": total, "tenants": results})
            return 0
        table = self.table(
            "Tenant", "Retain days", "Cutoff", "Would delete" if dry_run else "Deleted"
        )
        for row in results:
            table.add_row(
                row["tenant"],
                *(str(row["retain_days"]), display_time(row["cutoff"]), str(row["deleted"])),
            )
        self.print(table)
        self.print(
            f"{'Would delete' if dry_run else 'Deleted'} {total} execution(s) "
            f"of {len(results)} tenant(s)."
        )
        return 0


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


def _status_style(status: str) -> str:
    if status == Status.SUCCEEDED:
        return "green"
    if status in FAILURE_STATUSES:
        return "red"
    return "yellow"
