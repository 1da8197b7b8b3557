"""The app's own exceptions; the edges turn them into form errors, 400s and exit code 2."""

from __future__ import annotations


class SchedulingError(Exception):
    """Base class of the app's errors."""


class UnknownTaskType(SchedulingError, LookupError):
    """A scan type, report type or cleanup target key that no code registered."""


class InvalidTrigger(SchedulingError, ValueError):
    """A trigger configuration that cannot produce fire times."""


class TargetNotAllowed(SchedulingError):
    """A scan target that resolves to an address the target policy forbids."""


class ExecutionTimeout(SchedulingError):
    """An execution ran past its schedule's timeout."""


class ExecutionCancelled(SchedulingError):
    """An operator cancelled an execution while its handler ran."""


class StateConflict(SchedulingError):
    """An action the object's current state does not allow (cancel a finished run): 409."""
