"""Pagination: page numbers for schedules and artifacts, a cursor for the execution log."""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING

from django.utils.dateparse import parse_datetime
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination, PageNumberPagination

if TYPE_CHECKING:
    from rest_framework.pagination import Cursor
    from rest_framework.request import Request


class PagePagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class ExecutionCursorPagination(CursorPagination):
    # The log grows at the head while a client pages through it: a cursor neither repeats
    # nor skips rows the way page numbers would.
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
    ordering = ("-scheduled_for", "-id")

    def decode_cursor(self, request: Request) -> Cursor | None:
        """Reject a tampered cursor whose position is not an aware datetime (404, not 500)."""
        cursor = super().decode_cursor(request)
        if cursor is not None and cursor.position is not None:
            try:
                # DRF keeps a cursor's position as the text of the ordering value (a datetime
                # here); the stubs declare it int.
                position = parse_datetime(cursor.position)  # type: ignore[arg-type]
                in_utc = (
                    position.astimezone(UTC)
                    if position is not None and position.utcoffset() is not None
                    else None
                )
            except (ValueError, OverflowError):
                in_utc = None
            if in_utc is None:
                raise NotFound(self.invalid_cursor_message)
            # In UTC: PostgreSQL rejects offsets beyond 15:59 that Python accepts (-21:00).
            # Text again, as DRF keeps it (the stubs' int, as above).
            cursor = cursor._replace(position=in_utc.isoformat())  # type: ignore[arg-type]
        return cursor
