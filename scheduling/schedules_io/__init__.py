"""Schedules as code: export schedules to YAML or JSON, validate such a file, import it.

``formats`` holds the file format and its syntax, ``export`` turns schedules into entries,
``plan`` reads a file against the database into an ``ImportPlan`` (with its ``Problem``\\ s),
``apply`` writes a valid plan, and ``problems`` checks the stored schedules the same way.
Callers import from here.
"""

from __future__ import annotations

from .apply import apply_plan
from .export import config_fields, export_entry, export_schedules
from .formats import (
    FILE_FORMATS,
    FORMAT_VERSION,
    Document,
    ScheduleFileError,
    dump,
    guess_format,
    parse,
)
from .plan import Change, ImportPlan, Planner, plan_import
from .problems import (
    NEVER_FIRES_AGAIN,
    Problem,
    never_fires_again,
    problems_from,
    validate_database,
)
from .values import import_value

__all__ = [
    "FILE_FORMATS",
    "FORMAT_VERSION",
    "NEVER_FIRES_AGAIN",
    "Change",
    "Document",
    "ImportPlan",
    "Planner",
    "Problem",
    "ScheduleFileError",
    "apply_plan",
    "config_fields",
    "dump",
    "export_entry",
    "export_schedules",
    "guess_format",
    "import_value",
    "never_fires_again",
    "parse",
    "plan_import",
    "problems_from",
    "validate_database",
]
