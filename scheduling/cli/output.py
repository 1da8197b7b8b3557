"""How the verbs print: ``rich`` tables for people, JSON for scripts.

Tables are never wider than the terminal, or 200 columns when the output is not a terminal
(a pipe, a file, a test). What each verb prints as JSON is written in ``contract``.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from decimal import Decimal
from typing import Any, TextIO
from uuid import UUID

from django.utils import timezone
from rich import box
from rich.console import Console, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ..models import FAILURE_STATUSES, Status
from ..schedules_io import ImportPlan, Problem
from ..triggers import is_paused_indefinitely


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
    """Return ``value`` in the current time zone, to the second; ``-`` for None."""
    if value is None:
        return "-"
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S %Z")


def display_pause(paused_until: datetime | None) -> str:
    """Return how a pause reads after the state: " until <time>", " until resumed", or ""."""
    if paused_until is None:
        return ""
    if is_paused_indefinitely(paused_until):
        return " until resumed"
    return f" until {display_time(paused_until)}"


def display_duration(ms: int | None) -> str:
    """Return a duration in milliseconds as ``ms`` below a second, else as seconds."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms} ms"
    return f"{ms / 1000:.1f} s"


def one_line(text: str, limit: int = 200) -> str:
    """Return ``text`` on one line, its whitespace collapsed, cut to ``limit`` characters."""
    first = " ".join(str(text).split())
    return first if len(first) <= limit else first[: limit - 1] + "…"


def status_style(status: str) -> str:
    """Return the colour of an execution status: green succeeded, red failed, else yellow."""
    if status == Status.SUCCEEDED:
        return "green"
    if status in FAILURE_STATUSES:
        return "red"
    return "yellow"


def table(*columns: str) -> Table:
    """Return an empty table with these column headings, folding long cells."""
    new = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for column in columns:
        new.add_column(column, overflow="fold")
    return new


class Output:
    """Where a command prints, and in which format (``table`` or ``json``)."""

    def __init__(
        self,
        *,
        stdout: TextIO | None = None,
        output_format: str = "table",
        color: bool | None = None,
    ) -> None:
        self.stdout = stdout or sys.stdout
        self.output_format = output_format
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

    @property
    def as_json(self) -> bool:
        return self.output_format == "json"

    def write(self, text: str) -> None:
        """Write ``text`` as it is, outside ``rich`` (a JSON document, an exported file)."""
        self.stdout.write(text)

    def emit_json(self, data: Any) -> None:
        """Write ``data`` as one indented JSON document."""
        self.write(json.dumps(data, indent=2, ensure_ascii=False, default=json_default))
        self.write("\n")

    def print(self, *objects: RenderableType) -> None:
        self.console.print(*objects)

    def line(self, text: str | Text) -> None:
        """Print one line as it is: never wrapped, so each finding stays one line."""
        self.console.print(text, soft_wrap=True)

    def progress(self, *, disable: bool) -> Progress:
        """Return a progress bar with a count and the time elapsed (not drawn if ``disable``)."""
        return Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            disable=disable,
        )

    def problems(self, source: str, errors: list[Problem], warnings: list[Problem]) -> None:
        """Print each error, then each warning, of validating ``source``: one line each."""
        for problem in errors:
            self.line(Text(f"{source}: {problem}", style="red"))
        for problem in warnings:
            self.line(Text(f"{source}: warning: {problem}", style="yellow"))

    def plan(self, plan: ImportPlan) -> None:
        """Print what an import creates, updates and deletes, with each changed field."""
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


def schedules_table(rows: list[dict[str, Any]]) -> Table:
    """Return a table of SCHEDULE rows, one line each."""
    schedules = table(
        "ID", "Tenant", "Kind", "Name", "Type", "Trigger", "State", "Next run", "Last"
    )
    for row in rows:
        schedules.add_row(
            str(row["id"]),
            row["tenant"] or "(system)",
            row["kind"],
            row["name"],
            row["type"] or "-",
            row["trigger"],
            row["state"] + display_pause(row["paused_until"]),
            display_time(row["next_run_at"]),
            row["last_status"] or "-",
        )
    return schedules


def executions_table(rows: list[dict[str, Any]]) -> Table:
    """Return a table of EXECUTION rows, one line each, the error cut short."""
    executions = table(
        *("ID", "Tenant", "Schedule", "Kind", "Scheduled for", "#", "Trigger", "Status"),
        *("Duration", "Error"),
    )
    for row in rows:
        executions.add_row(
            str(row["id"]),
            row["tenant"] or "(system)",
            f"{row['schedule_name']} ({row['schedule_id'] or 'deleted'})",
            row["kind"],
            display_time(row["scheduled_for"]),
            str(row["attempt"]),
            row["trigger"],
            Text(row["status"], style=status_style(row["status"])),
            display_duration(row["duration_ms"]),
            one_line(row["error"], 80) if row["error"] else "",
        )
    return executions


def schedule_table(data: dict[str, Any], upcoming: list[datetime]) -> Table:
    """Return the field-by-field table of ``show``: state, configuration, next runs."""
    details = table("Field", "Value")
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
    return details


def status_tables(data: dict[str, Any]) -> tuple[Table, Table | str]:
    """Return the scheduler's health table and its next fires (or a line saying none)."""
    health = Text("healthy", style="green") if data["healthy"] else Text("NOT healthy", "red")
    age = data["heartbeat_age_seconds"]
    summary = table("Scheduler", "")
    summary.add_row("health", health)
    if data.get("problem"):
        summary.add_row("problem", data["problem"])
    summary.add_row("leader", data["leader"] or "none")
    summary.add_row(
        "heartbeat age",
        "-" if age is None else f"{age:.1f} s (max {data['max_heartbeat_age_seconds']:g} s)",
    )
    summary.add_row("lease expires", display_time(data["expires_at"]))
    summary.add_row("last sync", display_time(data["last_sync_at"]))
    summary.add_row("sync lag", display_duration(data["sync_lag_ms"]))
    summary.add_row("jobs", str(data["job_count"]))
    fires = table("Next fire", "ID", "Tenant", "Kind", "Name")
    for row in data["next_fires"]:
        fires.add_row(
            display_time(row["next_run_at"]),
            *(str(row["id"]), row["tenant"] or "(system)", row["kind"], row["name"]),
        )
    return summary, fires if data["next_fires"] else "No upcoming fires."


def purge_table(results: list[dict[str, Any]], *, dry_run: bool) -> Table:
    """Return what purge deleted (or would delete) per tenant, with each tenant's cutoff."""
    purged = table("Tenant", "Retain days", "Cutoff", "Would delete" if dry_run else "Deleted")
    for row in results:
        purged.add_row(
            row["tenant"] or "(system)",
            *(str(row["retain_days"]), display_time(row["cutoff"]), str(row["deleted"])),
        )
    return purged
