"""A tenant app: its table exists in every tenant's schema, not in public."""

from django.db import models


class Note(models.Model):
    text = models.CharField(max_length=100)

    def __str__(self) -> str:
        return self.text
