"""OpenAPI 3 schema (drf-spectacular): error responses, strict request bodies, shared settings.

The API's views carry ``APISchema``, so every operation documents the errors it can answer
(400 with field errors, 401, 403, 404) whatever the host project's ``DEFAULT_SCHEMA_CLASS``,
and each choice set of the models is one named component (no enum warnings in the host's own
schema either). ``SCHEMA_SETTINGS`` are applied when the schema is served (``docs``, and the
tests that validate it): request and response components are split, and request bodies
forbid unknown properties, which is what the serializers enforce.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

from django.db.models import TextChoices
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import (
    ResolvedComponent,
    append_meta,
    build_choice_description_list,
    safe_ref,
)
from rest_framework import serializers

from ..models import (
    AuditAction,
    CalendarUnit,
    DstFoldPolicy,
    DstGapPolicy,
    Kind,
    Overlap,
    ReportFormat,
    Status,
    TriggerKind,
    TriggerType,
)
from ..triggers import WEEKDAYS

if TYPE_CHECKING:
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.plumbing import ComponentRegistry
    from drf_spectacular.utils import Direction

# An OpenAPI object, a JSON object as drf-spectacular types it.
OpenAPIObject: TypeAlias = dict[str, Any]

DETAIL_SCHEMA = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
VALIDATION_SCHEMA = {
    "type": "object",
    "description": (
        "Field name -> list of messages; `non_field_errors` for the object as a whole; "
        "`detail` for a body that is not valid JSON."
    ),
    "additionalProperties": {},
}
ERRORS = {
    "400": ("Invalid input: the messages name the fields.", VALIDATION_SCHEMA),
    "401": ("Not authenticated.", DETAIL_SCHEMA),
    "403": ("Authenticated, but the role in this tenant does not allow it.", DETAIL_SCHEMA),
    "404": ("Not found, or another tenant's.", DETAIL_SCHEMA),
    "409": ("The object's state does not allow this action.", DETAIL_SCHEMA),
}


# The choice sets of the models, each one named component whatever field shows it. Left to
# drf-spectacular's enum hook, a choice set shown under two field names (``kind`` and
# ``schedule_kind``) gets two names and a warning (drf_spectacular.W001, in the host project's
# ``check --deploy`` too) unless the host's ENUM_NAME_OVERRIDES name it.
ENUMS: dict[str, type[TextChoices]] = {
    "ScheduleKindEnum": Kind,
    "ScheduleStatusEnum": Status,
    "ReportFormatEnum": ReportFormat,
    "TriggerTypeEnum": TriggerType,
    "CalendarUnitEnum": CalendarUnit,
    "OverlapEnum": Overlap,
    "DstGapPolicyEnum": DstGapPolicy,
    "DstFoldPolicyEnum": DstFoldPolicy,
    "TriggerEnum": TriggerKind,
    "ActionEnum": AuditAction,
}
_ENUM_BY_VALUES = {frozenset(choices.values): name for name, choices in ENUMS.items()}
BLANK_ENUM = ResolvedComponent(
    name="BlankEnum", type=ResolvedComponent.SCHEMA, object="BlankEnum", schema={"enum": [""]}
)


def enum_component(field: serializers.ChoiceField) -> ResolvedComponent | None:
    """Return the named component of the choice set of ``field``, if it is one of ``ENUMS``."""
    values = frozenset(value for value in field.choices if value not in ("", None))
    name = _ENUM_BY_VALUES.get(values)
    if name is None:
        return None
    choices = ENUMS[name]
    schema = {
        "type": "string",
        "enum": list(choices.values),
        "description": build_choice_description_list(choices.choices),
    }
    return ResolvedComponent(name=name, type=ResolvedComponent.SCHEMA, object=name, schema=schema)


class APISchema(AutoSchema):
    """AutoSchema that documents the error responses of each operation and names the enums."""

    def _map_serializer_field(
        self, field: serializers.Field, direction: Direction, bypass_extensions: bool = False
    ) -> OpenAPIObject | None:
        component = None
        if isinstance(field, serializers.ChoiceField) and not isinstance(
            field, serializers.MultipleChoiceField
        ):
            component = enum_component(field)
        if component is None or not isinstance(field, serializers.ChoiceField):
            return super()._map_serializer_field(field, direction, bypass_extensions)
        self.registry.register_on_missing(component)
        refs = [component.ref]
        if field.allow_blank:
            self.registry.register_on_missing(BLANK_ENUM)
            refs.append(BLANK_ENUM.ref)
        schema = {"oneOf": refs} if len(refs) > 1 else refs[0]
        meta = self._get_serializer_field_meta(field, direction)
        return safe_ref(append_meta(dict(schema), meta))

    def get_operation(
        self,
        path: str,
        path_regex: str,
        path_prefix: str,
        method: str,
        registry: ComponentRegistry,
    ) -> OpenAPIObject | None:
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        responses = operation.setdefault("responses", {})
        has_query = any(p.get("in") == "query" for p in operation.get("parameters", []))
        has_path = any(p.get("in") == "path" for p in operation.get("parameters", []))
        codes = ["401", "403"]
        if self.method != "DELETE" and (self.method != "GET" or has_query):
            codes.append("400")
        if has_path or self._is_list_view():
            codes.append("404")  # another tenant's id; on lists, a page or cursor past the end
        if getattr(self.view, "action", None) in getattr(self.view, "conflict_actions", ()):
            codes.append("409")
        for code in sorted(codes):
            description, schema = ERRORS[code]
            responses.setdefault(
                code,
                {"description": description, "content": {"application/json": {"schema": schema}}},
            )
        return operation


class TenantFieldExtension(OpenApiSerializerFieldExtension):
    target_class = "scheduling.api.fields.TenantField"

    def map_serializer_field(self, auto_schema: AutoSchema, direction: Direction) -> OpenAPIObject:
        if direction == "request":
            return {
                "oneOf": [
                    {"type": "integer", "minimum": 1},
                    {"type": "string", "minLength": 1, "maxLength": 100},
                ],
                "description": "The tenant's id or slug; fixed once created.",
            }
        return {"type": "integer", "description": "The tenant's id."}


class RegisteredKeyFieldExtension(OpenApiSerializerFieldExtension):
    target_class = "scheduling.api.fields.RegisteredKeyField"

    def map_serializer_field(self, auto_schema: AutoSchema, direction: Direction) -> OpenAPIObject:
        keys = self.target.registry.keys()
        schema: OpenAPIObject = {"type": "string", "maxLength": 64}
        if direction == "request" and keys:
            # Responses may still hold a key whose code has since been removed.
            schema["enum"] = keys
        schema["description"] = f"A registered {self.target.registry.noun}: {', '.join(keys)}."
        return schema


class WallTimeFieldExtension(OpenApiSerializerFieldExtension):
    target_class = "scheduling.api.fields.WallTimeField"

    def map_serializer_field(self, auto_schema: AutoSchema, direction: Direction) -> OpenAPIObject:
        # Not ``format: time``: that is RFC 3339's, with an offset; this is a wall-clock time.
        # (No ``example``: schemathesis cannot combine schema examples with its strategies.)
        if direction == "request":
            return {
                "type": "string",
                "pattern": r"^([01]?[0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$",
            }
        return {"type": "string", "pattern": r"^[0-2][0-9]:[0-5][0-9]:[0-5][0-9]$"}


class WeekdaysFieldExtension(OpenApiSerializerFieldExtension):
    target_class = "scheduling.api.fields.WeekdaysField"

    def map_serializer_field(self, auto_schema: AutoSchema, direction: Direction) -> OpenAPIObject:
        text = {"type": "string", "maxLength": 64}
        if direction == "request":
            names = {"type": "array", "items": {"type": "string", "enum": list(WEEKDAYS)}}
            return {"oneOf": [text, names]}
        return text


def forbid_additional_properties(
    result: OpenAPIObject, generator: SchemaGenerator, **kwargs: object
) -> OpenAPIObject:
    """Mark request bodies as closed: the serializers reject unknown keys with a 400."""
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request") and component.get("type") == "object":
            component["additionalProperties"] = False
    return result


SCHEMA_SETTINGS: dict[str, object] = {
    # The app's document, whatever the host project calls its own.
    "TITLE": "Scheduling API",
    "DESCRIPTION": "Tenant-scoped schedules, their executions and report artifacts.",
    "VERSION": "1.0.0",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "scheduling.api.schema.forbid_additional_properties",
    ],
}
