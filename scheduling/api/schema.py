"""OpenAPI 3 schema (drf-spectacular): error responses, strict request bodies, shared settings.

The API's views carry ``APISchema``, so every operation documents the errors it can answer
(400 with field errors, 401, 403, 404) whatever the host project's ``DEFAULT_SCHEMA_CLASS``.
``SCHEMA_SETTINGS`` are applied when the schema is served (and by the tests that validate it):
request and response components are split, and request bodies forbid unknown properties,
which is what the serializers enforce.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.openapi import AutoSchema

from ..triggers import WEEKDAYS

if TYPE_CHECKING:
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.plumbing import ComponentRegistry
    from drf_spectacular.utils import Direction
    from rest_framework.request import Request

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


class APISchema(AutoSchema):
    """AutoSchema that documents the error responses of each operation."""

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
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "scheduling.api.schema.forbid_additional_properties",
    ],
    "ENUM_NAME_OVERRIDES": {
        "ScheduleStatusEnum": "scheduling.models.Status",
        "ScheduleKindEnum": "scheduling.models.Kind",
        "ReportFormatEnum": "scheduling.models.ReportFormat",
    },
}


def build_schema(request: Request | None = None, *, public: bool = True) -> OpenAPIObject:
    """Return the OpenAPI document of the project's API as the schema view serves it."""
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.settings import patched_settings

    with patched_settings(SCHEMA_SETTINGS):
        return SchemaGenerator().get_schema(request=request, public=public)
