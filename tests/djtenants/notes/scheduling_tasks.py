"""The host's task type: reads the tenant app's rows, as a report would."""

from django.db import connection

from scheduling.registry import task_type

from .models import Note


@task_type("count_notes", label="Count notes")
def count_notes(task, context) -> dict:
    return {
        "schema": connection.schema_name,
        "notes": sorted(Note.objects.values_list("text", flat=True)),
    }
