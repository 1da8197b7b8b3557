"""Request parsing that turns every malformed body into a 400."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_DEPTH = 32


def _depth(value: Any, limit: int) -> int:
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

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(_("JSON parse error - nested too deeply.")) from None
        if _depth(data, MAX_DEPTH) > MAX_DEPTH:
            raise ParseError(_("JSON parse error - nested more than %d levels.") % MAX_DEPTH)
        return data
