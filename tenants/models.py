"""The default tenant model and the membership that gives users a role in a tenant."""

from __future__ import annotations

from typing import Self

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from scheduling.targets import validate_network_list
from scheduling.validators import validate_timezone_name as validate_timezone


class TenantQuerySet(models.QuerySet["Tenant"]):
    def active(self) -> Self:
        return self.filter(is_active=True)


class Tenant(models.Model):
    name = models.CharField(_("name"), max_length=200)
    slug = models.SlugField(_("slug"), max_length=100, unique=True)
    timezone = models.CharField(
        _("time zone"), max_length=64, default="UTC", validators=[validate_timezone]
    )
    is_active = models.BooleanField(
        _("active"),
        default=True,
        help_text=_("Schedules of an inactive tenant are not run."),
    )
    max_schedules = models.PositiveIntegerField(
        _("maximum schedules"),
        null=True,
        blank=True,
        help_text=_("Leave empty for the SCHEDULING_MAX_SCHEDULES_PER_TENANT default."),
    )
    max_concurrent_executions = models.PositiveIntegerField(
        _("maximum concurrent executions"),
        null=True,
        blank=True,
        help_text=_("Leave empty for the SCHEDULING_TENANT_CONCURRENCY default."),
    )
    execution_retention_days = models.PositiveIntegerField(
        _("execution retention (days)"),
        null=True,
        blank=True,
        help_text=_("Leave empty for the SCHEDULING_EXECUTION_RETENTION_DAYS default."),
    )
    scan_allow_networks = models.TextField(
        _("scan allow list"),
        blank=True,
        default="",
        validators=[validate_network_list],
        help_text=_(
            "Internal networks this tenant's scans and alert webhooks may reach besides public "
            "addresses: CIDRs such as 10.20.0.0/16, one per line or comma-separated. Only "
            "superusers can change it."
        ),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        swappable = "SCHEDULING_TENANT_MODEL"
        ordering = ["name"]
        verbose_name = _("tenant")
        verbose_name_plural = _("tenants")

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    OWNER = "owner", _("Owner")
    ADMIN = "admin", _("Admin")
    OPERATOR = "operator", _("Operator")
    VIEWER = "viewer", _("Viewer")


# Roles ordered by what they may do; a role may do everything the roles after it may.
ROLE_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2, Role.OWNER: 3}


class Membership(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="tenant_memberships",
        verbose_name=_("user"),
    )
    tenant = models.ForeignKey(
        getattr(settings, "SCHEDULING_TENANT_MODEL", "tenants.Tenant"),
        on_delete=models.CASCADE,
        related_name="memberships",
        verbose_name=_("tenant"),
    )
    role = models.CharField(_("role"), max_length=16, choices=Role, default=Role.VIEWER)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        constraints = [
            models.UniqueConstraint(fields=["user", "tenant"], name="membership_unique_user_tenant")
        ]
        indexes = [models.Index(fields=["tenant", "role"], name="membership_tenant_role_idx")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant} ({self.get_role_display()})"

    def allows(self, role: str) -> bool:
        """Return whether this membership's role is at least ``role``."""
        return ROLE_RANK[Role(self.role)] >= ROLE_RANK[Role(role)]
