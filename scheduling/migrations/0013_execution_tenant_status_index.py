# A tenant's rows of one status by index (the admin's capped count for staff); the index it
# replaces led with the same column and still serves the retention purge.

from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('scheduling', '0012_execution_tenant_finished_index'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        migrations.swappable_dependency(settings.SCHEDULING_TENANT_MODEL),
    ]

    operations = [
        migrations.AddIndex(
            model_name='execution',
            index=models.Index(fields=['tenant', 'status', 'finished_at'], name='execution_tenant_status_idx'),
        ),
        migrations.RemoveIndex(
            model_name='execution',
            name='execution_tenant_finished_idx',
        ),
    ]
