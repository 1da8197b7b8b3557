"""Producing a report: its data from the registered report type, rendered, stored, e-mailed.

A report type returns plain data (``func(report, context) -> dict``); this module renders it in
the report's format, stores the result as a ``ReportArtifact`` of the execution and mails it
to the report's recipients. Report types never render or send anything themselves.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.serializers.json import DjangoJSONEncoder
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext

from ..conf import conf
from ..context import ExecutionContext
from ..models import Report, ReportArtifact, ReportFormat
from ..registry import TaskType, report_types

CONTENT_TYPES = {
    ReportFormat.JSON: "application/json",
    ReportFormat.CSV: "text/csv",
    ReportFormat.HTML: "text/html",
}

# A spreadsheet evaluates a cell that starts with one of these as a formula.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def report_options(report: Report) -> dict:
    """Return the report's options cleaned by its type's schema, defaults filled in.

    Options are validated again at run time: a row written around the admin form or the API
    still fails with the field's message rather than with a ``KeyError`` deep in the report.
    """
    entry = report_types.get(report.report_type)
    cleaned = entry.validate_options(report.options)
    if entry.options is None:
        return cleaned
    form = entry.options(data=cleaned)
    form.is_valid()
    return form.cleaned_data


def render_json(data: Any) -> str:
    """Render report data as indented JSON with sorted keys."""
    return json.dumps(data, cls=DjangoJSONEncoder, sort_keys=True, indent=2) + "\n"


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(_FORMULA_PREFIXES):
        # Keep user-supplied text (schedule names) from running as a spreadsheet formula.
        return "'" + value
    return value


def render_csv(rows: list[list[Any]]) -> str:
    """Render rows (header first) as CSV."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in rows:
        writer.writerow([_csv_cell(value) for value in row])
    return buffer.getvalue()


def render(entry: TaskType, report: Report, data: dict, context: ExecutionContext) -> str:
    """Render ``data`` of report type ``entry`` in ``report.format``."""
    if report.format == ReportFormat.JSON:
        return render_json(data)
    if report.format == ReportFormat.CSV:
        if entry.csv_rows is None:
            raise ValueError(f"Report type {entry.key!r} cannot be rendered as CSV.")
        return render_csv(entry.csv_rows(data))
    if report.format == ReportFormat.HTML:
        if not entry.template:
            raise ValueError(f"Report type {entry.key!r} has no HTML template.")
        # Times in the report read in the schedule's time zone, like its trigger.
        with timezone.override(report.effective_timezone):
            return render_to_string(
                entry.template,
                {
                    "report": report,
                    "report_type": entry,
                    "tenant": context.tenant,
                    "execution": context.execution,
                    "data": data,
                    "generated_at": context.now(),
                },
            )
    raise ValueError(f"Unknown report format {report.format!r}.")


def artifact_filename(report: Report, context: ExecutionContext) -> str:
    """Return ``<tenant>-<report type>-<UTC timestamp>.<format>``, safe as a file name."""
    tenant = context.tenant
    if tenant is None:
        slug = "system"
    else:
        slug = slugify(getattr(tenant, "slug", "") or str(tenant)) or f"tenant-{tenant.pk}"
    kind = slugify(report.report_type) or "report"
    stamp = context.scheduled_for.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{slug}-{kind}-{stamp}.{report.format}"


def send_artifact(report: Report, artifact: ReportArtifact, entry: TaskType) -> int:
    """E-mail ``artifact`` to the report's recipients; return how many there were."""
    recipients = report.recipient_list()
    if not recipients:
        return 0
    # Header values must stay on one line (Django refuses newlines in headers).
    name = " ".join(str(report.name).split())
    subject = gettext("%(name)s: %(type)s for %(tenant)s") % {
        "name": name,
        "type": entry.label,
        "tenant": " ".join(str(report.tenant).split()),
    }
    body = gettext("The report %(name)s is attached (%(filename)s, %(size)s bytes).") % {
        "name": name,
        "filename": artifact.filename,
        "size": artifact.size,
    }
    message = EmailMessage(
        subject=subject,
        body=body,
        from_email=conf.REPORT_FROM_EMAIL or settings.DEFAULT_FROM_EMAIL,
        to=recipients,
    )
    message.attach(artifact.filename, artifact.content, artifact.content_type)
    message.send(fail_silently=False)
    return len(recipients)


def produce_report(report: Report, context: ExecutionContext) -> dict:
    """Produce, store and send one run of ``report``; return a small summary for the result."""
    entry = report_types.get(report.report_type)
    if entry.func is None:
        raise TypeError(f"Report type {report.report_type!r} has no handler.")
    data = context.call(entry.func, report)
    content = render(entry, report, data, context)
    artifact = ReportArtifact(
        tenant_id=report.tenant_id,
        report=report,
        execution=context.execution,
        format=report.format,
        filename=artifact_filename(report, context),
        content_type=CONTENT_TYPES[ReportFormat(report.format)],
        content=content,
    )
    artifact.save()
    # The artifact is stored before mailing: a mail failure fails the run but keeps the
    # report, which the admin and the API can still serve.
    sent = send_artifact(report, artifact, entry)
    return {
        "artifact_id": artifact.pk,
        "filename": artifact.filename,
        "format": artifact.format,
        "size": artifact.size,
        "checksum": artifact.checksum,
        "recipients": sent,
    }
