"""PostgreSQL only: triggers that notify the scheduler of schedule changes (scheduling.notify)."""

from django.db import migrations

from scheduling.notify import CREATE_SQL, DROP_SQL


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE_SQL)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_SQL)


class Migration(migrations.Migration):
    dependencies = [
        ("scheduling", "0003_execution_time_index"),
    ]

    operations = [migrations.RunPython(create, drop, elidable=False)]
