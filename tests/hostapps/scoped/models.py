"""A host on django-scopes, shaped like pretix: the tenant model is itself scoped.

``Event`` (the tenant) is scoped by its organizer, a dimension the scheduler never enters: every
query the scheduler makes on it outside a handler would fail through its default manager.
``Ticket`` is scoped by the event, the dimension the handlers run in
(``SCHEDULING_SCOPES_DIMENSION = "event"``).
"""

from django.db import models
from django.utils import timezone
from django_scopes import ScopedManager


class Event(models.Model):
    organizer = models.CharField(max_length=50)
    name = models.CharField(max_length=100)
    slug = models.SlugField(unique=True)
    # Attributes the scheduling app reads when a tenant model has them.
    timezone = models.CharField(max_length=64, default="UTC")
    is_active = models.BooleanField(default=True)

    objects = ScopedManager(organizer="organizer")

    def __str__(self) -> str:
        return self.name


class Ticket(models.Model):
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="tickets")
    holder = models.CharField(max_length=100)
    sold_at = models.DateTimeField(default=timezone.now)

    objects = ScopedManager(event="event")

    def __str__(self) -> str:
        return self.holder
