"""Admin pages run a constant number of queries whatever the row count."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.factories import (
    make_artifact,
    make_cleanup,
    make_execution,
    make_membership,
    make_report,
    make_scan,
    make_tenant,
    make_user,
)
from tests.scheduling.admin.test_tenant_scoping import CHANGELISTS

pytestmark = pytest.mark.django_db


# Queries of a changelist page at most (the user tools' "Your roles" is one of them), and what
# a list adds to them: the executions list also loads the schedules its "schedule" filter offers.
CEILING = 13
EXTRA = {"scheduling_execution": 1}


def populate(n, *, member):
    """Give ``member`` (admin) ``n`` tenants, each with one object of every kind."""
    first = None
    for i in range(n):
        tenant = make_tenant(name=f"T{i}", slug=f"t{i}-{n}", timezone="Europe/Berlin")
        make_membership(user=member, tenant=tenant, role="admin")
        scan = make_scan(tenant=tenant, trigger_type="cron", cron_expression="*/5 * * * *")
        report = make_report(tenant=tenant, last_status="failed")
        make_cleanup(tenant=tenant, paused_until=None, enabled=i % 2 == 0)
        execution = make_execution(schedule=report, error="boom\nTraceback...")
        make_artifact(execution=execution)
        first = first or scan
        make_execution(schedule=first)
    return first


def count_queries(client, url):
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return len(ctx.captured_queries)


@pytest.fixture(params=["superuser", "tenant staff"])
def member_client(request, client):
    user = make_user(is_staff=True, is_superuser=request.param == "superuser")
    client.force_login(user)
    client.member = user
    return client


def test_changelists_do_not_grow_from_5_to_200_rows(member_client, django_assert_max_num_queries):
    populate(5, member=member_client.member)
    small = {m: count_queries(member_client, reverse(f"admin:{m}_changelist")) for m in CHANGELISTS}
    populate(195, member=member_client.member)
    for model in CHANGELISTS:
        url = reverse(f"admin:{model}_changelist")
        with django_assert_max_num_queries(small[model]):
            response = member_client.get(url)
        assert response.context["cl"].result_count >= 200
        assert small[model] <= CEILING + EXTRA.get(model, 0), (model, small[model])


def test_schedule_change_page_does_not_grow_with_executions(
    member_client, django_assert_max_num_queries
):
    scan = populate(5, member=member_client.member)
    url = reverse("admin:scheduling_periodicscan_change", args=[scan.pk])
    small = count_queries(member_client, url)
    for _ in range(195):
        make_execution(schedule=scan, error="x" * 500)
    with django_assert_max_num_queries(small):
        response = member_client.get(url)
    # the inline shows the latest ten, not the whole history
    assert len(response.context["inline_admin_formsets"][0].formset.forms) == 10


def test_filtered_execution_changelist_does_not_count_all_executions(superuser_client, tenant_a):
    scan = make_scan(tenant=tenant_a)
    make_execution(schedule=scan, status="failed")
    make_execution(schedule=scan)
    with CaptureQueriesContext(connection) as ctx:
        response = superuser_client.get(
            reverse("admin:scheduling_execution_changelist"), {"status": "failed"}
        )
    assert response.context["cl"].result_count == 1
    counts = [q["sql"] for q in ctx.captured_queries if "COUNT(" in q["sql"].upper()]
    # the paginator counts the filtered rows; nothing counts the whole table
    assert len(counts) == 1 and "WHERE" in counts[0].upper()


@pytest.mark.parametrize(
    "model", ["scheduling_execution", "scheduling_reportartifact"], ids=["executions", "artifacts"]
)
def test_times_in_each_schedules_zone_cost_no_query_per_row(
    superuser_client, tenant_a, model, django_assert_max_num_queries
):
    zones = ["Asia/Tokyo", "America/New_York", ""]  # "": the tenant's, Europe/Berlin

    def add(n):
        for i in range(n):
            report = make_report(tenant=tenant_a, timezone=zones[i % 3])
            make_artifact(execution=make_execution(schedule=report, error="boom\nmore"))
            if i % 4 == 3:
                report.delete()  # its history reads in the tenant's zone

    url = reverse(f"admin:{model}_changelist")
    add(6)
    small = count_queries(superuser_client, url)
    add(94)
    with django_assert_max_num_queries(small):
        response = superuser_client.get(url)
    labels = set(re.findall(r"\d\d:\d\d:\d\d ([A-Z]{3,4})\b", response.content.decode()))
    # Tokyo, New York and the tenant's Berlin, in winter or summer time.
    assert "JST" in labels and labels & {"EST", "EDT"} and labels & {"CET", "CEST"}
