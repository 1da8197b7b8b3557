"""Log lines about an execution carry its fields as attributes of the record.

A line about an execution, the scheduler's own ("Execution 12 failed ...") and a handler's
through ``context.logger``, has these attributes besides its message (``extra``): a JSON
formatter writes them as fields, and log-based alerting, Sentry's logging integration or a log
search can select on them without parsing the message.

==================  ===========================================================================
``execution_id``    the execution's id
``schedule_id``     its schedule's id (None once the schedule is deleted)
``tenant_id``       its tenant's id (None for a system schedule)
``kind``            ``scan``, ``report``, ``cleanup`` or ``task``
``type_key``        the registered type (``http``, ``summary``, ...; "" once the schedule is
                    deleted)
``status``          ``running`` in a handler's lines; the outcome in the scheduler's
``trigger``         ``schedule``, ``manual``, ``retry`` or ``dependency``
``attempt``         1 for the first run of an occurrence, 2 for its first retry, ...
``scheduled_for``   the occurrence, ISO 8601 in UTC
``duration_ms``     how long the handler ran (None before it finished or if it never ran)
``lateness_ms``     how long after ``scheduled_for`` it started (None before it started)
``worker``          the process that ran it (``host:pid``)
==================  ===========================================================================

The level of the line that records an outcome follows the outcome (``OUTCOME_LEVELS``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from django.utils import translation

from .kinds import KINDS
from .models import Execution, Schedule, Status

if TYPE_CHECKING:
    _Adapter = logging.LoggerAdapter[logging.Logger]
else:
    _Adapter = logging.LoggerAdapter

FIELDS = (
    "execution_id",
    "schedule_id",
    "tenant_id",
    "kind",
    "type_key",
    "status",
    "trigger",
    "attempt",
    "scheduled_for",
    "duration_ms",
    "lateness_ms",
    "worker",
)

# The level of the line that records each outcome: a run that did what it was meant to, or
# was kept from running on purpose, is INFO; one that did not run when it should have, or was
# cut short by a lost worker (and is retried), is WARNING; a failure of the handler is ERROR.
OUTCOME_LEVELS: dict[str, int] = {
    Status.SUCCEEDED: logging.INFO,
    Status.SKIPPED: logging.INFO,
    Status.CANCELLED: logging.INFO,
    Status.MISSED: logging.WARNING,
    Status.INTERRUPTED: logging.WARNING,
    Status.FAILED: logging.ERROR,
    Status.TIMED_OUT: logging.ERROR,
}

# The handlers' logger: ``context.logger`` writes to it, with the execution's fields.
TASK_LOGGER = "scheduling.task"


def type_key_of(schedule: Schedule | None) -> str:
    """Return the registered type of ``schedule`` ("" without one).

    Reads the concrete kind's row, which the run has loaded already (``get_kind_object``
    caches it); otherwise one query.
    """
    if schedule is None:
        return ""
    spec = KINDS.get(schedule.kind)
    if spec is None:
        return ""
    return spec.type_key(schedule.get_kind_object())


def execution_fields(execution: Execution, **overrides: Any) -> dict[str, Any]:
    """Return the attributes of a log line about ``execution`` (``FIELDS``)."""
    schedule = execution.schedule if execution.schedule_id else None
    lateness = execution.lateness
    fields: dict[str, Any] = {
        "execution_id": execution.pk,
        "schedule_id": execution.schedule_id,
        "tenant_id": execution.tenant_id,
        "kind": execution.schedule_kind,
        "type_key": type_key_of(schedule),
        "status": execution.status,
        "trigger": execution.trigger,
        "attempt": execution.attempt,
        "scheduled_for": execution.scheduled_for.isoformat() if execution.scheduled_for else None,
        "duration_ms": execution.duration_ms,
        "lateness_ms": round(lateness.total_seconds() * 1000) if lateness is not None else None,
        "worker": execution.worker,
    }
    fields.update(overrides)
    return fields


class ExecutionLogger(_Adapter):
    """A logger whose every line carries an execution's fields (``context.logger``).

    The fields are added to the ``extra`` a call passes (the call's own keys win), so a
    handler's ``context.logger.info("fetched %d rows", n, extra={"rows": n})`` keeps both.
    Given an ``execution`` instead of ``extra``, the fields are read from it when first
    needed: most handlers never log, and every run gets a logger.
    """

    def __init__(
        self,
        logger: logging.Logger,
        extra: MutableMapping[str, Any] | None = None,
        *,
        execution: Execution | None = None,
    ) -> None:
        self._execution = execution
        self._extra: MutableMapping[str, Any] | None = None
        super().__init__(logger, extra)

    @property  # type: ignore[override]
    def extra(self) -> MutableMapping[str, Any] | None:
        if self._extra is None and self._execution is not None:
            self._extra = execution_fields(self._execution, status=Status.RUNNING)
        return self._extra

    @extra.setter
    def extra(self, value: MutableMapping[str, Any] | None) -> None:
        self._extra = value

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        return msg, kwargs


def execution_logger(execution: Execution, name: str = TASK_LOGGER) -> ExecutionLogger:
    """Return logger ``name`` writing with ``execution``'s fields, as it is running."""
    return ExecutionLogger(_logger(name), execution=execution)


@functools.cache
def _logger(name: str) -> logging.Logger:
    # ``logging.getLogger`` takes the logging module's lock: every worker asked it for every
    # execution. A name's logger is one object for the life of the process (configuring
    # logging again changes it, does not replace it).
    return logging.getLogger(name)


def log_outcome(
    logger: logging.Logger, execution: Execution, *, language: str | None = None
) -> None:
    """Log the line that records ``execution``'s outcome, at the outcome's level.

    ``language``: the active language, where the caller knows it (a batch of lines asks
    once: each lookup goes through a context-local variable).
    """
    level = OUTCOME_LEVELS.get(execution.status, logging.INFO)
    if not logger.isEnabledFor(level):
        return
    name = execution.schedule_name
    error = f": {execution.error[:200]}" if execution.error else ""
    took = f" after {execution.duration_ms} ms" if execution.duration_ms is not None else ""
    logger.log(
        level,
        "Execution %s of %r (attempt %s) %s%s%s",
        execution.pk,
        name,
        execution.attempt,
        _status_word(execution.status, language),
        took,
        error,
        extra=execution_fields(execution),
    )


_STATUS_WORDS: dict[tuple[str | None, str], str] = {}


def _status_word(status: str, language: str | None = None) -> str:
    """The status's label in lower case, in the active language (translated once each)."""
    key = (language or translation.get_language(), status)
    word = _STATUS_WORDS.get(key)
    if word is None:
        word = _STATUS_WORDS[key] = str(Status(status).label).lower()
    return word
