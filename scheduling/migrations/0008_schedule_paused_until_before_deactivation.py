from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("scheduling", "0007_execution_counters"),
    ]

    operations = [
        migrations.AddField(
            model_name="schedule",
            name="paused_until_before_deactivation",
            field=models.DateTimeField(
                blank=True,
                editable=False,
                help_text=(
                    "Set while the schedule is paused because its tenant is inactive: the end "
                    "of the pause it had before (a past instant: it was not paused), restored "
                    "when the tenant is reactivated."
                ),
                null=True,
                verbose_name="paused until, before the tenant was deactivated",
            ),
        ),
    ]
