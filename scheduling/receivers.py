"""Receivers the app connects in ``AppConfig.ready()``."""

from __future__ import annotations

from typing import Any

from .models import Schedule, ScheduleDeletion


def record_schedule_deletion(sender: Any, instance: Any, **kwargs: Any) -> None:
    """Leave a tombstone so the scheduler drops the job without waiting for a full sync."""
    if isinstance(instance, Schedule) and type(instance) is Schedule and instance.pk:
        ScheduleDeletion.objects.create(schedule_id=instance.pk)
