"""A host project's own tenant model, for the tests that swap SCHEDULING_TENANT_MODEL."""

from django.db import models


class Organization(models.Model):
    title = models.CharField(max_length=100)
    slug = models.SlugField(unique=True)
    timezone = models.CharField(max_length=64, default="UTC")
    is_active = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.title
