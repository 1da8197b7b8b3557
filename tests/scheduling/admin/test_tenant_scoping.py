"""Staff of tenant A cannot see, choose or act on tenant B's objects anywhere in the admin."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from scheduling.models import Execution, PeriodicScan
from tests.factories import (
    make_artifact,
    make_cleanup,
    make_execution,
    make_membership,
    make_report,
    make_scan,
    make_user,
)
from tests.scheduling.admin.test_admin import add_form

pytestmark = pytest.mark.django_db

SECRET = "Bravo-secret"


@pytest.fixture
def world(tenant_a, tenant_b):
    """Matching objects in both tenants; B's names all contain SECRET."""
    objects = {}
    for tenant, label in ((tenant_a, "Alpha"), (tenant_b, SECRET)):
        scan = make_scan(tenant=tenant, name=f"{label} scan", scan_type="test_echo", target="x")
        report = make_report(tenant=tenant, name=f"{label} report")
        cleanup = make_cleanup(tenant=tenant, name=f"{label} cleanup")
        execution = make_execution(schedule=report, error=f"{label} error")
        artifact = make_artifact(execution=execution, filename=f"{label}.csv")
        make_membership(user=make_user(username=f"{label}-member"), tenant=tenant, role="owner")
        objects[tenant.slug] = {
            "tenant": tenant,
            "scan": scan,
            "report": report,
            "cleanup": cleanup,
            "execution": execution,
            "artifact": artifact,
        }
    return objects


@pytest.fixture
def a_admin(staff_client, tenant_a, world):
    return staff_client({tenant_a: "admin"})


CHANGELISTS = [
    "scheduling_periodicscan",
    "scheduling_report",
    "scheduling_cleanupconfig",
    "scheduling_execution",
    "scheduling_reportartifact",
    "tenants_tenant",
    "tenants_membership",
]


@pytest.mark.parametrize("model", CHANGELISTS)
def test_changelists_filters_and_counts_show_only_own_tenant(a_admin, model):
    response = a_admin.get(reverse(f"admin:{model}_changelist"))
    assert response.status_code == 200
    page = response.content.decode()
    assert SECRET not in page
    assert "Tenant B" not in page  # not as a row, not as a filter choice
    # tenant A has one of each; two memberships: its owner and the staff member
    assert response.context["cl"].result_count == (2 if model == "tenants_membership" else 1)


@pytest.mark.parametrize("model", CHANGELISTS[:5])
def test_filtering_by_another_tenants_id_shows_nothing(a_admin, world, model):
    tenant_b = world["tenant-b"]["tenant"]
    response = a_admin.get(reverse(f"admin:{model}_changelist"), {"tenant": tenant_b.pk})
    assert response.status_code == 200
    assert SECRET not in response.content.decode()
    assert response.context["cl"].result_count == 0


def test_tenant_filter_offers_only_visible_tenants(a_admin):
    response = a_admin.get(reverse("admin:scheduling_periodicscan_changelist"))
    [tenant_filter] = [f for f in response.context["cl"].filter_specs if f.title == "tenant"]
    assert [label for _value, label in tenant_filter.lookup_choices] == ["Tenant A"]


OBJECT_PAGES = ["change", "history", "delete"]
OBJECTS = [
    ("scan", "scheduling_periodicscan"),
    ("report", "scheduling_report"),
    ("cleanup", "scheduling_cleanupconfig"),
    ("execution", "scheduling_execution"),
    ("artifact", "scheduling_reportartifact"),
    ("tenant", "tenants_tenant"),
]


@pytest.mark.parametrize("page", OBJECT_PAGES)
@pytest.mark.parametrize(("key", "model"), OBJECTS)
def test_another_tenants_object_pages_are_not_found(a_admin, world, key, model, page):
    obj = world["tenant-b"][key]
    response = a_admin.get(reverse(f"admin:{model}_{page}", args=[obj.pk]))
    assert response.status_code == 404
    assert SECRET not in response.content.decode()


def test_schedule_lookup_pages_lead_to_own_schedules_only(a_admin, world):
    mine, theirs = world["tenant-a"]["scan"], world["tenant-b"]["scan"]
    response = a_admin.get(reverse("admin:scheduling_schedule_change", args=[mine.pk]))
    assert response.url == reverse("admin:scheduling_periodicscan_change", args=[mine.pk])
    response = a_admin.get(reverse("admin:scheduling_schedule_change", args=[theirs.pk]))
    assert response.status_code == 404


def autocomplete(client, model, field):
    response = client.get(
        reverse("admin:autocomplete"),
        {"app_label": "scheduling", "model_name": model, "field_name": field, "term": ""},
    )
    assert response.status_code == 200, response.content[:500]
    return [item["text"] for item in json.loads(response.content)["results"]]


def test_tenant_autocomplete_returns_only_tenants_the_user_manages(
    staff_client, tenant_a, tenant_b, world
):
    client = staff_client({tenant_a: "admin", tenant_b: "viewer"})
    assert autocomplete(client, "periodicscan", "tenant") == ["Tenant A"]


def test_dependency_autocomplete_returns_only_own_schedules(a_admin):
    names = autocomplete(a_admin, "periodicscan", "depends_on")
    assert names and all(name.startswith("Alpha") for name in names)


def test_form_choices_and_posts_are_limited_to_own_tenant(a_admin, world):
    tenant_a, tenant_b = world["tenant-a"]["tenant"], world["tenant-b"]["tenant"]
    url = reverse("admin:scheduling_periodicscan_add")
    form = a_admin.get(url).context["adminform"].form
    assert list(form.fields["tenant"].queryset) == [tenant_a]
    assert set(form.fields["depends_on"].queryset.values_list("tenant_id", flat=True)) == {
        tenant_a.pk
    }
    response = a_admin.post(url, add_form(tenant_b, name="sneaky"))
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    response = a_admin.post(
        url, add_form(tenant_a, name="sneaky", depends_on=[world["tenant-b"]["scan"].pk])
    )
    assert response.status_code == 200
    assert not PeriodicScan.objects.filter(name="sneaky").exists()


def test_actions_posted_with_another_tenants_ids_do_nothing(a_admin, world):
    theirs = world["tenant-b"]["scan"]
    for action in ("run_now", "disable", "duplicate", "delete_selected"):
        a_admin.post(
            reverse("admin:scheduling_periodicscan_changelist"),
            {"action": action, "_selected_action": [theirs.pk], "post": "yes"},
        )
    theirs.refresh_from_db()
    assert theirs.enabled
    assert not Execution.objects.filter(schedule=theirs, trigger="manual").exists()
    assert PeriodicScan.objects.filter(tenant=theirs.tenant).count() == 1


def test_inline_executions_belong_to_the_schedule_only(a_admin, world):
    report = world["tenant-a"]["report"]
    response = a_admin.get(reverse("admin:scheduling_report_change", args=[report.pk]))
    page = response.content.decode()
    assert "Alpha error" in page and SECRET not in page


def test_artifact_downloads_only_for_own_tenant(a_admin, world):
    mine, theirs = world["tenant-a"]["artifact"], world["tenant-b"]["artifact"]
    response = a_admin.get(reverse("admin:scheduling_reportartifact_download", args=[mine.pk]))
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="Alpha.csv"'
    assert response.content == b"name,count\nalpha,1\n"
    response = a_admin.get(reverse("admin:scheduling_reportartifact_download", args=[theirs.pk]))
    assert response.status_code == 404


def test_artifact_is_downloadable_from_its_execution(a_admin, world):
    execution, artifact = world["tenant-a"]["execution"], world["tenant-a"]["artifact"]
    response = a_admin.get(reverse("admin:scheduling_execution_change", args=[execution.pk]))
    url = reverse("admin:scheduling_reportartifact_download", args=[artifact.pk])
    assert f'href="{url}"' in response.content.decode()


def test_preview_ignores_another_tenants_id(a_admin, world):
    theirs = world["tenant-b"]
    url = reverse("admin:scheduling_periodicscan_preview")
    data = {"trigger_type": "cron", "cron_expression": "0 3 * * *", "tenant": theirs["tenant"].pk}
    response = a_admin.post(url, {**PREVIEW_DEFAULTS, **data})
    # B's time zone (America/New_York) is not used: the preview falls back to UTC.
    assert json.loads(response.content)["timezone"] == "UTC"
    response = a_admin.post(url, {**PREVIEW_DEFAULTS, **data, "object_id": theirs["scan"].pk})
    assert response.status_code == 404


PREVIEW_DEFAULTS = {
    "jitter_seconds": "0",
    "dst_gap_policy": "run_at_next_valid_time",
    "dst_fold_policy": "once",
}


def test_viewer_gets_read_only_pages(staff_client, tenant_a, world):
    client = staff_client({tenant_a: "viewer"})
    scan = world["tenant-a"]["scan"]
    url = reverse("admin:scheduling_periodicscan_change", args=[scan.pk])
    response = client.get(url)
    assert response.status_code == 200
    assert response.context["has_change_permission"] is False
    assert 'name="name"' not in response.content.decode()
    assert client.post(url, {"name": "renamed"}).status_code == 403
    assert client.get(reverse("admin:scheduling_periodicscan_add")).status_code == 403
    assert (
        client.get(reverse("admin:scheduling_periodicscan_delete", args=[scan.pk])).status_code
        == 403
    )


def test_staff_without_membership_sees_no_scheduling_admin(staff_client, world):
    client = staff_client({})
    response = client.get(reverse("admin:index"))
    assert "Periodic scans" not in response.content.decode()
    response = client.get(reverse("admin:scheduling_periodicscan_changelist"))
    assert response.status_code == 403


def test_tenant_pages_are_read_only_for_tenant_staff(staff_client, tenant_a, world):
    client = staff_client({tenant_a: "owner"})
    url = reverse("admin:tenants_tenant_change", args=[tenant_a.pk])
    response = client.get(url)
    assert response.status_code == 200
    assert client.post(url, {"name": "renamed"}).status_code == 403
    tenant_a.refresh_from_db()
    assert tenant_a.name == "Tenant A"
    # the tenant's members are listed (admin and owner see them), never B's
    page = response.content.decode()
    assert "Alpha-member" in page and SECRET not in page


def test_viewer_sees_only_their_own_membership(staff_client, tenant_a, world):
    client = staff_client({tenant_a: "viewer"})
    memberships = client.get(reverse("admin:tenants_membership_changelist"))
    assert [m.user for m in memberships.context["cl"].result_list] == [client.user]
    response = client.get(reverse("admin:tenants_tenant_change", args=[tenant_a.pk]))
    assert "Alpha-member" not in response.content.decode()


def test_tenant_admin_deletes_own_schedule_but_operator_cannot(staff_client, tenant_a, world):
    scan = world["tenant-a"]["scan"]
    url = reverse("admin:scheduling_periodicscan_delete", args=[scan.pk])
    operator = staff_client({tenant_a: "operator"})
    assert operator.post(url, {"post": "yes"}).status_code == 403
    admin = staff_client({tenant_a: "admin"})
    response = admin.get(url)
    assert response.status_code == 200 and not response.context["perms_lacking"]
    assert admin.post(url, {"post": "yes"}).status_code == 302
    assert not PeriodicScan.objects.filter(pk=scan.pk).exists()
