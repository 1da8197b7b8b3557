"""The verbs of ``python manage.py scheduling``, as a plain class the command wraps.

``SchedulingCLI`` does the work of each verb; the management command only parses arguments.
Bad input raises ``CLIError`` (exit code 2, one line on stderr); a run that failed raises it
with exit code 1. The package reads in this order:

- ``scope``: who acts and on what (``--user``, ``--tenant``, ``--kind``, roles), and which
  schedule a verb means (by id, or by name: ``ScheduleName``); an id, a name or a tenant
  outside the scope is "not found", never "forbidden".
- ``fields``: a new schedule from ``add``'s flags, read as a schedules file reads its entries.
- ``verbs``: ``SchedulingCLI``, one method per verb.
- ``contract``: the JSON of every verb (``--format json``), written once in ``JSON_OUTPUT``;
  ``manage.py scheduling VERB --help`` shows it. Keys are only ever added.
- ``output``: ``rich`` tables and JSON encoding.
"""

from __future__ import annotations

from .contract import JSON_OUTPUT, describe_json
from .exceptions import CLIError
from .output import display_duration, display_time, json_default, one_line
from .scope import ScheduleName, ScheduleRef
from .verbs import SchedulingCLI, run_in_foreground

__all__ = [
    "JSON_OUTPUT",
    "CLIError",
    "ScheduleName",
    "ScheduleRef",
    "SchedulingCLI",
    "describe_json",
    "display_duration",
    "display_time",
    "json_default",
    "one_line",
    "run_in_foreground",
]
