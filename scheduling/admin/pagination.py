"""The changelist of a history that grows: count a bounded number of rows, never the table.

Django's changelist asks its paginator how many rows match the filters, and the paginator runs
``COUNT(*)`` over them: on a history of millions of executions that reads the whole table (or
a whole index) at every page view, for a number nobody needs exactly. ``CappedCountPaginator``
counts the rows of a subquery limited to one more than ``count_limit``: it reads at most that
many index entries, and the changelist says "more than 10,000" past it. Pages stop there as
well; an OFFSET far into the table costs as much as the count did, and the filters (status,
schedule, tenant, finished at) narrow a long history instead.
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property


class CappedCountPaginator(Paginator):
    """A paginator that counts no further than ``count_limit`` rows (then ``capped`` is set)."""

    count_limit = 10_000

    @cached_property
    def count(self) -> int:
        """The number of rows, or ``count_limit + 1`` when there are more."""
        rows = self.object_list
        if not isinstance(rows, QuerySet):
            return len(rows)
        # A sliced queryset counts in a subquery: SELECT COUNT(*) FROM (... LIMIT n) subquery.
        return rows.order_by()[: self.count_limit + 1].count()

    @property
    def capped(self) -> bool:
        """Whether more rows match than were counted."""
        return self.count > self.count_limit


class CappedCountChangeList(ChangeList):
    """A changelist whose paginator may stop counting (see ``CappedCountPaginator``)."""

    paginator: Any

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        if getattr(self.paginator, "capped", False):
            # The search form would print the cap as the number of results: it prints a
            # count only when it differs from the full count, so make them the same.
            self.full_result_count = self.result_count
