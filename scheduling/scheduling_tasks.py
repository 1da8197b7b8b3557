"""The built-in scan types, report types and cleanup targets (autodiscovered)."""

from .builtin import cleanup, reports, scans  # noqa: F401
