"""What a registered handler receives besides its schedule."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.utils import timezone

if TYPE_CHECKING:
    from django.db.models import Model


@dataclass
class ExecutionContext:
    """The run-time context of one execution: handlers read it, never the scheduler."""

    # The context sits below the models (tests/test_layering.py) and cannot name them. The
    # execution (an Execution) stays Any so that a handler can store it in a foreign key
    # (ReportArtifact.execution); a handler gets its schedule, typed, as its first argument.
    execution: Any
    schedule: Model
    tenant: Model
    scheduled_for: datetime
    timeout: float
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("scheduling.task"))
    _started: float = field(default_factory=time.monotonic)

    @property
    def remaining(self) -> float:
        """Seconds left before the execution's timeout."""
        return max(0.0, self.timeout - (time.monotonic() - self._started))

    def now(self) -> datetime:
        return timezone.now()
