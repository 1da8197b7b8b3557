"""Views the admins add to Django's: the trigger preview, pause-until, downloads, buttons."""

from __future__ import annotations

import zoneinfo
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Required, TypedDict, cast

from django.contrib import messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.forms import modelform_factory
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.utils.translation import gettext as _

from .. import triggers, validators
from ..exceptions import InvalidTrigger, StateConflict
from ..tenancy import request_tenants
from .forms import TRIGGER_FIELDS, PauseForm, TriggerPreviewForm

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from django.contrib.admin import ModelAdmin
    from django.db.models import Model, QuerySet
    from django_stubs_ext import StrOrPromise

    from tenants.models import Tenant

    from ..models import Schedule
    from .base import TenantScopedAdmin

PREVIEW_COUNT = 5


class Preview(TypedDict, total=False):
    """The next runs of a trigger, as the preview answers them (also as JSON)."""

    ok: Required[bool]
    errors: list[StrOrPromise]  # when not ok
    timezone: str
    description: str
    runs: list[dict[str, str]]  # ``format_run`` of each


def format_run(run: datetime, tz_name: str) -> dict[str, str]:
    """Return a fire time as shown in the admin: local to the schedule, and in UTC."""
    local = run.astimezone(zoneinfo.ZoneInfo(tz_name))
    return {
        "local": f"{local:%a %Y-%m-%d %H:%M:%S %Z}",
        "utc": f"{run.astimezone(zoneinfo.ZoneInfo('UTC')):%Y-%m-%d %H:%M:%S} UTC",
        "iso": run.isoformat(),
    }


def upcoming_runs(schedule: Schedule, n: int = PREVIEW_COUNT) -> Preview:
    """Return the next ``n`` runs of ``schedule`` formatted, or the reason there are none."""
    try:
        runs = triggers.next_runs(schedule, n)
        tz_name = schedule.effective_timezone
        zoneinfo.ZoneInfo(tz_name)
    except (InvalidTrigger, ArithmeticError, ValueError, zoneinfo.ZoneInfoNotFoundError) as exc:
        return {"ok": False, "errors": [str(exc)]}
    return {
        "ok": True,
        "timezone": tz_name,
        "description": triggers.describe(schedule),
        "runs": [format_run(run, tz_name) for run in runs],
    }


class DayRuleComparison(TypedDict):
    """The next runs of a schedule that keeps the old day rule, under it and under cron's."""

    old: Preview
    cron: Preview


def day_rule_comparison(schedule: Schedule, n: int = PREVIEW_COUNT) -> DayRuleComparison:
    """Return the next ``n`` runs of ``schedule`` under the old day rule (both day fields must
    match) and under cron's (either matches), which saving the schedule adopts."""
    kept = schedule.legacy_day_rule
    try:
        schedule.legacy_day_rule = True
        old = upcoming_runs(schedule, n)
        schedule.legacy_day_rule = False
        cron = upcoming_runs(schedule, n)
    finally:
        schedule.legacy_day_rule = kept
    return {"old": old, "cron": cron}


def trigger_preview(model_admin: ModelAdmin, request: HttpRequest) -> HttpResponse:
    """Return the next runs of the trigger in the submitted form, before it is saved.

    Reads the same field names the change form posts, so the page can send its whole form.
    ``object_id`` names the schedule being edited (its id and creation time shape interval
    and stagger offsets); ``tenant`` supplies the default time zone. Both are looked up among
    the user's tenants only.
    """
    if request.method not in ("GET", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    if not (model_admin.has_add_permission(request) or model_admin.has_change_permission(request)):
        raise PermissionDenied
    data = request.POST if request.method == "POST" else request.GET
    instance = model_admin.model()
    object_id = data.get("object_id")
    if object_id:
        existing = model_admin.get_object(request, object_id)
        if existing is None:
            raise Http404(_("No schedule matches the given query."))
        instance.pk, instance.created_at = existing.pk, existing.created_at
        instance.tenant = existing.tenant
    # An existing schedule's tenant is fixed: only a new one's comes from the form.
    tenant = None if object_id else _visible_tenant(request, data.get("tenant"))
    if tenant is not None:
        instance.tenant = tenant
    form_class = modelform_factory(
        model_admin.model,
        form=TriggerPreviewForm,
        fields=TRIGGER_FIELDS,
        formfield_callback=partial(model_admin.formfield_for_dbfield, request=request),
    )
    # modelform_factory subclasses ``form``; the stubs return a plain ModelForm.
    form = cast(TriggerPreviewForm, form_class(data, instance=instance))
    if not form.is_valid():
        preview: Preview = {"ok": False, "errors": list(form.error_messages_list())}
    else:
        preview = upcoming_runs(form.instance)
    # The zone the form's times are read in, also while the trigger is incomplete: the page's
    # notes beside its times follow it as the tenant or the zone changes (zoned_times.js).
    zone = validators.find_timezone(form.instance.effective_timezone or "")
    if zone:
        preview.setdefault("timezone", zone)
    return JsonResponse(preview, status=200 if preview["ok"] else 400)


def _visible_tenant(request: HttpRequest, tenant_id: str | None) -> Tenant | None:
    if not tenant_id:
        return None
    try:
        return request_tenants(request).filter(pk=tenant_id).first()
    except (ValueError, TypeError, OverflowError, ValidationError):
        return None


def pause_confirmation(
    model_admin: ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet[Schedule] | Sequence[Schedule],
    form: PauseForm,
    *,
    obj: Schedule | None = None,
) -> TemplateResponse:
    """Render the page that asks until when to pause which schedules.

    For the changelist's action, or (``obj``) for the "Pause…" button of a schedule's page.
    """
    opts = model_admin.model._meta
    context = {
        "original": obj,
        **model_admin.admin_site.each_context(request),
        "title": _("Pause schedules"),
        "subtitle": None,
        "opts": opts,
        "form": form,
        "media": model_admin.media + form.media,
        "queryset": queryset,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "object_name": opts.verbose_name,
        "objects_name": opts.verbose_name_plural,
        # Schedules in several zones: "until" is read in UTC, and the page says why.
        "zones": schedule_zones(queryset),
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/scheduling/pause_confirmation.html", context)


def schedule_zones(schedules: Iterable[Schedule]) -> list[str]:
    """Return the time zones of ``schedules``, each once, sorted."""
    if isinstance(schedules, models.QuerySet):
        schedules = schedules.select_related("tenant")  # for those without a zone of their own
    return sorted({schedule.effective_timezone for schedule in schedules})


def shared_zone(schedules: Iterable[Schedule]) -> str:
    """Return the time zone ``schedules`` share, else UTC: what their pause page reads in."""
    zones = schedule_zones(schedules)
    return zones[0] if len(zones) == 1 else "UTC"


def artifact_download(
    model_admin: ModelAdmin, request: HttpRequest, object_id: str
) -> HttpResponse:
    """Send a report artifact as a file; another tenant's artifact is not found."""
    artifact = model_admin.get_object(request, object_id)
    if artifact is None or not model_admin.has_view_permission(request, artifact):
        raise Http404(_("No report artifact matches the given query."))
    response = HttpResponse(artifact.content, content_type=artifact.content_type)
    response["Content-Disposition"] = content_disposition_header(True, artifact.filename)
    response["X-Content-Type-Options"] = "nosniff"
    return response


def change_url(model_admin: ModelAdmin, obj: Model) -> str:
    """Return the admin change page of ``obj`` (of ``model_admin``'s model)."""
    opts = obj._meta
    return reverse(
        f"{model_admin.admin_site.name}:{opts.app_label}_{opts.model_name}_change",
        args=[quote(obj.pk)],
    )


def object_action(
    model_admin: TenantScopedAdmin,
    request: HttpRequest,
    object_id: str,
    act: Callable[[Any], str | HttpResponse | None],
    *,
    permission: Callable[[HttpRequest, Any], bool] | None = None,
) -> HttpResponse:
    """Do a change page's button (cancel, retry, run now, pause...) to one object, then redirect.

    POST only: a GET changes nothing (405). An object the user cannot see is not found (404);
    one they may see but not act on (``permission``, default: operate) is refused (403).
    ``act`` does it and reports success with a message; it returns where to go next (None:
    back to the object's page) or a page to show (a form asking for more). A
    ``StateConflict`` (the object's state does not allow it) becomes an error message.
    """
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    obj = model_admin.get_object(request, unquote(object_id))
    if obj is None:
        model_admin.require_object(request, object_id)  # answers 404
        raise Http404
    if not (permission or model_admin.has_operate_permission)(request, obj):
        raise PermissionDenied
    try:
        next_url = act(obj)
    except StateConflict as exc:
        model_admin.message_user(request, str(exc), messages.ERROR)
        next_url = None
    if isinstance(next_url, HttpResponse):
        return next_url
    return HttpResponseRedirect(next_url or change_url(model_admin, obj))
