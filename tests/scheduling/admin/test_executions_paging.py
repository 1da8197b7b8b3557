"""The executions changelist on a long history: a bounded count, pages, no whole-table query."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from scheduling.admin.executions import ExecutionAdmin
from scheduling.admin.pagination import CappedCountPaginator
from scheduling.models import Execution, Status
from tests.factories import make_execution, make_scan

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:scheduling_execution_changelist"


@pytest.fixture
def small_limits(monkeypatch):
    """Count up to 5 rows, 3 rows a page: 12 executions are a long history."""
    monkeypatch.setattr(CappedCountPaginator, "count_limit", 5)
    monkeypatch.setattr(ExecutionAdmin, "list_per_page", 3)


def history(tenant, n, **fields):
    scan = make_scan(tenant=tenant)
    return [make_execution(schedule=scan, **fields) for _ in range(n)]


def get(client, **params):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse(CHANGELIST), params)
    assert response.status_code == 200
    return response, [q["sql"] for q in queries.captured_queries]


def execution_queries(sqls):
    return [sql for sql in sqls if re.search(r'FROM "scheduling_execution"', sql)]


def test_past_the_count_limit_the_list_says_more_than_and_its_pages_still_work(
    superuser_client, tenant_a, small_limits
):
    rows = history(tenant_a, 12)
    newest_first = sorted(rows, key=lambda e: e.scheduled_for, reverse=True)

    first, _sqls = get(superuser_client)
    second, _sqls = get(superuser_client, p=2)

    cl = first.context["cl"]
    assert cl.paginator.capped
    assert cl.result_count == 6  # the limit and one more: "there are more"
    assert "More than 5 executions" in first.content.decode()
    assert [e.pk for e in cl.result_list] == [e.pk for e in newest_first[:3]]
    assert [e.pk for e in second.context["cl"].result_list] == [e.pk for e in newest_first[3:6]]


def test_below_the_count_limit_the_list_counts_exactly_as_before(
    superuser_client, tenant_a, small_limits
):
    history(tenant_a, 4)

    response, _sqls = get(superuser_client)

    cl = response.context["cl"]
    assert not cl.paginator.capped
    assert cl.result_count == 4
    content = response.content.decode()
    assert "4 executions" in content
    assert "More than" not in content
    assert re.search(
        r"Select all 4 executions", content
    )  # two pages: the rows of both can be chosen


def test_past_the_count_limit_there_is_no_select_all_across_pages(
    superuser_client, tenant_a, small_limits
):
    history(tenant_a, 12)

    response, _sqls = get(superuser_client)

    content = response.content.decode()
    assert not re.search(r"Select all \d+ executions", content)
    assert 'class="action-counter"' in content  # the page's own rows stay selectable


@pytest.mark.parametrize(
    "params",
    [{}, {"status__exact": Status.FAILED}, {"_facets": ""}],
    ids=["unfiltered", "by-status", "facets-asked-for"],
)
def test_no_query_reads_the_whole_history(superuser_client, tenant_a, small_limits, params):
    history(tenant_a, 8, status=Status.FAILED)
    history(tenant_a, 4)

    response, sqls = get(superuser_client, **params)

    assert response.context["cl"].result_list
    reads = execution_queries(sqls)
    # The bounded count and the page: each stops at a LIMIT. No COUNT(*) of every matching
    # row, no facet counts per filter choice, no DISTINCT dates for a date hierarchy.
    assert len(reads) == 2, reads
    assert all("LIMIT" in sql.upper() for sql in reads), reads
    assert not any("DISTINCT" in sql.upper() for sql in reads), reads


def test_a_tenant_filtered_list_counts_only_that_tenants_rows(
    superuser_client, tenant_a, tenant_b, small_limits
):
    history(tenant_a, 2)
    history(tenant_b, 12)

    response, sqls = get(superuser_client, tenant=tenant_a.pk)

    assert response.context["cl"].result_count == 2
    [count] = [sql for sql in execution_queries(sqls) if "COUNT(" in sql.upper()]
    assert "LIMIT 6" in count.upper()


def test_the_paginator_counts_a_plain_list_by_its_length():
    paginator = CappedCountPaginator(list(range(7)), 3)
    paginator.count_limit = 5
    assert paginator.count == 7
    assert paginator.capped
    assert paginator.num_pages == 3


def test_the_paginator_caps_a_queryset_of_more_rows_than_its_limit(tenant_a):
    history(tenant_a, 9)
    paginator = CappedCountPaginator(Execution.objects.order_by("pk"), 4)
    paginator.count_limit = 5
    assert paginator.count == 6
    assert paginator.num_pages == 2
    assert len(paginator.page(2).object_list) == 2
