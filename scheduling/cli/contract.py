"""The JSON each verb prints with ``--format json``, written once.

``JSON_OUTPUT`` describes the document of every verb; ``manage.py scheduling VERB --help``
shows it (``describe_json``), and the package docstring points here. The objects several verbs
share (``SCHEDULE``, ``EXECUTION``, ``PROBLEM``) are ``Shape``s whose keys are both what the
help lists and, for the two the CLI builds itself, what ``schedule_data`` and
``execution_data`` put out, in that order. Datetimes are ISO 8601 strings with an offset
(UTC), durations integers in milliseconds. Outside scripts read this JSON: keys are only ever
added, never renamed or removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from ..kinds import KINDS
from ..models import Execution, Schedule
from ..tenancy import tenant_key
from ..triggers import describe


@dataclass(frozen=True)
class Shape:
    """A JSON object several verbs print: its name in ``JSON_OUTPUT``, its keys in order."""

    name: str
    keys: tuple[str, ...]
    notes: str = ""

    def __str__(self) -> str:
        return "{" + ", ".join(f'"{key}"' for key in self.keys) + "}"

    def describe(self) -> str:
        """Return the line of ``--help`` that spells this shape out."""
        return f"{self.name} = {self}" + (f"; {self.notes}" if self.notes else "")

    def build(self, row: object, derived: dict[str, Any]) -> dict[str, Any]:
        """Return ``row`` as this shape: each key from ``derived``, else ``row``'s attribute."""
        # A derived key that ``keys`` does not list would silently vanish from the output.
        if unknown := derived.keys() - set(self.keys):
            raise KeyError(f"{self.name} has no key {sorted(unknown)}; add it to its keys.")
        return {key: derived[key] if key in derived else getattr(row, key) for key in self.keys}


SCHEDULE = Shape(
    "SCHEDULE",
    (
        *("id", "tenant", "kind", "name", "type", "trigger_type", "trigger", "timezone"),
        *("enabled", "paused_until", "state", "next_run_at", "last_run_at", "last_status"),
        *("run_count", "consecutive_failures"),
    ),
    notes='"type" is the scan type, report type or cleanup target, "trigger" the trigger in '
    'words, "state" one of enabled, paused, disabled',
)
EXECUTION = Shape(
    "EXECUTION",
    (
        *("id", "tenant", "schedule_id", "schedule_name", "kind", "scheduled_for", "attempt"),
        *("trigger", "status", "queued_at", "started_at", "finished_at", "duration_ms"),
        *("worker", "error", "result", "options"),
    ),
    notes='"options": a manual run\'s own options, else null; "worker" (host:pid) is null '
    "unless --user is an admin or owner of the execution's tenant (or a superuser)",
)
# Built by ``scheduling.schedules_io.Problem.as_dict()``; listed here for the help.
PROBLEM = Shape(
    "PROBLEM",
    ("level", "index", "line", "schedule_id", "tenant", "kind", "name", "field", "message"),
    notes='"index" and "line": the position in a file; "schedule_id": a stored schedule',
)
SHAPES = (SCHEDULE, EXECUTION, PROBLEM)

# verb -> its JSON document; a shape's name stands for that object.
JSON_OUTPUT: dict[str, str] = {
    "list": '{"schedules": [SCHEDULE, ...]}',
    "show": '{"schedule": SCHEDULE + {"description", "config", "dependents": [{"kind", '
    '"name"}]}, "next_runs": [datetime, ...], "recent_executions": [EXECUTION, ...]}; "config" '
    "is the schedule as an entry of an exported file, every field included",
    "run": '{"execution": EXECUTION}',
    "cancel": '{"execution": EXECUTION}, the execution as cancelled',
    "retry": '{"execution": EXECUTION}, the attempt it queued',
    "pause": '{"schedule": SCHEDULE}',
    "resume": '{"schedule": SCHEDULE}',
    "enable": '{"schedule": SCHEDULE}',
    "disable": '{"schedule": SCHEDULE}',
    "add": '{"schedule": SCHEDULE}, the new schedule; when it is not valid '
    '{"schedule": null, "errors": [PROBLEM, ...]}',
    "remove": '{"removed": SCHEDULE}, the schedule as it was',
    "history": '{"executions": [EXECUTION, ...]}, newest first',
    "status": '{"lease_name", "leader", "leader_active", "healthy", "heartbeat_age_seconds", '
    '"max_heartbeat_age_seconds", "problem", "renewed_at", "expires_at", "last_sync_at", '
    '"sync_lag_ms", "job_count", "next_fires": [{"id", "tenant_id", "tenant", "kind", "name", '
    '"next_run_at", "paused_until"}]}, as scheduling.status.scheduler_status() returns it; '
    '"problem" says why the scheduler is not healthy (null when it is); "leader" (the lease '
    "holder's host) is null for a --user who does not see every tenant",
    "export": 'the schedules file itself: {"version": 1, '
    '"schedules": [{"tenant", "kind", "name", <fields>, "depends_on": [{"kind", "name"}]}]}; '
    "fields at their default are left out (see scheduling.schedules_io)",
    "import": '{"file", "dry_run", "applied", "valid", "summary": {"create", "update", '
    '"delete", "unchanged"}, "changes": [{"action", "tenant", "kind", "name", "id", "index", '
    '"changes"?: {field: [old, new]}}], "errors": [PROBLEM, ...], "warnings": [PROBLEM, ...]}',
    "validate": '{"source", "valid", "errors": [PROBLEM, ...], "warnings": [PROBLEM, ...]}; '
    '"source" is the file, or "database"',
    "purge": '{"dry_run", "deleted", "tenants": [{"tenant", "retain_days", "cutoff", '
    '"deleted"}]}; with --dry-run "deleted" counts what would go',
}


def describe_json(verb: str) -> str:
    """Return the JSON of ``verb`` with the shapes it names spelled out, for its ``--help``."""
    document = JSON_OUTPUT[verb]
    shapes = [shape.describe() for shape in SHAPES if shape.name in document]
    return "\n".join([f"JSON (--format json): {document}", *shapes])


def schedule_data(schedule: Schedule) -> dict[str, Any]:
    """Return ``schedule`` as a SCHEDULE."""
    spec = KINDS.get(schedule.kind)
    if not schedule.enabled:
        state = "disabled"
    else:
        state = "paused" if schedule.is_paused(timezone.now()) else "enabled"
    return SCHEDULE.build(
        schedule,
        {
            "id": schedule.pk,
            "tenant": tenant_key(schedule.tenant),
            "type": spec.type_key(schedule.get_kind_object()) if spec else None,
            "trigger": str(describe(schedule)),
            "timezone": schedule.effective_timezone,
            "state": state,
            "last_status": schedule.last_status or None,
        },
    )


def execution_data(execution: Execution, *, internals: bool = True) -> dict[str, Any]:
    """Return ``execution`` as an EXECUTION; without ``internals``, "worker" is null."""
    derived: dict[str, Any] = {
        "id": execution.pk,
        "tenant": tenant_key(execution.tenant),
        "kind": execution.schedule_kind,
    }
    if not internals:
        derived["worker"] = None  # a host name: for the tenant's admins and superusers
    return EXECUTION.build(execution, derived)
