"""What may run: registered scan types, report types and cleanup targets.

The database stores only keys. A row can never make the process import or call anything that
code did not register here. Apps register in a ``scheduling_tasks.py`` module, which the app
autodiscovers like ``admin.py``::

    from scheduling.registry import scan_type

    @scan_type("http", label="HTTP check", options=HttpOptions)
    def http_check(scan, context) -> dict: ...

``options`` is a ``django.forms.Form`` subclass; its cleaned data is what gets stored.
"""

from __future__ import annotations

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
    from .models import CleanupConfig, PeriodicScan, Report, Schedule

# A JSON object: a handler's result, a report's data, a schedule's cleaned options.
JSONObject: TypeAlias = dict[str, Any]
# The kind of schedule a registry's handlers take (``PeriodicScan`` for scan types).
_K = TypeVar("_K", bound="Schedule")
# The decorators hand back the function they register, with its own signature.
_ScanHandler = TypeVar(
    "_ScanHandler", bound="Callable[[PeriodicScan, ExecutionContext], JSONObject]"
)
_ReportHandler = TypeVar("_ReportHandler", bound="Callable[[Report, ExecutionContext], JSONObject]")


@dataclass(frozen=True)
class TaskType(Generic[_K]):
    key: str
    label: StrOrPromise
    # ``func(schedule, context) -> dict``; None for cleanup targets, which only describe rows.
    func: Callable[[_K, ExecutionContext], JSONObject] | None
    options: type[forms.Form] | None = None
    # Scan types: an extra check of the target at validation time (never replaces the
    # run-time check against the target policy).
    validate_target: Callable[[str, JSONObject | None], None] | None = None
    # Report types: the template that renders HTML and the callable that turns the
    # report's data into CSV rows (a list of lists, header first).
    template: str | None = None
    csv_rows: Callable[[JSONObject], list[list[object]]] | None = None
    # Cleanup targets: what to delete (see ``cleanup_target``).
    model: str | None = None
    datetime_field: str | None = None
    tenant_path: str | None = "tenant"
    queryset: Callable[[Tenant], QuerySet[Model]] | None = None
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
        unknown = sorted(set(options) - set(form.fields))
        if unknown:
            raise ValidationError(
                {"options": _("Unknown option(s): %s.") % ", ".join(unknown)}, code="unknown"
            )
        if not form.is_valid():
            messages = [
                f"{name}: {' '.join(map(str, errors))}"
                if name != "__all__"
                else " ".join(map(str, errors))
                for name, errors in form.errors.items()
            ]
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
    model: str,
    datetime_field: str,
    tenant_path: str | None = "tenant",
    queryset: Callable[[Tenant], QuerySet[Model]] | None = None,
    options: type[forms.Form] | None = None,
) -> TaskType[CleanupConfig]:
    """Register rows of ``model`` older than ``datetime_field`` as cleanup target ``key``.

    ``tenant_path`` is the lookup from the model to the tenant (``"tenant"``,
    ``"schedule__tenant"``); a target without one passes ``queryset(tenant)`` instead, which
    returns the rows that belong to that tenant.
    """
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
            tenant_path=tenant_path,
            queryset=queryset,
        )
    )


def autodiscover() -> None:
    """Import ``scheduling_tasks`` from every installed app."""
    autodiscover_modules("scheduling_tasks")
