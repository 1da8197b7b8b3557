"""What a registered handler receives besides its schedule."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils import timezone


@dataclass
class ExecutionContext:
    """The run-time context of one execution: handlers read it, never the scheduler."""

    execution: Any
    schedule: Any
    tenant: Any
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
