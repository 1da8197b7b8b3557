"""Serializer fields that resolve ids only among what the requester may see.

Another tenant's id gives exactly the error a nonexistent id gives, so a payload cannot probe
for the existence of other tenants' rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import FieldError
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from ..exceptions import InvalidTrigger
from ..models import Schedule
from ..tenancy import get_tenant_model
from ..triggers import format_weekdays, parse_weekdays
from .permissions import tenant_ids

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from tenants.models import Tenant

    from ..registry import Registry


class TenantField(serializers.Field):
    """A tenant given by id or slug, among the tenants the requester can see; shown as id."""

    default_error_messages = {
        "does_not_exist": _("No tenant {value!r} among your tenants."),
        "incorrect_type": _("Give the tenant's id (integer) or slug (string), not {data_type}."),
    }

    def to_internal_value(self, data: object) -> Tenant:
        if isinstance(data, bool) or not isinstance(data, int | str):
            self.fail("incorrect_type", data_type=type(data).__name__)
        text = str(data).strip()
        lookup = {"pk": int(text)} if text.isdecimal() else {"slug": text}
        qs = get_tenant_model()._default_manager.all()
        ids = tenant_ids(self.context["request"])
        if ids is not None:
            qs = qs.filter(pk__in=ids)
        try:
            return qs.get(**lookup)
        except (qs.model.DoesNotExist, FieldError, ValueError, TypeError, OverflowError):
            self.fail("does_not_exist", value=text[:100])

    def to_representation(self, value: Tenant) -> int:
        return value.pk


class VisibleSchedulesField(serializers.PrimaryKeyRelatedField):
    """A schedule id among the schedules the requester can see (used with ``many=True``)."""

    default_error_messages = {
        "does_not_exist": _("No schedule {pk_value!r} among your schedules."),
    }

    def get_queryset(self) -> QuerySet[Schedule]:
        qs = Schedule.objects.select_related("tenant").order_by()
        ids = tenant_ids(self.context["request"])
        return qs if ids is None else qs.filter(tenant_id__in=ids)

    def to_internal_value(self, data: object) -> Schedule:
        if isinstance(data, float):  # 1.5 would silently become 1
            self.fail("incorrect_type", data_type=type(data).__name__)
        try:
            return super().to_internal_value(data)
        except OverflowError:
            self.fail("does_not_exist", pk_value=data)


class RegisteredKeyField(serializers.CharField):
    """A key of ``registry``; the model layer rejects unknown keys, naming the known ones.

    The schema lists the keys registered when it is generated.
    """

    # Any kind's registry: Registry is invariant in the kind, and only its keys are read.
    def __init__(self, *, registry: Registry[Any], **kwargs: Any) -> None:
        self.registry = registry
        kwargs.setdefault("max_length", 64)
        super().__init__(**kwargs)


class WallTimeField(serializers.TimeField):
    """A time of day on the schedule's wall clock: "HH:MM" or "HH:MM:SS", without an offset
    (the schedule's time zone applies); returned as "HH:MM:SS"."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("input_formats", ["%H:%M", "%H:%M:%S"])
        kwargs.setdefault("format", "%H:%M:%S")
        super().__init__(**kwargs)


class WeekdaysField(serializers.Field):
    """Weekdays as the model stores them ("mon,thu"); also read from a list (["mon", "thu"]).

    Known names come back in the stored order ("thu,Monday" -> "mon,thu"). Unknown ones are
    passed on as they are: the model's validation names them, with the other fields' errors.
    """

    default_error_messages = {
        "incorrect_type": _(
            'Give the weekdays as a string ("mon,thu") or a list of names (["mon", "thu"]), '
            "not {data_type}."
        ),
        "item_type": _('Each weekday of the list is a name such as "mon", not {data_type}.'),
    }

    def to_internal_value(self, data: object) -> str:
        if isinstance(data, list):
            for item in data:
                if not isinstance(item, str):
                    self.fail("item_type", data_type=type(item).__name__)
            text = ",".join(data)
        elif isinstance(data, str):
            text = data
        else:
            self.fail("incorrect_type", data_type=type(data).__name__)
        try:
            return format_weekdays(parse_weekdays(text))
        except InvalidTrigger:
            return text

    def to_representation(self, value: str) -> str:
        return value
