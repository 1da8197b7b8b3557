"""PostgreSQL only: triggers that notify the scheduler of schedule changes (scheduling.scheduler.notify).

The SQL is frozen here: a migration must not change when the code it once imported moves on.
"""

from django.db import migrations

CHANNEL = "scheduling_changes"

# The function name is the channel's (scheduling.scheduler.notify.CHANNEL).
CREATE_SQL = f"""
CREATE OR REPLACE FUNCTION {CHANNEL}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER scheduling_schedule_changed
    AFTER INSERT OR DELETE ON scheduling_schedule
    FOR EACH STATEMENT EXECUTE FUNCTION {CHANNEL}();
CREATE TRIGGER scheduling_schedule_updated
    AFTER UPDATE ON scheduling_schedule
    FOR EACH ROW WHEN (OLD.updated_at IS DISTINCT FROM NEW.updated_at)
    EXECUTE FUNCTION {CHANNEL}();
CREATE TRIGGER scheduling_manual_run_queued
    AFTER INSERT ON scheduling_execution
    FOR EACH ROW WHEN (NEW.trigger = 'manual')
    EXECUTE FUNCTION {CHANNEL}();
"""

DROP_SQL = f"""
DROP TRIGGER IF EXISTS scheduling_manual_run_queued ON scheduling_execution;
DROP TRIGGER IF EXISTS scheduling_schedule_updated ON scheduling_schedule;
DROP TRIGGER IF EXISTS scheduling_schedule_changed ON scheduling_schedule;
DROP FUNCTION IF EXISTS {CHANNEL}();
"""


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
