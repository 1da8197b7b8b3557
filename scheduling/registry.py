"""What may run: registered scan types, report types, cleanup targets and task types.

The database stores only keys. A row can never make the process import or call anything that
code did not register here. Apps register in a ``scheduling_tasks.py`` module, which the app
autodiscovers like ``admin.py``::

    from scheduling.registry import scan_type

    @scan_type("http", label="HTTP check", options=HttpOptions)
    def http_check(scan, context) -> dict: ...

``options`` is a ``django.forms.Form`` subclass; its cleaned data is what gets stored.

The host project's own functions are task types: ``@task_type("crm_sync", label=...)`` on
``def crm_sync(task, context) -> dict``, or an existing ``django.tasks`` task through
``register_task(refresh_feed, key="refresh_feed", options=RefreshOptions)``. Any handler may be
``async def``: the runner awaits it with the execution's timeout.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar

from django import forms
from django.core.exceptions import ValidationError
from django.utils.module_loading import autodiscover_modules
from django.utils.translation import gettext_lazy as _

from .exceptions import UnknownTaskType

if TYPE_CHECKING:
    from django.db.models import Model, QuerySet
    from django_stubs_ext import StrOrPromise

    from tenants.models import Tenant

    from .context import ExecutionContext
    from .models import CleanupConfig, PeriodicScan, Report, Schedule, ScheduledTask

# A JSON object: a handler's result, a report's data, a schedule's cleaned options.
JSONObject: TypeAlias = dict[str, Any]
# The kind of schedule a registry's handlers take (``PeriodicScan`` for scan types).
_K = TypeVar("_K", bound="Schedule")
# The decorators hand back the function they register, with its own signature.
_ScanHandler = TypeVar(
    "_ScanHandler", bound="Callable[[PeriodicScan, ExecutionContext], JSONObject]"
)
_ReportHandler = TypeVar("_ReportHandler", bound="Callable[[Report, ExecutionContext], JSONObject]")
# A task type's handler returns its result, or (``async def``) a coroutine of it.
_TaskHandler = TypeVar("_TaskHandler", bound="Callable[[ScheduledTask, ExecutionContext], Any]")


@dataclass(frozen=True)
class TaskType(Generic[_K]):
    key: str
    label: StrOrPromise
    # ``func(schedule, context) -> dict``; None for cleanup targets, which only describe rows.
    # An ``async def`` handler returns a coroutine, which the runner awaits.
    func: Callable[[_K, ExecutionContext], Any] | None
    options: type[forms.Form] | None = None
    # Scan types: an extra check of the target at validation time (never replaces the
    # run-time check against the target policy).
    validate_target: Callable[[str, JSONObject | None], None] | None = None
    # Report types: the template that renders HTML and the callable that turns the
    # report's data into CSV rows (a list of lists, header first).
    template: str | None = None
    csv_rows: Callable[[JSONObject], list[list[object]]] | None = None
    # Task types registered from a ``django.tasks`` task (``register_task``): that task.
    task: Any = None
    # Cleanup targets: what to delete (see ``cleanup_target``). Rows of ``model`` older than
    # ``retain_days`` by ``datetime_field``, or whose ``expiry_field`` has passed...
    model: str | None = None
    datetime_field: str | None = None
    expiry_field: str | None = None
    tenant_path: str | None = "tenant"
    queryset: Callable[[Tenant | None], QuerySet[Model]] | None = None
    # ... or anything else: ``purge(cleanup, context, cleaned_options) -> result`` does the
    # whole run instead of the row purge (the built-in ``files`` target).
    purge: Callable[[_K, ExecutionContext, JSONObject], JSONObject] | None = None
    # Only on system schedules (no tenant): what it deletes belongs to no single tenant.
    system_only: bool = False
    extra: dict[str, object] = field(default_factory=dict)

    def validate_options(self, options: object) -> JSONObject:
        """Return the cleaned options or raise ``ValidationError`` keyed on ``options``."""
        if options in (None, ""):
            options = {}
        if not isinstance(options, dict):
            raise ValidationError({"options": _("Options must be a JSON object.")})
        if self.options is None:
            if options:
                raise ValidationError(
                    {"options": _("%(label)s takes no options.") % {"label": self.label}}
                )
            return {}
        form = self.options(data=options)
        # Every problem at once: the options the type does not have, and each wrong value.
        messages: list[ValidationError] = []
        unknown = sorted(set(options) - set(form.fields))
        if unknown:
            messages.append(
                ValidationError(_("Unknown option(s): %s.") % ", ".join(unknown), code="unknown")
            )
        if not form.is_valid():
            messages.extend(
                ValidationError(
                    f"{name}: {' '.join(map(str, errors))}"
                    if name != "__all__"
                    else " ".join(map(str, errors))
                )
                for name, errors in form.errors.items()
            )
        if messages:
            raise ValidationError({"options": messages})
        # Keep the options the user gave; fill the others from declared initial values.
        cleaned: JSONObject = {}
        for name, value in form.cleaned_data.items():
            if name in options:
                cleaned[name] = value
            elif form.fields[name].initial is not None:
                cleaned[name] = form.fields[name].initial
        return cleaned


class Registry(Generic[_K]):
    """One namespace of registered keys (scan types, report types or cleanup targets)."""

    def __init__(self, noun: str) -> None:
        self.noun = noun
        self._entries: dict[str, TaskType[_K]] = {}

    def register(self, entry: TaskType[_K]) -> TaskType[_K]:
        self._entries[entry.key] = entry
        return entry

    def unregister(self, key: str) -> None:
        self._entries.pop(key, None)

    def get(self, key: str) -> TaskType[_K]:
        try:
            return self._entries[key]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise UnknownTaskType(f"Unknown {self.noun} {key!r}; registered: {known}.") from None

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[TaskType[_K]]:
        return iter(sorted(self._entries.values(), key=lambda e: e.key))

    def keys(self) -> list[str]:
        return sorted(self._entries)

    def choices(self) -> list[tuple[str, StrOrPromise]]:
        return [(e.key, e.label) for e in self]


scan_types: Registry[PeriodicScan] = Registry("scan type")
report_types: Registry[Report] = Registry("report type")
cleanup_targets: Registry[CleanupConfig] = Registry("cleanup target")
task_types: Registry[ScheduledTask] = Registry("task type")


def scan_type(
    key: str,
    *,
    label: StrOrPromise,
    options: type[forms.Form] | None = None,
    validate_target: Callable[[str, JSONObject | None], None] | None = None,
) -> Callable[[_ScanHandler], _ScanHandler]:
    """Register ``func(scan, context) -> dict`` as the scan type ``key``."""

    def decorator(func: _ScanHandler) -> _ScanHandler:
        scan_types.register(TaskType(key, label, func, options, validate_target=validate_target))
        return func

    return decorator


def report_type(
    key: str,
    *,
    label: StrOrPromise,
    options: type[forms.Form] | None = None,
    template: str | None = None,
    csv_rows: Callable[[JSONObject], list[list[object]]] | None = None,
) -> Callable[[_ReportHandler], _ReportHandler]:
    """Register ``func(report, context) -> dict`` (the report's data) as report type ``key``."""

    def decorator(func: _ReportHandler) -> _ReportHandler:
        report_types.register(
            TaskType(key, label, func, options, template=template, csv_rows=csv_rows)
        )
        return func

    return decorator


def cleanup_target(
    key: str,
    *,
    label: StrOrPromise,
    model: str | None = None,
    datetime_field: str | None = None,
    expiry_field: str | None = None,
    tenant_path: str | None = "tenant",
    queryset: Callable[[Tenant | None], QuerySet[Model]] | None = None,
    options: type[forms.Form] | None = None,
    purge: Callable[[CleanupConfig, ExecutionContext, JSONObject], JSONObject] | None = None,
    system_only: bool = False,
) -> TaskType[CleanupConfig]:
    """Register rows of ``model`` as cleanup target ``key``.

    With ``datetime_field``, a run deletes the rows older than the config's ``retain_days`` by
    that field; with ``expiry_field`` (exactly one of the two), the rows whose expiry has
    passed, whatever ``retain_days`` says. ``tenant_path`` is the lookup from the model to the
    tenant (``"tenant"``, ``"schedule__tenant"``); a target without one passes
    ``queryset(tenant)`` instead, which returns the rows that belong to that tenant (every
    row when ``tenant`` is None: a system cleanup config runs across all tenants).

    A target that is not rows passes ``purge(cleanup, context, options) -> dict`` instead of
    ``model`` and its fields; it does the whole run and returns its result. ``system_only``
    targets may only be chosen by system schedules (no tenant).
    """
    if purge is not None:
        if model or datetime_field or expiry_field or queryset:
            raise ValueError(
                "A cleanup target with purge() takes no model, datetime_field, expiry_field "
                "or queryset."
            )
        return cleanup_targets.register(
            TaskType(
                key, label, None, options, tenant_path=None, purge=purge, system_only=system_only
            )
        )
    if not model:
        raise ValueError("A cleanup target needs a model (or a purge() callable).")
    if (datetime_field is None) == (expiry_field is None):
        raise ValueError("A cleanup target needs exactly one of datetime_field and expiry_field.")
    if tenant_path is None and queryset is None:
        raise ValueError("A cleanup target needs a tenant_path or a queryset(tenant) callable.")
    return cleanup_targets.register(
        TaskType(
            key,
            label,
            None,
            options,
            model=model,
            datetime_field=datetime_field,
            expiry_field=expiry_field,
            tenant_path=tenant_path,
            queryset=queryset,
            system_only=system_only,
        )
    )


def task_type(
    key: str, *, label: StrOrPromise, options: type[forms.Form] | None = None
) -> Callable[[_TaskHandler], _TaskHandler]:
    """Register ``func(task, context) -> dict`` (or ``async def``) as the task type ``key``.

    ``task`` is the ``ScheduledTask``; its ``options`` are the cleaned options of this run
    (the schedule's, with a manual run's own merged over them).
    """

    def decorator(func: _TaskHandler) -> _TaskHandler:
        task_types.register(TaskType(key, label, func, options))
        return func

    return decorator


def register_task(
    task: Any,
    *,
    key: str | None = None,
    label: StrOrPromise | None = None,
    options: type[forms.Form] | None = None,
) -> TaskType[ScheduledTask]:
    """Register a ``django.tasks`` task (``@task``-decorated) as a task type.

    A schedule of that type calls it, in the scheduler's executor and not through the task
    backend, with its cleaned options as keyword arguments: ``task.call(**options)``, or
    ``await task.acall(**options)`` for a coroutine task (then the timeout cancels it).
    ``key`` defaults to the task's name and ``label`` to the key.
    """
    func = getattr(task, "func", None)
    if func is None or not callable(getattr(task, "call", None)):
        raise TypeError(f"register_task() takes a django.tasks task; got {task!r}.")
    key = key or str(getattr(task, "name", "") or func.__name__)
    handler: Callable[[ScheduledTask, ExecutionContext], Any]
    if inspect.iscoroutinefunction(func):

        async def call_async(schedule: ScheduledTask, context: ExecutionContext) -> Any:
            return await task.acall(**schedule.options)

        handler = call_async
    else:

        def call(schedule: ScheduledTask, context: ExecutionContext) -> Any:
            return task.call(**schedule.options)

        handler = call
    handler.__name__ = handler.__qualname__ = f"{func.__name__}_as_task_type"
    return task_types.register(TaskType(key, label or key, handler, options, task=task))


def autodiscover() -> None:
    """Import ``scheduling_tasks`` from every installed app."""
    autodiscover_modules("scheduling_tasks")
