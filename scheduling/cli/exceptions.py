"""The one error of the command line, which the management command turns into an exit code."""

from __future__ import annotations

from ..exceptions import SchedulingError


class CLIError(SchedulingError):
    """Bad input at the command line (exit code 2), or a failed run (exit code 1)."""

    def __init__(self, message: str, returncode: int = 2) -> None:
        super().__init__(message)
        self.returncode = returncode
