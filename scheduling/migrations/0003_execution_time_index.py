from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("scheduling", "0002_blackouts_alerts_stagger"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="execution",
            index=models.Index(fields=["-scheduled_for", "-attempt"], name="execution_time_idx"),
        ),
    ]
