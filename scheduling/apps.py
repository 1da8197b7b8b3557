from django.apps import AppConfig
from django.db.models.signals import post_delete
from django.utils.translation import gettext_lazy as _


class SchedulingConfig(AppConfig):
    name = "scheduling"
    verbose_name = _("Scheduling")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, receivers, registry

        checks.register()
        post_delete.connect(receivers.record_schedule_deletion, dispatch_uid="scheduling_deletion")
        registry.autodiscover()
