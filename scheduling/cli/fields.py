"""A new schedule from the command line: ``add``'s flags, read as a schedules file reads them.

``add`` takes the fields of one entry of a schedules file: a few as flags of their own
(``--type``, ``--target``, ``--every``, ``--cron``...) and any other as ``--set FIELD=VALUE``.
Each value is read by ``schedules_io.import_value``, as import reads the file's, so the same
text means the same thing in both; the schedule is then validated and saved by
``services.create_schedule``, as the API's. Every problem is collected before anything is
saved, so that one run of the command names them all.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models

from .. import schedules_io
from ..kinds import KINDS, KindSpec
from ..models import Schedule, same_tenant

if TYPE_CHECKING:
    from tenants.models import Tenant

TEXT_FIELDS = (models.CharField, models.TextField)


def read_text_value(model_field: models.Field, text: str, *, zone: str) -> Any:
    """Return ``--set``'s ``text`` for ``model_field``; raise ``ValidationError``.

    Free text stays text (a name of digits stays a name); any other value is read as JSON
    when it parses (``5``, ``true``, ``null``, ``{"a": 1}``), else as text (a date, a time, a
    choice), and then held to the field's type as in a schedules file.
    """
    value: Any = text
    if not (isinstance(model_field, TEXT_FIELDS) and not model_field.choices):
        try:
            value = json.loads(text)
        except ValueError:
            value = text
    return schedules_io.import_value(model_field, value, zone=zone)


@dataclass
class NewSchedule:
    """The schedule ``add`` builds: its field values and dependencies, and what is wrong."""

    spec: KindSpec
    tenant: Tenant | None
    name: str
    values: dict[str, Any] = field(default_factory=dict)
    depends_on: list[Schedule] = field(default_factory=list)
    errors: dict[str, list[str]] = field(default_factory=dict)

    def error(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)


def build_schedule(
    *,
    spec: KindSpec,
    tenant: Tenant | None,
    name: str,
    values: Mapping[str, Any],
    text_values: Iterable[tuple[str, str]] = (),
    options: Mapping[str, Any] | None = None,
    depends_on: Iterable[str] = (),
) -> NewSchedule:
    """Read ``add``'s input for a schedule of kind ``spec`` in ``tenant`` (None: the system).

    ``values`` come from flags of their own, already typed (``type`` names the kind's type
    field); ``text_values`` are ``--set`` pairs; ``options`` are merged over an ``options`` that
    ``--set`` gave; ``depends_on`` holds ``KIND/NAME`` or ``NAME`` (of this kind) in the tenant.
    Problems are keyed by field in ``errors``; nothing is saved.
    """
    new = NewSchedule(spec=spec, tenant=tenant, name=name)
    fields = {f.name: f for f in schedules_io.config_fields(spec.model)}
    given = {spec.type_field if key == "type" else key: value for key, value in values.items()}
    for key, value in given.items():
        if key not in fields:
            new.error(key, f"a {spec.kind} has no {key}")
        else:
            new.values[key] = value
    text = list(text_values)
    zone = _zone(new.values, text, tenant)
    for key, raw in text:
        if key in given:
            new.error(key, "given twice: by its own flag and by --set")
        elif key not in fields:
            new.error(key, f"a {spec.kind} has no field {key!r}")
        else:
            try:
                new.values[key] = read_text_value(fields[key], raw, zone=zone)
            except ValidationError as exc:
                for message in exc.messages:
                    new.error(key, message)
    if options:
        current = new.values.get("options") or {}
        if "options" not in fields:
            new.error("options", f"a {spec.kind} has no options")
        elif not isinstance(current, dict):
            new.error("options", "--set options= must be a JSON object to add --option to it")
        else:
            new.values["options"] = {**current, **options}
    for item in depends_on:
        dependency = _find_dependency(spec, tenant, item)
        if dependency is None:
            new.error("depends_on", f"depends on {item}, which does not exist")
        else:
            new.depends_on.append(dependency)
    return new


def _zone(values: Mapping[str, Any], text: list[tuple[str, str]], tenant: Tenant | None) -> str:
    """The zone a date and time without an offset is read in: the schedule's, else the tenant's."""
    given = values.get("timezone") or next((v for k, v in text if k == "timezone"), "")
    return str(given or getattr(tenant, "timezone", "") or "UTC")


def _find_dependency(spec: KindSpec, tenant: Tenant | None, item: str) -> Schedule | None:
    kind, slash, name = item.partition("/")
    if not slash or kind not in KINDS:
        kind, name = spec.kind, item
    return Schedule.objects.filter(
        same_tenant(tenant.pk if tenant is not None else None), kind=kind, name=name
    ).first()


def merge_errors(new: NewSchedule, exc: ValidationError | None) -> ValidationError:
    """Return ``new``'s reading errors with the validation's, leaving out what reading explains.

    A field that could not be read keeps its default for validation, whose message about that
    default would only confuse.
    """
    errors = {name: list(messages) for name, messages in new.errors.items()}
    if exc is not None:
        for name, messages in exc.message_dict.items():
            if name not in new.errors or name == NON_FIELD_ERRORS:
                errors.setdefault(name, []).extend(messages)
    return ValidationError(errors)
