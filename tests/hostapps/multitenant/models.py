"""A host on django-multitenant: ``Account`` is the tenant, ``Project`` a row of one.

Both are ``TenantModel``s: their ``TenantManager`` filters by the current tenant, when one is
set, and the tenant model gives the value to filter by (its ``tenant_value``).
"""

from django.db import models
from django_multitenant.models import TenantModel


class Account(TenantModel):
    name = models.CharField(max_length=100)
    slug = models.SlugField(unique=True)
    timezone = models.CharField(max_length=64, default="UTC")

    class TenantMeta:
        tenant_field_name = "id"

    def __str__(self) -> str:
        return self.name


class Project(TenantModel):
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="projects")
    name = models.CharField(max_length=100)

    class TenantMeta:
        tenant_field_name = "account_id"

    def __str__(self) -> str:
        return self.name
