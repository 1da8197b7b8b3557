"""Forms of the admin: the schedule form, the pause-until confirmation and the trigger preview.

The schedule form asks for what a person knows, not for keys and JSON: the registered type is
a choice, the chosen type's options are fields of their own (``options-<key>-<name>``, one
fieldset per type; the admin's script shows the chosen type's), validated by the type's own
form with an error beside each field; the time zone is a choice of IANA names; and every date
and time is read and shown in the schedule's zone, which the form names beside each input.
"""

from __future__ import annotations

import copy
import re
import zoneinfo
from collections.abc import Iterator
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.conf import settings
from django.contrib.admin import widgets
from django.core.exceptions import NON_FIELD_ERRORS, FieldDoesNotExist, ValidationError
from django.forms.models import construct_instance
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.text import capfirst
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .. import help_texts, services, triggers, validators
from ..exceptions import InvalidTrigger
from ..kinds import KindSpec, all_kinds
from ..registry import JSONObject, TaskType
from ..tenancy import get_tenant_model

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

    from ..models import CleanupConfig, PeriodicScan, Report, Schedule, ScheduledTask

    WithOptions = PeriodicScan | Report | CleanupConfig | ScheduledTask

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


# -- times in the schedule's zone ---------------------------------------------------------------


def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


def utc_offset_seconds(zone: str, at: datetime | None = None) -> int:
    """Return the offset of ``zone`` from UTC at ``at`` (default: now), in seconds."""
    offset = (at or timezone.now()).astimezone(_zone(zone)).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def zone_note(zone: str) -> str:
    """What the form says beside each date and time it asks for."""
    return gettext("Times are in %(zone)s.") % {"zone": zone}


class ZonedSplitDateTimeWidget(widgets.AdminSplitDateTime):
    """The admin's date and time inputs, showing a time in ``zone`` and naming the zone."""

    template_name = "admin/scheduling/widgets/zoned_split_datetime.html"
    zone = "UTC"

    class Media:
        js = ["scheduling/admin/zoned_times.js"]

    def decompress(self, value: Any) -> tuple[date | None, time | None]:
        if isinstance(value, datetime):
            local = value.astimezone(_zone(self.zone)) if timezone.is_aware(value) else value
            return local.date(), local.time().replace(tzinfo=None)
        return None, None

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        context["widget"]["zone"] = self.zone
        context["widget"]["zone_note"] = zone_note(self.zone)
        context["widget"]["utc_offset"] = utc_offset_seconds(self.zone)
        return context


class ZonedSplitDateTimeField(forms.SplitDateTimeField):
    """A date and a time read as a wall-clock time in ``zone`` (set by the form)."""

    widget = ZonedSplitDateTimeWidget
    default_error_messages = {
        # SplitDateTimeField reads its own messages from this dict, not from its class's.
        **forms.SplitDateTimeField.default_error_messages,
        "no_such_time": _(
            "%(datetime)s does not exist in %(zone)s, or happens twice there (a daylight "
            "saving time change): choose another time."
        ),
    }
    zone = "UTC"

    def set_zone(self, zone: str) -> None:
        self.zone = zone
        if isinstance(self.widget, ZonedSplitDateTimeWidget):
            self.widget.zone = zone

    def compress(self, data_list: tuple[date, time] | None) -> datetime | None:
        if not data_list:
            return None
        if data_list[0] in self.empty_values:
            raise ValidationError(self.error_messages["invalid_date"], code="invalid_date")
        if data_list[1] in self.empty_values:
            raise ValidationError(self.error_messages["invalid_time"], code="invalid_time")
        return aware_in_zone(
            datetime.combine(data_list[0], data_list[1]), self.zone, self.error_messages
        )


def aware_in_zone(naive: datetime, zone: str, messages: dict[str, Any]) -> datetime:
    """Return the wall-clock time ``naive`` in ``zone``; refuse one a DST change skips or
    repeats (which of the two would be a guess)."""
    tz = _zone(zone)
    first, second = naive.replace(tzinfo=tz, fold=0), naive.replace(tzinfo=tz, fold=1)
    if first.utcoffset() != second.utcoffset():
        raise ValidationError(
            messages["no_such_time"],
            code="no_such_time",
            params={"datetime": naive.strftime("%Y-%m-%d %H:%M:%S"), "zone": zone},
        )
    return first


def zoned_fields(form: forms.BaseForm) -> Iterator[ZonedSplitDateTimeField]:
    for field in form.fields.values():
        if isinstance(field, ZonedSplitDateTimeField):
            yield field


class TimezoneSelect(forms.Select):
    """A select of IANA names; the admin's select2 (when JavaScript runs) lets one search it
    by any part of the name, in any case ("berlin", "new york")."""

    def __init__(self, attrs: dict[str, Any] | None = None, choices: Any = ()) -> None:
        super().__init__({"class": "scheduling-timezone", **(attrs or {})}, choices)

    @property
    def media(self) -> forms.Media:
        extra = "" if settings.DEBUG else ".min"
        return forms.Media(
            js=[
                f"admin/js/vendor/jquery/jquery{extra}.js",
                f"admin/js/vendor/select2/select2.full{extra}.js",
                "admin/js/jquery.init.js",
                "scheduling/admin/timezone_select.js",
            ],
            css={
                "screen": [
                    f"admin/css/vendor/select2/select2{extra}.css",
                    "admin/css/autocomplete.css",
                ]
            },
        )


class TimezoneField(forms.ChoiceField):
    """An IANA time zone name, chosen from the system's list; any spelling case is accepted."""

    widget = TimezoneSelect

    def __init__(self, *, empty_label: StrOrPromise, current: str = "", **kwargs: Any) -> None:
        names = list(validators.timezone_names())
        if current and current not in names:  # stored by other means: keep it on offer
            names.append(current)
        kwargs.setdefault("required", False)
        super().__init__(
            choices=[("", empty_label), *((name, name.replace("_", " ")) for name in names)],
            **kwargs,
        )

    def to_python(self, value: Any) -> str:
        text = super().to_python(value)
        return (validators.find_timezone(text) or text) if text else ""


# -- the schedule form -------------------------------------------------------------------------


def kind_of(model: type[Schedule]) -> KindSpec | None:
    """Return the kind whose model is ``model``, if it is one."""
    return next((spec for spec in all_kinds() if spec.model is model), None)


def options_prefix(key: str) -> str:
    """The prefix of registered type ``key``'s options in the schedule form."""
    return f"options-{key}"


def option_field_name(key: str, name: str) -> str:
    """The name of option ``name`` of registered type ``key`` in the schedule form: what the
    type's own form, bound with ``options_prefix(key)``, reads."""
    return f"{options_prefix(key)}-{name}"


def option_fieldset_class(key: str) -> str:
    """The CSS class of the fieldset of type ``key``'s options (read by schedule_form.js)."""
    return "scheduling-options-" + re.sub(r"[^A-Za-z0-9_-]", "-", key)


def option_field_names(entry: TaskType[Any]) -> list[str]:
    """The names of type ``entry``'s options in the schedule form (none without options)."""
    if entry.options is None:
        return []
    return [option_field_name(entry.key, name) for name in entry.options.base_fields]


def _admin_look(field: forms.Field) -> None:
    # The admin's widths and styles for plain widgets of a registered type's form.
    widget = field.widget
    css = None
    if type(widget) is forms.TextInput:
        css = "vTextField"
    elif type(widget) is forms.Textarea:
        css = "vLargeTextField"
    elif type(widget) is forms.NumberInput and isinstance(field, forms.IntegerField):
        css = "vIntegerField"
    if css and "class" not in widget.attrs:
        widget.attrs["class"] = css


def stored_options(schedule: Schedule) -> JSONObject:
    """Return the options saved on ``schedule`` (none for a kind without them)."""
    options = getattr(schedule, "options", None)
    return options if isinstance(options, dict) else {}


def _first_choice(field: forms.ChoiceField) -> object:
    choices: Any = field.choices  # the stubs' union of every form choices may take
    for value, label in choices:
        if isinstance(label, list | tuple):  # a group of choices
            return label[0][0] if label else None
        return value
    return None


def _keep_option(field: forms.Field, value: object) -> bool:
    # An option left empty is not stored, so the type's default applies; a box left unticked
    # is stored only where the type ticks it by default.
    if value is False:
        return bool(field.initial)
    return value not in field.empty_values


class ScheduleFormBase(forms.ModelForm):
    """What the schedule form and the trigger preview share: dates and times are read and
    shown in the schedule's time zone (its own, else its tenant's, else UTC)."""

    instance: Schedule  # of the kind the admin builds the form for

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.zone = self.schedule_zone()
        for field in zoned_fields(self):
            field.set_zone(self.zone)

    def value_of(self, name: str) -> Any:
        """The posted value of field ``name`` (of a bound form), else its initial value."""
        if self.is_bound:
            field = self.fields.get(name)
            if field is None:
                return self.data.get(self.add_prefix(name))
            return field.widget.value_from_datadict(self.data, self.files, self.add_prefix(name))
        return self.get_initial_for_field(self.fields[name], name) if name in self.fields else None

    def schedule_zone(self) -> str:
        """The zone the form's times are in: the one posted (or saved), else the tenant's."""
        chosen = self.value_of("timezone") if "timezone" in self.fields else None
        zone = validators.find_timezone(str(chosen or ""))
        if zone:
            return zone
        if "tenant" in self.fields and self.instance._state.adding:
            tenant_id = self.value_of("tenant")
            if tenant_id:
                try:
                    tenant = get_tenant_model()._default_manager.filter(pk=tenant_id).first()
                except (ValueError, TypeError, OverflowError, ValidationError):
                    tenant = None
                return getattr(tenant, "timezone", "") or "UTC"
            return "UTC"
        return self.instance.effective_timezone


class PauseForm(forms.Form):
    """Pause until an instant, or (left empty) until someone resumes."""

    until = ZonedSplitDateTimeField(
        label=_("Paused until"),
        required=False,
        help_text=_("Leave empty to pause until the schedule is resumed by hand."),
    )

    def __init__(self, *args: Any, zone: str = "UTC", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.zone = zone
        for field in zoned_fields(self):
            field.set_zone(zone)

    def clean_until(self) -> datetime | None:
        until: datetime | None = self.cleaned_data["until"]
        if until is None:
            return None
        if until <= timezone.now():
            raise ValidationError(_("Choose a time in the future."), code="past")
        if until >= validators.LATEST:
            raise ValidationError(_("Use a date before 9000."), code="too_far")
        return until


class TriggerPreviewForm(ScheduleFormBase):
    """Read the trigger fields of a schedule form and validate only the trigger.

    The model's own ``clean()`` also checks the type key, the name and the options, which the
    preview does not send; the trigger rules are the ones ``validate_trigger`` applies.
    """

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


class ScheduleAdminForm(ScheduleFormBase):
    """The schedule form of the admin.

    Besides the model's rules (all reported at once), the rules that span rows: the tenant's
    quota and the dependency graph. The registered type is a choice, and each registered type's
    options are fields of the form; only the chosen type's are validated and stored.
    """

    # Set by ScheduleAdmin.save_model on a change: the schedule as it was, for the audit trail.
    audit_before: dict[str, Any] | None
    # The fields of the types' options: form field name -> (type key, option name).
    option_fields: dict[str, tuple[str, str]]
    # Once cleaned: the options to store (None: those stored stay), and whether the chosen
    # type's options form refused them.
    new_options: JSONObject | None = None
    options_refused = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The tenant is fixed once saved (the admin shows it read-only): remembered before
        # construct_instance puts posted values on the instance.
        self.saved_tenant_id = None if self.instance._state.adding else self.instance.tenant_id
        self.kind = kind_of(type(self.instance))
        self.option_fields = {}
        # Help texts with the values of the settings in force, not only their names.
        for name, text in help_texts.schedule_help_texts().items():
            if name in self.fields:
                self.fields[name].help_text = text
        if "timezone" in self.fields:
            self.fields["timezone"] = self._timezone_field(self.fields["timezone"])
        if "ping_style" in self.fields:
            # Left out of a post (a form from before heartbeats), it keeps its default.
            self.fields["ping_style"].required = False
        if self.kind is not None and self.kind.type_field in self.fields:
            self.fields[self.kind.type_field] = self._type_field(self.fields[self.kind.type_field])
            # A form that edits the options as JSON (a project's own) keeps doing so.
            if "options" not in self.fields:
                self._add_option_fields()

    # -- building ---------------------------------------------------------------------------

    def _timezone_field(self, field: forms.Field) -> TimezoneField:
        empty: StrOrPromise
        if self.instance._state.adding:
            empty = _("The tenant's time zone (UTC without a tenant)")
        else:
            empty = gettext("The tenant's time zone (%(zone)s)") % {
                "zone": self.instance.default_timezone()
            }
        chosen = TimezoneField(
            label=field.label,
            help_text=field.help_text,
            empty_label=empty,
            current=self.instance.timezone,
        )
        # What the notes beside the times say when the empty choice is picked (zoned_times.js).
        chosen.widget.attrs["data-empty-note"] = gettext("Times are in the tenant's time zone.")
        return chosen

    def _type_field(self, field: forms.Field) -> forms.ChoiceField:
        assert self.kind is not None  # noqa: S101  # only called for a kind's form
        choices: list[tuple[str, StrOrPromise]] = [("", "---------")]
        for entry in self.kind.registry:
            label = entry.label
            if entry.system_only:
                label = gettext("%(label)s (system schedules only)") % {"label": label}
            choices.append((entry.key, label))
        stored = self.kind.type_key(self.instance)
        if stored and stored not in self.kind.registry:
            # Unregistered since it was saved: shown as it is; saving it names the problem.
            choices.append((stored, gettext("%(key)s (not registered)") % {"key": stored}))
        return forms.ChoiceField(
            label=field.label,
            choices=choices,
            help_text=_("What runs; its options are below."),
            widget=forms.Select(attrs={"class": "scheduling-type"}),
        )

    def _add_option_fields(self) -> None:
        assert self.kind is not None  # noqa: S101  # only called for a kind's form
        stored_key = self.kind.type_key(self.instance)
        stored = stored_options(self.instance)
        for entry in self.kind.registry:
            if entry.options is None:
                continue
            for name, field in entry.options.base_fields.items():
                form_name = option_field_name(entry.key, name)
                copied = copy.deepcopy(field)
                # Labelled like the admin's own fields ("Expected status").
                copied.label = capfirst(str(copied.label or name.replace("_", " ")))
                _admin_look(copied)
                self.fields[form_name] = copied
                self.option_fields[form_name] = (entry.key, name)
                if entry.key == stored_key and name in stored:
                    self.initial[form_name] = stored[name]
                elif copied.initial is None and isinstance(copied, forms.ChoiceField):
                    # What the page shows, so that leaving it is no change.
                    self.initial[form_name] = _first_choice(copied)

    # -- the chosen type ----------------------------------------------------------------------

    def chosen_type(self) -> TaskType[Any] | None:
        """The registered type the form is for (posted, else saved or asked for), if any."""
        if self.kind is None or self.kind.type_field not in self.fields:
            return None
        key = str(self.value_of(self.kind.type_field) or "")
        return next((entry for entry in self.kind.registry if entry.key == key), None)

    @cached_property
    def changed_data(self) -> list[str]:
        # The options of the types not chosen are on the page but not part of the schedule.
        chosen = self.chosen_type()
        shown = set(option_field_names(chosen)) if chosen is not None else set()
        return [
            name for name in super().changed_data if name not in self.option_fields or name in shown
        ]

    def type_options_form(self, entry: TaskType[Any]) -> forms.Form | None:
        """The type's own options form, bound to the posted fields of its options."""
        if entry.options is None or not self.is_bound:
            return None
        return entry.options(data=self.data, files=self.files, prefix=options_prefix(entry.key))

    # -- validating ---------------------------------------------------------------------------

    def clean_end_at(self) -> datetime | None:
        end_at: datetime | None = self.cleaned_data.get("end_at")
        saved = None if self.instance._state.adding else self.instance.end_at
        message = validators.check_end_not_passed(end_at, saved)
        if message is not None:
            raise ValidationError(message, code="end_passed")
        return end_at

    def clean(self) -> dict[str, Any]:
        super().clean()
        # Option fields are read by their type's own form (its clean methods included), and
        # only the chosen type's: what this form parsed of them is set aside.
        for name in self.option_fields:
            self.cleaned_data.pop(name, None)
            self.errors.pop(name, None)
        self.new_options = self._chosen_options()
        return self.cleaned_data

    def _chosen_options(self) -> JSONObject | None:
        """Return the options to store (None: keep the stored ones), adding any error."""
        entry = self.chosen_type()
        if entry is None or self.kind is None or "options" in self.fields:
            return None
        stored = stored_options(self.instance)
        same_type = entry.key == self.kind.type_key(self.instance)
        typed = self.type_options_form(entry)
        if typed is None:  # the type takes no options
            return None if same_type and not stored else {}
        if not typed.is_valid():
            self.options_refused = True
            for name, errors in typed.errors.items():
                form_name = option_field_name(entry.key, name)
                if name != NON_FIELD_ERRORS and form_name in self.fields:
                    self.add_error(form_name, errors)
                else:
                    self.add_error(self.kind.type_field, errors)
            return None
        if same_type and entry.options is not None and set(stored) <= set(typed.fields):
            before = entry.options(data=stored)
            if before.is_valid() and before.cleaned_data == typed.cleaned_data:
                return None  # unchanged: stored as it was, not rewritten
        return {
            name: value
            for name, value in typed.cleaned_data.items()
            if _keep_option(typed.fields[name], value)
        }

    def _post_clean(self) -> None:
        if self.new_options is not None:
            # Only a kind with a registered type has new options, and every such kind has them.
            cast("WithOptions", self.instance).options = self.new_options
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

    def _update_errors(self, errors: ValidationError) -> None:
        # The model layer reports on the instance, which lacks every value the form refused:
        # its errors on those fields would be about a default, and the form's say it already.
        # Errors on fields the form does not show (the options) go above the form, labelled.
        if hasattr(errors, "error_dict"):
            kept: dict[str, list[ValidationError]] = {}
            for name, found in errors.error_dict.items():
                if name != NON_FIELD_ERRORS and name in self.errors:
                    continue
                if name == "options" and self.options_refused:
                    continue  # about the options the form kept: each field says what is wrong
                if name == NON_FIELD_ERRORS or name in self.fields:
                    kept.setdefault(name, []).extend(found)
                    continue
                label = self._label(name)
                kept.setdefault(NON_FIELD_ERRORS, []).extend(
                    ValidationError(message if message.startswith(label) else f"{label}: {message}")
                    for message in ValidationError(found).messages
                )
            if not kept:
                return
            errors = ValidationError(kept)
        super()._update_errors(errors)  # type: ignore[misc]  # BaseModelForm's

    def _label(self, name: str) -> str:
        try:
            field = self.instance._meta.get_field(name)
        except FieldDoesNotExist:
            return name
        return str(capfirst(getattr(field, "verbose_name", name)))
