"""Admin of tenants and memberships, scoped like the schedules' admin.

A staff member who is not a superuser sees the tenants they are a member of, read-only:
creating tenants and changing quotas is left to users who see every tenant, and a tenant's scan
allow list (internal networks its scans may reach) to superusers.

Members are managed on one page, "Add member": a tenant, an existing user's username or e-mail
address (or a new user), a role. Owners and admins manage their own tenants' members, never
above their own role (``tenants.members``); everyone sees their own memberships.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import ForeignKey, Model, Q, QuerySet
from django.forms import ModelChoiceField
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path, reverse, reverse_lazy
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from scheduling import services
from scheduling.admin import (
    MANAGE_ROLE,
    VIEW_ROLE,
    NotFoundMixin,
    TenantFilter,
    has_role,
    tenant_admin_registered,
    tenant_ids_for,
)
from scheduling.admin.base import format_time
from scheduling.admin.forms import TimezoneField
from scheduling.models import AuditSource
from scheduling.tenancy import tenants_visible_to
from tenants import members
from tenants.models import ROLE_RANK, Membership, Role, Tenant

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldsetSpec
    from django.contrib.auth.models import AbstractBaseUser
    from django_stubs_ext import StrOrPromise


def sees_every_tenant(request: HttpRequest) -> bool:
    return tenant_ids_for(request, VIEW_ROLE) is None


def role_in(request: HttpRequest, tenant_id: int | None) -> Role | None:
    """Return the user's role in ``tenant_id``: owner for users who see every tenant."""
    if tenant_id is None:
        return None
    for role in sorted(Role, key=ROLE_RANK.__getitem__, reverse=True):
        if has_role(request, role, tenant_id):
            return role
    return None


def highest_role(request: HttpRequest) -> Role | None:
    """Return the highest role the user holds in any tenant."""
    for role in sorted(Role, key=ROLE_RANK.__getitem__, reverse=True):
        if has_role(request, role):
            return role
    return None


def is_autocomplete_for_managed_tenants(request: HttpRequest) -> bool:
    """Whether the request is the tenant autocomplete of a schedule or membership form.

    A schedule may only be put in, and a member only added to, a tenant the user manages.
    """
    match = request.resolver_match
    if not (match and match.url_name == "autocomplete"):
        return False
    source = (request.GET.get("app_label"), request.GET.get("model_name"))
    return source[0] == "scheduling" or source == ("tenants", "membership")


def set_password_url(request: HttpRequest, user: AbstractBaseUser) -> str:
    """Return the link a new user opens to set their password (Django's password reset token)."""
    path = reverse(
        "admin:tenants_membership_set_password",
        kwargs={
            "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
            "token": default_token_generator.make_token(user),  # type: ignore[arg-type]
        },
    )
    return request.build_absolute_uri(path)


class SetPasswordView(auth_views.PasswordResetConfirmView):
    """Where a member added without a password sets one, then logs in to the admin."""

    success_url = reverse_lazy("admin:login")

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        messages.success(self.request, _("Your password is set: log in with it."))
        return response


class MembershipInline(admin.TabularInline):
    """A tenant's members on its page: editable by those who see every tenant, listed (with a
    link to each membership) for the tenant's owners and admins."""

    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    fields = ["user", "role"]
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet[Membership]:
        qs = super().get_queryset(request).select_related("user")
        ids = tenant_ids_for(request, MANAGE_ROLE)
        return qs if ids is None else qs.filter(tenant_id__in=ids)

    # An inline's ``obj`` is the parent: the tenant whose page shows it.
    def has_view_permission(self, request: HttpRequest, obj: Tenant | None = None) -> bool:
        if sees_every_tenant(request):
            return super().has_view_permission(request, obj)
        return has_role(request, MANAGE_ROLE, getattr(obj, "pk", None))

    def has_add_permission(self, request: HttpRequest, obj: Tenant | None = None) -> bool:
        return sees_every_tenant(request) and super().has_add_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Tenant | None = None) -> bool:
        return sees_every_tenant(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Tenant | None = None) -> bool:
        return sees_every_tenant(request) and super().has_delete_permission(request, obj)


class ScopedReadOnlyAdmin(NotFoundMixin, admin.ModelAdmin):
    """Full rights for users who see every tenant; others may view, in their tenants only."""

    role = VIEW_ROLE
    tenant_attr = "tenant_id"

    def has_module_permission(self, request: HttpRequest) -> bool:
        if sees_every_tenant(request):
            return super().has_module_permission(request)
        return has_role(request, self.role)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if sees_every_tenant(request):
            return super().has_view_permission(request, obj)
        return has_role(request, self.role, getattr(obj, self.tenant_attr, None))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return sees_every_tenant(request) and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return sees_every_tenant(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return sees_every_tenant(request) and super().has_delete_permission(request, obj)


class TenantAdmin(ScopedReadOnlyAdmin):
    list_display = ["name", "slug", "timezone", "is_active", "created"]
    list_filter = ["is_active"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]
    tenant_attr = "pk"
    # Opens internal networks to the tenant's scans and webhooks: superusers only, even where
    # a resolver lets other staff change tenants.
    superuser_fields = ["scan_allow_networks"]

    actions = ["deactivate_tenants", "activate_tenants"]

    @admin.display(description=_("created at"), ordering="created_at")
    def created(self, obj: Tenant) -> str:
        return format_time(obj.created_at, obj.timezone)

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "timezone":
            # A choice of IANA names (searchable), not free text.
            return TimezoneField(
                empty_label="---------",
                required=True,
                label=db_field.verbose_name.capitalize(),
                initial=db_field.default,
                help_text=_("The zone of its schedules and blackout windows that name none."),
            )
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "is_active" and field is not None:
            field.help_text = _(
                "Unticking pauses every schedule of the tenant; ticking it again resumes the "
                "schedules this paused (not those an operator had paused before)."
            )
        return field

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change and "is_active" in form.changed_data:
            count = services.set_tenant_active(
                tenant=obj, active=obj.is_active, user=request.user, source=AuditSource.ADMIN
            )
            self._report_activation(request, [obj], obj.is_active, count)

    def _report_activation(
        self, request: HttpRequest, tenants: list[Any], active: bool, count: int
    ) -> None:
        names = ", ".join(str(tenant) for tenant in tenants)
        if active:
            text = ngettext(
                "%(names)s: active again; %(count)d schedule resumed.",
                "%(names)s: active again; %(count)d schedules resumed.",
                count,
            )
        else:
            text = ngettext(
                "%(names)s: deactivated; %(count)d schedule paused.",
                "%(names)s: deactivated; %(count)d schedules paused.",
                count,
            )
        self.message_user(request, text % {"names": names, "count": count}, messages.SUCCESS)

    def _set_active(self, request: HttpRequest, queryset: QuerySet[Any], active: bool) -> None:
        tenants = [tenant for tenant in queryset if tenant.is_active != active]
        if not tenants:
            self.message_user(
                request,
                _("The selected tenants are active already.")
                if active
                else _("The selected tenants are inactive already."),
                messages.WARNING,
            )
            return
        count = sum(
            services.set_tenant_active(
                tenant=tenant, active=active, user=request.user, source=AuditSource.ADMIN
            )
            for tenant in tenants
        )
        self._report_activation(request, tenants, active, count)

    @admin.action(
        description=_("Deactivate selected tenants (pauses their schedules)"),
        permissions=["change"],
    )
    def deactivate_tenants(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._set_active(request, queryset, False)

    @admin.action(
        description=_("Activate selected tenants (resumes their schedules)"),
        permissions=["change"],
    )
    def activate_tenants(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._set_active(request, queryset, True)

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        if not getattr(request.user, "is_superuser", False):
            fields += [f for f in self.superuser_fields if f not in fields]
        return fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Model]:
        qs = super().get_queryset(request)
        ids = tenant_ids_for(request, VIEW_ROLE)
        return qs if ids is None else qs.filter(pk__in=ids)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Model], search_term: str
    ) -> tuple[QuerySet[Model], bool]:
        queryset, distinct = super().get_search_results(request, queryset, search_term)
        if is_autocomplete_for_managed_tenants(request):
            ids = tenant_ids_for(request, MANAGE_ROLE)
            if ids is not None:
                queryset = queryset.filter(pk__in=ids)
        return queryset, distinct

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, object] | None = None,
    ) -> HttpResponse:
        # The "Add member" button, for those who may add members to this tenant.
        membership_admin = self.admin_site._registry.get(Membership)
        tenant_id = int(object_id) if object_id.isascii() and object_id.isdigit() else None
        if (
            isinstance(membership_admin, MembershipAdmin)
            and tenant_id is not None
            and membership_admin.may_add_to(request, tenant_id)
        ):
            add_url = f"{reverse('admin:tenants_membership_add')}?tenant={tenant_id}"
            extra_context = {**(extra_context or {}), "add_member_url": add_url}
        return super().change_view(request, object_id, form_url, extra_context)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        super().save_formset(request, form, formset, change)
        if formset.model is Membership:
            # Members added or changed on the tenant's page can log in, like those added on
            # the "Add member" page.
            for membership in [*formset.new_objects, *(obj for obj, _ in formset.changed_objects)]:
                members.make_staff(membership.user)


# A host project that swaps SCHEDULING_TENANT_MODEL administers its own model.
if not Tenant._meta.swapped:
    admin.site.register(Tenant, TenantAdmin)


def _base_formfield(field: Any, **kwargs: Any) -> forms.Field | None:
    """Return ``field``'s form field; a foreign key's choices come from the base manager."""
    if isinstance(field, ForeignKey):
        kwargs.setdefault("queryset", field.related_model._base_manager.all())
    return field.formfield(**kwargs)


class MemberAddForm(forms.ModelForm):
    """Add an existing user, or a new one, to a tenant with a role."""

    member = forms.CharField(
        label=_("User"),
        max_length=254,
        help_text=_("The username or e-mail address of an existing user, or a new username."),
    )
    create_user = forms.BooleanField(
        label=_("Create a new user"),
        required=False,
        help_text=_("Tick to create a user with this username (it must not exist yet)."),
    )
    email = forms.EmailField(label=_("E-mail address"), required=False)
    password1 = forms.CharField(
        label=_("Password"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=_(
            "Optional. Without one, saving shows a link for the new member to set their own."
        ),
    )
    password2 = forms.CharField(
        label=_("Password confirmation"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    # The user's role in a tenant, by id; set by the admin that builds the form.
    role_in: Callable[[int | None], Role | None]

    class Meta:
        model = Membership
        fields = ["tenant", "role"]
        # Built when Django starts, outside any request: the tenant field's choices come from
        # the base manager, which needs no context (a django-scopes ScopedManager refuses every
        # query outside a scope). The admin builds the form it shows with its own choices.
        formfield_callback = staticmethod(_base_formfield)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user: AbstractBaseUser | None = None  # the existing user, once the form is valid

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        tenant, role = cleaned.get("tenant"), cleaned.get("role")
        if tenant is not None and role and not members.may_manage(self.role_in(tenant.pk), role):
            self.add_error(
                "role",
                _("Your role in %(tenant)s does not let you grant the role %(role)s.")
                % {"tenant": tenant, "role": Role(role).label},
            )
        identifier = (cleaned.get("member") or "").strip()
        if not identifier:
            return cleaned
        if cleaned.get("create_user"):
            self.clean_new_user(identifier)
            return cleaned
        if cleaned.get("email") or cleaned.get("password1") or cleaned.get("password2"):
            self.add_error(
                "create_user",
                _("The e-mail address and password are for a new user: tick this to create one."),
            )
        try:
            self.user = members.find_user(identifier)
        except ValidationError as exc:
            self.add_error("member", exc)
            return cleaned
        if self.user is None:
            self.add_error(
                "member",
                _(
                    "No user has the username or e-mail address “%(name)s”. Check the spelling, "
                    "or tick “Create a new user”."
                )
                % {"name": identifier},
            )
        elif tenant is not None:
            current = Membership.objects.filter(user_id=self.user.pk, tenant=tenant).first()
            if current is not None:
                self.add_error(
                    "member",
                    _("%(user)s is a member of %(tenant)s already, as %(role)s.")
                    % {"user": self.user, "tenant": tenant, "role": current.get_role_display()},
                )
        return cleaned

    def clean_new_user(self, username: str) -> None:
        password1 = self.cleaned_data.get("password1") or ""
        password2 = self.cleaned_data.get("password2") or ""
        if password1 != password2:
            self.add_error("password2", _("The two password fields didn’t match."))
            return
        try:
            members.validate_new_user(
                username=username, email=self.cleaned_data.get("email") or "", password=password1
            )
        except ValidationError as exc:
            field_of = {"username": "member", "password": "password2"}
            for name, errors in exc.error_dict.items():
                self.add_error(field_of[name], errors)

    def new_user(self) -> AbstractBaseUser:
        """Create the new user the valid form describes."""
        return members.create_user(
            username=self.cleaned_data["member"].strip(),
            email=self.cleaned_data.get("email") or "",
            password=self.cleaned_data.get("password1") or "",
        )


class MemberFilter(admin.SimpleListFilter):
    """ "Me": the memberships of the user who is looking (the user tools link here)."""

    title = _("member")
    parameter_name = "member"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin
    ) -> list[tuple[str, StrOrPromise]]:
        return [("me", _("Me"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Model]) -> QuerySet[Model]:
        return queryset.filter(user_id=request.user.pk) if self.value() == "me" else queryset


@admin.register(Membership)
class MembershipAdmin(NotFoundMixin, admin.ModelAdmin):
    """Everyone sees their own memberships; owners and admins manage their tenants' members."""

    list_display = ["user", "tenant", "role", "joined"]
    list_filter = [MemberFilter, TenantFilter, "role"]
    list_select_related = ["user", "tenant"]
    search_fields = ["user__username", "user__email"]
    add_form = MemberAddForm
    add_fieldsets = [
        (None, {"fields": ["tenant", "member", "role"]}),
        (
            _("New user"),
            {
                "fields": ["create_user", "email", "password1", "password2"],
                "description": _(
                    "Only to add someone who has no user yet. They can log in to the admin "
                    "with the role given above."
                ),
            },
        ),
    ]
    fields = ["user", "tenant", "role"]

    @admin.display(description=_("member since"), ordering="created_at")
    def joined(self, obj: Membership) -> str:
        return format_time(obj.created_at, getattr(obj.tenant, "timezone", None))

    # -- who may do what --------------------------------------------------------------------

    def may_add_to(self, request: HttpRequest, tenant_id: int) -> bool:
        """Whether the user may add members to the tenant ``tenant_id``."""
        if sees_every_tenant(request):
            return super().has_add_permission(request)
        return has_role(request, MANAGE_ROLE, tenant_id)

    def may_manage(self, request: HttpRequest, obj: Membership) -> bool:
        """Whether the user may change or remove the membership ``obj``."""
        return members.may_manage(role_in(request, obj.tenant_id), obj.role)

    def has_module_permission(self, request: HttpRequest) -> bool:
        if sees_every_tenant(request):
            return super().has_module_permission(request)
        return has_role(request, VIEW_ROLE)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if sees_every_tenant(request):
            return super().has_view_permission(request, obj)
        if not isinstance(obj, Membership):
            return has_role(request, VIEW_ROLE)
        return obj.user_id == request.user.pk or has_role(request, MANAGE_ROLE, obj.tenant_id)

    def has_add_permission(self, request: HttpRequest) -> bool:
        if sees_every_tenant(request):
            return super().has_add_permission(request)
        return has_role(request, MANAGE_ROLE)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if sees_every_tenant(request):
            return super().has_change_permission(request, obj)
        if not isinstance(obj, Membership):
            return has_role(request, MANAGE_ROLE)
        return self.may_manage(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if sees_every_tenant(request):
            return super().has_delete_permission(request, obj)
        if not isinstance(obj, Membership):
            return has_role(request, MANAGE_ROLE)
        return self.may_manage(request, obj)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Model]:
        qs = super().get_queryset(request)
        ids = tenant_ids_for(request, MANAGE_ROLE)
        return qs if ids is None else qs.filter(Q(tenant_id__in=ids) | Q(user_id=request.user.pk))

    # -- the forms --------------------------------------------------------------------------

    def get_fieldsets(self, request: HttpRequest, obj: Model | None = None) -> _FieldsetSpec:
        if obj is None:
            return cast("_FieldsetSpec", self.add_fieldsets)
        return super().get_fieldsets(request, obj)

    def get_readonly_fields(
        self, request: HttpRequest, obj: Model | None = None
    ) -> list[str] | tuple[str, ...]:
        # A membership's user and tenant are what it is: to move it, remove and add.
        fields = list(super().get_readonly_fields(request, obj))
        return fields if obj is None else [*fields, "user", "tenant"]

    def get_form(
        self, request: HttpRequest, obj: Model | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm[Any]]:
        if obj is None:
            kwargs["form"] = self.add_form
        form = super().get_form(request, obj, change, **kwargs)
        as_role = highest_role(request) if obj is None else role_in(request, obj.tenant_id)  # type: ignore[attr-defined]
        if "role" in form.base_fields:
            field = form.base_fields["role"]
            field.choices = [  # type: ignore[attr-defined]
                (role.value, role.label) for role in Role if members.may_manage(as_role, role)
            ]
        if obj is None:
            form.role_in = staticmethod(lambda tenant_id: role_in(request, tenant_id))  # type: ignore[attr-defined]
        return form

    def formfield_for_foreignkey(
        self,
        db_field: ForeignKey[Model | None, Model | None],
        request: HttpRequest,
        **kwargs: Any,
    ) -> ModelChoiceField[Model] | None:
        if db_field.name == "tenant":
            kwargs["queryset"] = tenants_visible_to(request.user, min_role=MANAGE_ROLE)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_autocomplete_fields(self, request: HttpRequest) -> list[str]:
        fields = list(super().get_autocomplete_fields(request))
        return [*fields, "tenant"] if tenant_admin_registered(self.admin_site) else fields

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        tenant = str(initial.get("tenant", ""))
        if not (tenant.isascii() and tenant.isdigit() and int(tenant) < 2**63):
            initial.pop("tenant", None)  # ?tenant= is a tenant's id, or nothing
            # The only tenant the user manages needs no choosing.
            managed = tenants_visible_to(request.user, min_role=MANAGE_ROLE)
            managed_ids = list(managed.values_list("pk", flat=True)[:2])
            if len(managed_ids) == 1:
                initial["tenant"] = str(managed_ids[0])
        return initial

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = {"title": _("Add member"), **(extra_context or {})}
        return super().add_view(request, form_url, extra_context)

    # -- the writes, through tenants.members ------------------------------------------------

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        as_role = role_in(request, obj.tenant_id)
        if change:
            members.change_role(obj, role=obj.role, as_role=as_role or "")
            return
        user = form.user
        if user is None:
            user = form.new_user()
            if not user.has_usable_password():
                days = round(settings.PASSWORD_RESET_TIMEOUT / 86400)
                messages.info(
                    request,
                    ngettext(
                        "Send %(user)s this link to set their password (valid for %(days)d day): "
                        "%(url)s",
                        "Send %(user)s this link to set their password (valid for %(days)d days): "
                        "%(url)s",
                        days,
                    )
                    % {"user": user, "days": days, "url": set_password_url(request, user)},
                )
        obj.user_id = user.pk
        members.grant_membership(obj, as_role=as_role or "")

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        members.remove_member(obj, as_role=role_in(request, obj.tenant_id) or "")

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        removals = [(m, role_in(request, m.tenant_id)) for m in queryset.select_related("tenant")]
        with transaction.atomic(using=queryset.db):
            for membership, as_role in removals:
                members.remove_member(membership, as_role=as_role or "")

    def get_urls(self) -> list[URLPattern]:
        # Opened by the new member, before they can log in: not behind the admin's login.
        set_password = path(
            "set-password/<uidb64>/<token>/",
            SetPasswordView.as_view(),
            name="tenants_membership_set_password",
        )
        return [set_password, *super().get_urls()]
