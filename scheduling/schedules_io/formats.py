"""The schedules file: its format, and reading and writing it as YAML or JSON.

The file format (version 1) is a list of entries; an entry's identity is its tenant, kind and
name (unique together), so a file can be applied again and again::

    version: 1
    schedules:
    - tenant: acme                # the tenant's slug (its id for a tenant model without one)
      kind: scan                  # scan | report | cleanup
      name: Homepage              # unique per tenant and kind
      scan_type: http
      target: https://example.com/
      trigger_type: cron
      cron_expression: '*/5 * * * *'
      timezone: Europe/Berlin
      options: {expected_status: 200}
      depends_on:                 # schedules of the same tenant, any kind
      - {kind: report, name: Nightly}

Every configuration field of the entry's kind may appear under its model field name
(``description``, ``enabled``, ``paused_until``, ``interval_seconds``, ``run_at``,
``start_at``, ``end_at``, ``jitter_seconds``, ``timeout_seconds``, ``max_retries``,
``overlap``, ``report_type``, ``format``, ``recipients``, ``cleanup_target``,
``retain_days``, ``calendar_every`` ...). A field left out takes the model's default, also
when the entry updates an existing schedule: the file is the whole truth about the schedules
it names. Export leaves out the fields that are at their default. What the scheduler keeps
(``next_run_at``, ``run_count`` ...), timestamps and ``legacy_day_rule`` are not part of a
schedule's configuration.

Datetimes are ISO 8601 strings; export writes them in UTC with the offset. A datetime without
an offset is read in the entry's ``timezone`` (else the tenant's). A ``depends_on`` item may
also be a plain name: a schedule of the same kind.

A calendar schedule's ``calendar_time`` is a wall-clock time in its time zone, ``'09:30'`` or
``'09:30:00'``, quoted (YAML 1.1 reads an unquoted 12:30 as a number; export quotes it); its
``calendar_weekdays`` is ``mon,thu`` or a list ``[mon, thu]``::

    - tenant: acme
      kind: report
      name: Fortnightly
      report_type: execution_summary
      trigger_type: calendar
      calendar_every: 2
      calendar_unit: week
      calendar_time: '09:30:00'
      calendar_weekdays: mon,thu

Reading keeps the line of each entry and of each of its fields (YAML only), so that a problem
can name where it is.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..exceptions import SchedulingError

FORMAT_VERSION = 1
FILE_FORMATS = ("yaml", "json")


class ScheduleFileError(SchedulingError):
    """A schedules file that cannot be read at all (syntax, structure)."""


# -- writing --------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Block style; multi-line text as literal blocks."""


# Text that a YAML 1.1 reader may take for a base-60 number ("09:30:00", "12:30"): quoted,
# whatever PyYAML itself would read (its pattern wants no leading zero; others' do not).
_SEXAGESIMAL = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else ("'" if _SEXAGESIMAL.fullmatch(value) else None)
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump(document: dict[str, Any], file_format: str = "yaml") -> str:
    """Serialize a file document as YAML or JSON."""
    if file_format == "json":
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    return yaml.dump(
        document,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    )


# -- reading --------------------------------------------------------------------------------


@dataclass
class Document:
    """A parsed schedules file, with the line numbers of its entries where known."""

    data: Any  # whatever the file holds; the planner checks its structure
    entry_lines: list[int | None] = field(default_factory=list)
    field_lines: list[dict[str, int]] = field(default_factory=list)

    def line(self, index: int | None, field_name: str | None = None) -> int | None:
        """Return the line of entry ``index`` (of its ``field_name`` if known), or None."""
        if index is None or index >= len(self.entry_lines):
            return None
        if field_name and index < len(self.field_lines):
            found = self.field_lines[index].get(field_name)
            if found:
                return found
        return self.entry_lines[index]


def guess_format(name: str, text: str) -> str:
    """Return "json" or "yaml" for a file name (its extension), else its content."""
    lowered = name.lower()
    if lowered.endswith(".json"):
        return "json"
    if lowered.endswith((".yaml", ".yml")):
        return "yaml"
    return "json" if text.lstrip().startswith(("{", "[")) else "yaml"


def parse(text: str, *, file_format: str) -> Document:
    """Parse the text of a schedules file; raise ``ScheduleFileError`` with its position."""
    if file_format == "json":
        try:
            return Document(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ScheduleFileError(
                f"line {exc.lineno} column {exc.colno}: not valid JSON: {exc.msg}"
            ) from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScheduleFileError(f"{where}not valid YAML: {problem}") from None
    finally:
        loader.dispose()
    document = Document(data)
    entries = _entries_node(node)
    if entries is not None:
        for item in entries.value:
            document.entry_lines.append(item.start_mark.line + 1)
            lines: dict[str, int] = {}
            if isinstance(item, yaml.MappingNode):
                for key, _value in item.value:
                    if isinstance(key, yaml.ScalarNode):
                        lines.setdefault(str(key.value), key.start_mark.line + 1)
            document.field_lines.append(lines)
    return document


def _entries_node(node: yaml.Node | None) -> yaml.SequenceNode | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for key, value in node.value:
        if isinstance(key, yaml.ScalarNode) and key.value == "schedules":
            return value if isinstance(value, yaml.SequenceNode) else None
    return None
