"""Forms of the admin: the schedule form, the pause-until confirmation and the trigger preview."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib.admin import widgets
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.forms.models import construct_instance
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .. import services, triggers, validators
from ..exceptions import InvalidTrigger

if TYPE_CHECKING:
    from ..models import Schedule

# The fields that shape when a schedule fires: what the preview reads from the form.
TRIGGER_FIELDS = [
    *triggers.TRIGGER_INPUTS,
    "jitter_seconds",
    "stagger",
    "dst_gap_policy",
    "dst_fold_policy",
    "paused_until",
]


WEEKDAY_CHOICES = list(
    zip(
        triggers.WEEKDAYS,
        [
            _("Monday"),
            _("Tuesday"),
            _("Wednesday"),
            _("Thursday"),
            _("Friday"),
            _("Saturday"),
            _("Sunday"),
        ],
        strict=True,
    )
)


class WeekdaysField(forms.MultipleChoiceField):
    """``Schedule.calendar_weekdays`` as a checkbox per weekday, stored as "mon,thu"."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("choices", WEEKDAY_CHOICES)
        kwargs.setdefault(
            "widget", forms.CheckboxSelectMultiple(attrs={"class": "scheduling-weekdays"})
        )
        kwargs.setdefault("required", False)
        kwargs.setdefault(
            "help_text",
            _(
                "Only for a schedule that repeats in weeks. None ticked: the weekday of the "
                "start (else of the creation)."
            ),
        )
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        # The stored comma string (initial data) as the list of names the checkboxes show.
        if isinstance(value, str):
            return split_weekdays(value)
        return value

    def clean(self, value: Any) -> str:
        names = super().clean(value)
        return triggers.format_weekdays([triggers.WEEKDAYS.index(name) for name in names])

    def has_changed(self, initial: Any, data: Any) -> bool:
        return super().has_changed(self.prepare_value(initial), data)


def split_weekdays(text: str) -> list[str]:
    """``"Thursday,mon"`` -> ``["mon", "thu"]``: the checkboxes of a stored weekday string."""
    try:
        return [triggers.WEEKDAYS[day] for day in triggers.parse_weekdays(text)]
    except InvalidTrigger:  # stored by other means: tick what can be read
        return [name.strip().lower() for name in text.split(",") if name.strip()]


class PauseForm(forms.Form):
    """Pause until an instant, or (left empty) until someone resumes."""

    until = forms.SplitDateTimeField(
        label=_("Paused until"),
        required=False,
        widget=widgets.AdminSplitDateTime,
        help_text=_("Leave empty to pause until the schedule is resumed by hand."),
    )

    def clean_until(self) -> datetime | None:
        until: datetime | None = self.cleaned_data["until"]
        if until is None:
            return None
        if until <= timezone.now():
            raise ValidationError(_("Choose a time in the future."), code="past")
        if until >= validators.LATEST:
            raise ValidationError(_("Use a date before 9000."), code="too_far")
        return until


class TriggerPreviewForm(forms.ModelForm):
    """Read the trigger fields of a schedule form and validate only the trigger.

    The model's own ``clean()`` also checks the type key, the name and the options, which the
    preview does not send; the trigger rules are the ones ``validate_trigger`` applies.
    """

    instance: Schedule  # of the kind the admin builds the form for

    def _post_clean(self) -> None:
        try:
            self.instance = construct_instance(self, self.instance, fields=list(self.fields))
        except ValidationError as exc:
            # BaseModelForm's own handling of model errors; the stubs leave private API out.
            self._update_errors(exc)  # type: ignore[attr-defined]
            return
        if self.errors:
            return
        limits = validators.check_limits(self.instance)
        try:
            if limits:
                raise ValidationError(limits)
            if not self.instance.timezone:
                self.instance.timezone = self.instance.default_timezone()
            triggers.validate_trigger(self.instance)
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                self.add_error(field if field in self.fields else NON_FIELD_ERRORS, messages)

    def error_messages_list(self) -> list[str]:
        """Return every error as "Field: message" for a compact display next to the form."""
        messages = []
        for field, errors in self.errors.items():
            label = self.fields[field].label if field in self.fields else None
            for message in errors:
                messages.append(f"{label}: {message}" if label else str(message))
        return messages


class ScheduleAdminForm(forms.ModelForm):
    """Adds the rules that span rows: the tenant's quota and the dependency graph."""

    instance: Schedule
    # Set by ScheduleAdmin.save_model on a change: the schedule as it was, for the audit trail.
    audit_before: dict[str, Any] | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The tenant is fixed once saved (the admin shows it read-only): remembered before
        # construct_instance puts posted values on the instance.
        self.saved_tenant_id = None if self.instance._state.adding else self.instance.tenant_id

    def _post_clean(self) -> None:
        super()._post_clean()  # type: ignore[misc]  # BaseModelForm's; the stubs omit it
        schedule = self.instance
        if not schedule._state.adding and "tenant" in self.fields:
            moved = schedule.tenant_id
            schedule.tenant_id = self.saved_tenant_id  # the rule compares with the saved one
            try:
                services.check_tenant_unchanged(schedule, moved)
            except ValidationError as exc:
                self.add_error("tenant", exc.messages)
                return
            finally:
                schedule.tenant_id = moved
        # A system schedule (no tenant) has no quota, but its dependencies are checked too.
        if schedule._state.adding and schedule.tenant_id and schedule.tenant is not None:
            try:
                services.check_quota(schedule.tenant)
            except ValidationError as exc:
                self.add_error(None, exc)
        depends_on = self.cleaned_data.get("depends_on")
        if depends_on is not None and "depends_on" not in self.errors:
            try:
                services.validate_dependencies(schedule, depends_on)
            except ValidationError as exc:
                self.add_error("depends_on", exc.message_dict["depends_on"])
