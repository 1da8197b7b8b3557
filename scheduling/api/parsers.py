"""Request parsing that turns every malformed body into a 400."""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

from django.utils.translation import gettext as _
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import JSONParser
from rest_framework.settings import api_settings

from ..validators import has_null_character

MAX_DEPTH = 32


def _depth(value: object, limit: int) -> int:
    """Return the nesting depth of ``value``, stopping once past ``limit``."""
    depth, level = 0, [value]
    while level and depth <= limit:
        depth += 1
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
    return depth


class StrictJSONParser(JSONParser):
    """JSON, nested at most ``MAX_DEPTH`` levels (deeper input exhausts the recursion)."""

    def parse(
        self,
        stream: IO[bytes],
        media_type: str | None = None,
        parser_context: Mapping[str, object] | None = None,
    ) -> Any:  # any JSON value (the stubs say dict); the serializer rejects the wrong ones
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(_("JSON parse error - nested too deeply.")) from None
        if _depth(data, MAX_DEPTH) > MAX_DEPTH:
            raise ParseError(_("JSON parse error - nested more than %d levels.") % MAX_DEPTH)
        if has_null_character(data):
            # Name the fields, like any other validation error; a key of the body itself with
            # a NUL in it is a "non_field_errors" problem.
            message = _("Null characters are not allowed.")
            if isinstance(data, dict):
                fields = {
                    key if "\x00" not in key else api_settings.NON_FIELD_ERRORS_KEY: [message]
                    for key, value in data.items()
                    if has_null_character([key, value])
                }
            else:
                fields = {api_settings.NON_FIELD_ERRORS_KEY: [message]}
            raise ValidationError(fields)
        return data
