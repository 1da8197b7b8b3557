"""The host's tenants: django-tenants' schema-per-tenant model and its domains."""

from django.db import models
from django_tenants.models import DomainMixin, TenantMixin


class Client(TenantMixin):
    name = models.CharField(max_length=100)
    # Attributes the scheduling app reads when a tenant model has them.
    timezone = models.CharField(max_length=64, default="UTC")
    is_active = models.BooleanField(default=True)

    auto_create_schema = True

    def __str__(self) -> str:
        return self.name


class Domain(DomainMixin):
    pass
