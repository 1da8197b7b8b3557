"""The built-in cleanup targets: executions, report artifacts, APScheduler's execution log,
and old files below the directories that ``SCHEDULING_FILE_CLEANUP_ROOTS`` allows (``files``).

Other apps register their own the same way, in their ``scheduling_tasks.py``::

    cleanup_target("audit_log", label="Audit log", model="audit.Entry",
                   datetime_field="created_at", tenant_path="organisation")

Rows that carry their own expiry name it instead: ``expiry_field="expires_at"`` deletes the
rows whose ``expires_at`` has passed, whatever the config's ``retain_days``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django import forms
from django.db.models import CharField, Model, QuerySet, Value
from django.db.models.functions import Cast, Concat
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django_apscheduler.models import DjangoJobExecution

from ..conf import conf
from ..help_texts import setting_help
from ..models import Execution, Schedule
from ..registry import cleanup_target
from .files import FileCleanupOptions, purge_files

if TYPE_CHECKING:
    from tenants.models import Tenant

    from ..models import Execution


def _retention_help() -> str:
    return gettext(
        "Ignore retain_days: keep the tenant's execution_retention_days, else %(days)d days "
        "(SCHEDULING_EXECUTION_RETENTION_DAYS), as they are at run time."
    ) % {"days": conf.EXECUTION_RETENTION_DAYS}


class ExecutionRetentionOptions(forms.Form):
    use_tenant_retention = forms.BooleanField(
        required=False,
        help_text=setting_help(_retention_help),
    )


def finished_executions(tenant: Tenant | None) -> QuerySet[Execution]:
    """The tenant's executions that have finished; queued and running ones are never purged.

    With no tenant (a system cleanup), every tenant's and the system's.
    """
    executions = Execution.objects.all() if tenant is None else Execution.objects.for_tenant(tenant)
    return executions.finished()


def apscheduler_job_executions(tenant: Tenant | None) -> QuerySet[Model]:
    """django-apscheduler's execution log rows of the tenant's jobs (``schedule:<pk>``).

    That table has no tenant column; a row belongs to the tenant whose schedule the job id
    names. The job ids are built in a subquery, so this stays one statement however many
    schedules the tenant has.
    """
    if tenant is None:  # a system cleanup: every schedule's job
        return DjangoJobExecution.objects.filter(job__id__startswith="schedule:")
    job_ids = (
        Schedule.objects.filter(tenant=tenant)
        .order_by()
        .annotate(apscheduler_job_id=Concat(Value("schedule:"), Cast("pk", CharField())))
        .values("apscheduler_job_id")
    )
    return DjangoJobExecution.objects.filter(job_id__in=job_ids)


cleanup_target(
    "executions",
    label=_("Executions"),
    model="scheduling.Execution",
    datetime_field="finished_at",
    tenant_path="tenant",
    queryset=finished_executions,
    options=ExecutionRetentionOptions,
)

cleanup_target(
    "report_artifacts",
    label=_("Report artifacts"),
    model="scheduling.ReportArtifact",
    datetime_field="created_at",
    tenant_path="tenant",
)

# Not rows: purge_files walks a directory (see files.py for its rules). System schedules only.
cleanup_target(
    "files",
    label=_("Old files"),
    options=FileCleanupOptions,
    purge=purge_files,
    system_only=True,
)

cleanup_target(
    "apscheduler_job_executions",
    label=_("APScheduler job executions"),
    model="django_apscheduler.DjangoJobExecution",
    datetime_field="run_time",
    tenant_path=None,
    queryset=apscheduler_job_executions,
)
