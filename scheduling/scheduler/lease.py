"""The leader lease: one ``SchedulerLease`` row per scheduler group; its holder fires.

Standby replicas wait for it; a leader that cannot renew it in time stops firing at once
(the loop checks ``valid()`` before every pass: fencing).

Every time the row holds, and every comparison with it, is the database's clock (``Now()`` in
the SQL), never a replica's: replicas whose clocks disagree by minutes still agree on whether
the lease has expired. How long this process may act on it is measured on its own monotonic
clock, which no wall-clock skew or step affects.
"""

from __future__ import annotations

import contextlib
import time
from datetime import timedelta

from django.db import IntegrityError
from django.db.models import DateTimeField, ExpressionWrapper, Q
from django.db.models.functions import Now

from ..models import SchedulerLease


def _db_now_plus(seconds: float) -> ExpressionWrapper:
    """The database's current time plus ``seconds``, evaluated in the statement."""
    return ExpressionWrapper(Now() + timedelta(seconds=seconds), output_field=DateTimeField())


class LeaseLost(Exception):
    """The lease could not be renewed: another scheduler holds it."""


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
        with contextlib.suppress(IntegrityError):  # another replica created it just now
            SchedulerLease.objects.get_or_create(name=self.name)
        taken = (
            SchedulerLease.objects.filter(name=self.name)
            .filter(
                Q(holder=self.holder)
                | Q(holder="")
                | Q(expires_at__isnull=True)
                | Q(expires_at__lt=Now())
            )
            .update(
                holder=self.holder,
                acquired_at=Now(),
                renewed_at=Now(),
                expires_at=_db_now_plus(self.ttl),
            )
        )
        self.valid_until = started + self.ttl if taken else 0.0
        return bool(taken)

    def renew(self) -> bool:
        started = time.monotonic()
        renewed = SchedulerLease.objects.filter(name=self.name, holder=self.holder).update(
            renewed_at=Now(), expires_at=_db_now_plus(self.ttl)
        )
        self.valid_until = started + self.ttl if renewed else 0.0
        return bool(renewed)

    def release(self) -> None:
        self.valid_until = 0.0
        SchedulerLease.objects.filter(name=self.name, holder=self.holder).update(
            holder="", expires_at=Now()
        )
