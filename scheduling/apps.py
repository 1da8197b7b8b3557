from django.apps import AppConfig
from django.db.models.signals import post_delete, post_migrate, post_save
from django.utils.translation import gettext_lazy as _


class SchedulingConfig(AppConfig):
    name = "scheduling"
    verbose_name = _("Scheduling")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, receivers, registry
        from .models import Schedule
        from .schedules_io import declared
        from .tenancy import get_tenant_model

        checks.register()
        # Only Schedule's own rows: a receiver of every sender would make Django load each row
        # of every model it deletes (in the host project too) instead of deleting by key.
        post_delete.connect(
            receivers.record_schedule_deletion,
            sender=Schedule,
            dispatch_uid="scheduling_deletion",
        )
        post_migrate.connect(
            receivers.create_retention_schedules,
            sender=self,
            dispatch_uid="scheduling_retention_on_migrate",
        )
        post_migrate.connect(
            declared.sync_after_migrate, sender=self, dispatch_uid="scheduling_declared_on_migrate"
        )
        try:
            tenant_model = get_tenant_model()
        except (LookupError, ValueError):
            tenant_model = None  # scheduling.E001 reports the setting
        if tenant_model is not None:
            post_save.connect(
                receivers.tenant_saved,
                sender=tenant_model,
                dispatch_uid="scheduling_retention_on_tenant_save",
            )
            post_save.connect(
                declared.sync_for_tenant,
                sender=tenant_model,
                dispatch_uid="scheduling_declared_on_tenant_save",
            )
        registry.autodiscover()
