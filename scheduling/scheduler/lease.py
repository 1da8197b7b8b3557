"""The leader lease: one ``SchedulerLease`` row per scheduler group; its holder fires.

Standby replicas wait for it; a leader that cannot renew it in time stops firing at once
(the loop checks ``valid()`` before every pass: fencing).
"""

from __future__ import annotations

import contextlib
import time
from datetime import timedelta

from django.db import IntegrityError
from django.db.models import Q
from django.utils import timezone

from ..models import SchedulerLease


class Lease:
    """The leader lease of one scheduler group, held in a ``SchedulerLease`` row."""

    def __init__(self, *, name: str, holder: str, ttl: float) -> None:
        self.name = name
        self.holder = holder
        self.ttl = ttl
        # Monotonic deadline until which this process may act as leader. It is set from the
        # local clock *before* the renewal query, so it never outlives the row's expiry.
        self.valid_until = 0.0

    def valid(self) -> bool:
        return time.monotonic() < self.valid_until

    def acquire(self) -> bool:
        """Take the lease if it is free, expired or ours; return whether we hold it."""
        started = time.monotonic()
        now = timezone.now()
        with contextlib.suppress(IntegrityError):  # another replica created it just now
            SchedulerLease.objects.get_or_create(name=self.name)
        taken = (
            SchedulerLease.objects.filter(name=self.name)
            .filter(
                Q(holder=self.holder)
                | Q(holder="")
                | Q(expires_at__isnull=True)
                | Q(expires_at__lt=now)
            )
            .update(
                holder=self.holder,
                acquired_at=now,
                renewed_at=now,
                expires_at=now + timedelta(seconds=self.ttl),
            )
        )
        self.valid_until = started + self.ttl if taken else 0.0
        return bool(taken)

    def renew(self) -> bool:
        started = time.monotonic()
        now = timezone.now()
        renewed = SchedulerLease.objects.filter(name=self.name, holder=self.holder).update(
            renewed_at=now, expires_at=now + timedelta(seconds=self.ttl)
        )
        self.valid_until = started + self.ttl if renewed else 0.0
        return bool(renewed)

    def release(self) -> None:
        self.valid_until = 0.0
        SchedulerLease.objects.filter(name=self.name, holder=self.holder).update(
            holder="", expires_at=timezone.now()
        )
