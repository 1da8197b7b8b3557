"""A schedule's tenant is fixed in the admin; host names, tracebacks and webhook URLs are for
the tenant's admins (issue 17, items 5 and 9)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from scheduling.models import AuditEntry, PeriodicScan
from tests.factories import make_alert_rule, make_execution, make_scan
from tests.scheduling.admin.test_admin import add_form

pytestmark = pytest.mark.django_db

TRACEBACK = 'Traceback (most recent call last):\n  File "/srv/app/secret_module.py", line 3'
WORKER = "scan-host-7:4242"
CLAIMED_BY = "lease-host-9:77:ab12"
WEBHOOK = "https://hooks.example.com/services/T000/B000/s3cr3t-token?key=hush"


# -- item 5: the tenant of an existing schedule is fixed ---------------------------------------


def test_moving_a_schedule_to_another_tenant_is_refused_without_a_500(
    staff_client, tenant_a, tenant_b
):
    tenant_b.max_schedules = 0  # the destination's quota would refuse it
    tenant_b.save()
    scan = make_scan(tenant=tenant_a, name="nightly", scan_type="test_echo", target="x")
    make_execution(schedule=scan, error="boom")
    client = staff_client({tenant_a: "admin", tenant_b: "admin"})
    url = reverse("admin:scheduling_periodicscan_change", args=[scan.pk])

    page = client.get(url)
    assert page.status_code == 200
    assert "tenant" not in page.context["adminform"].form.fields  # shown read-only

    response = client.post(url, add_form(tenant_b, name="nightly", description="moved?"))
    assert response.status_code in (200, 302)
    scan.refresh_from_db()
    assert scan.tenant_id == tenant_a.pk
    assert scan.executions.get().tenant_id == tenant_a.pk
    assert not AuditEntry.objects.filter(tenant=tenant_b).exists()


def test_the_form_refuses_a_tenant_change_even_when_the_field_is_editable(
    rf, staff_client, tenant_a, tenant_b
):
    from scheduling.admin.forms import ScheduleAdminForm

    scan = make_scan(tenant=tenant_a, name="nightly", scan_type="test_echo", target="x")

    class Form(ScheduleAdminForm):
        class Meta:
            model = PeriodicScan
            fields = ["tenant", "name", "scan_type", "target", "options", "trigger_type"]

    data = {
        "tenant": tenant_b.pk,
        "name": "nightly",
        "scan_type": "test_echo",
        "target": "x",
        "options": "{}",
        "trigger_type": "interval",
    }
    form = Form(data, instance=scan)
    assert not form.is_valid()
    assert form.errors["tenant"] == ["The tenant of a schedule cannot be changed."]
    scan.refresh_from_db()
    assert scan.tenant_id == tenant_a.pk


def test_services_refuse_a_tenant_change(tenant_a, tenant_b):
    from django.core.exceptions import ValidationError

    from scheduling import services

    scan = make_scan(tenant=tenant_a, scan_type="test_echo", target="x")
    with pytest.raises(ValidationError) as info:
        services.update_schedule(schedule=scan, data={"tenant": tenant_b, "priority": 3})
    assert info.value.message_dict == {"tenant": ["The tenant of a schedule cannot be changed."]}
    scan.refresh_from_db()
    assert (scan.tenant_id, scan.priority) == (tenant_a.pk, 0)
    # Naming the same tenant is no change.
    services.update_schedule(schedule=scan, data={"tenant": tenant_a, "priority": 3})
    scan.refresh_from_db()
    assert scan.priority == 3


# -- item 9: internals only for the tenant's admins and owners ----------------------------------


@pytest.fixture
def failed(tenant_a):
    scan = make_scan(tenant=tenant_a, name="nightly", scan_type="test_echo", target="x")
    return make_execution(
        schedule=scan,
        status="failed",
        error="connection refused",
        traceback=TRACEBACK,
        worker=WORKER,
        claimed_by=CLAIMED_BY,
    )


def execution_pages(client, execution):
    changelist = client.get(reverse("admin:scheduling_execution_changelist"))
    change = client.get(reverse("admin:scheduling_execution_change", args=[execution.pk]))
    assert (changelist.status_code, change.status_code) == (200, 200)
    return changelist.content.decode() + change.content.decode()


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_members_below_admin_see_the_error_but_no_traceback_or_host_names(
    staff_client, tenant_a, failed, role
):
    page = execution_pages(staff_client({tenant_a: role}), failed)
    assert "connection refused" in page
    for secret in ("secret_module", "/srv/app", WORKER, CLAIMED_BY, "scan-host", "lease-host"):
        assert secret not in page


@pytest.mark.parametrize("role", ["admin", "owner"])
def test_admins_and_owners_see_traceback_and_host_names(staff_client, tenant_a, failed, role):
    page = execution_pages(staff_client({tenant_a: role}), failed)
    assert "secret_module.py" in page and WORKER in page and CLAIMED_BY in page


def test_superusers_see_traceback_and_host_names(superuser_client, failed):
    page = execution_pages(superuser_client, failed)
    assert "secret_module.py" in page and WORKER in page


def test_an_admin_of_another_tenant_gets_404_for_the_execution(staff_client, tenant_b, failed):
    client = staff_client({tenant_b: "admin"})
    url = reverse("admin:scheduling_execution_change", args=[failed.pk])
    assert client.get(url).status_code == 404


def test_admin_of_one_tenant_viewer_of_another_sees_internals_only_in_the_first(
    staff_client, tenant_a, tenant_b, failed
):
    scan_b = make_scan(tenant=tenant_b, scan_type="test_echo", target="x")
    other = make_execution(schedule=scan_b, status="failed", traceback=TRACEBACK, worker=WORKER)
    client = staff_client({tenant_a: "admin", tenant_b: "viewer"})
    assert "secret_module.py" in execution_pages(client, failed)
    assert "secret_module.py" not in execution_pages(client, other)


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_members_below_admin_see_the_webhook_host_but_not_its_path_or_query(
    staff_client, tenant_a, role
):
    rule = make_alert_rule(tenant=tenant_a, webhook_url=WEBHOOK)
    client = staff_client({tenant_a: role})
    page = client.get(reverse("admin:scheduling_alertrule_change", args=[rule.pk]))
    assert page.status_code == 200
    text = page.content.decode()
    assert "https://hooks.example.com/…" in text
    assert "s3cr3t-token" not in text and "hush" not in text
    listing = client.get(reverse("admin:scheduling_alertrule_changelist")).content.decode()
    assert "s3cr3t-token" not in listing


def test_admins_see_and_edit_the_whole_webhook_url(staff_client, tenant_a):
    rule = make_alert_rule(tenant=tenant_a, webhook_url=WEBHOOK)
    client = staff_client({tenant_a: "admin"})
    page = client.get(reverse("admin:scheduling_alertrule_change", args=[rule.pk]))
    assert "webhook_url" in page.context["adminform"].form.fields
    assert "s3cr3t-token" in page.content.decode()


def test_mask_url_keeps_scheme_host_and_port_only():
    from scheduling.models import mask_url

    assert mask_url(WEBHOOK) == "https://hooks.example.com/…"
    assert mask_url("https://user:pw@[2001:db8::1]:8443/x?y=z") == "https://[2001:db8::1]:8443/…"
    assert mask_url("") == ""
