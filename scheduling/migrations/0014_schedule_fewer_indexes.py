# Two indexes fewer on schedules: (tenant, kind, enabled) and the tenant key's own both lead
# with the tenant, as the unique (tenant, kind, name) index does. Every move of next_run_at (a
# fire, a full sync's write) wrote an entry into each of them: a full sync of a million
# schedules on PostgreSQL spent two fifths of its next_run_at writes there.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('scheduling', '0013_execution_tenant_status_index'),
        migrations.swappable_dependency(settings.SCHEDULING_TENANT_MODEL),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='schedule',
            name='schedule_tenant_kind_idx',
        ),
        migrations.AlterField(
            model_name='schedule',
            name='tenant',
            field=models.ForeignKey(blank=True, db_index=False, help_text='Empty: a system schedule, which belongs to no tenant.', null=True, on_delete=django.db.models.deletion.CASCADE, related_name='schedules', to=settings.SCHEDULING_TENANT_MODEL, verbose_name='tenant'),
        ),
    ]
