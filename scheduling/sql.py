"""Plain SQL lookups by primary or foreign key, for the scheduler's passes and batches.

Building the ORM's ``__in`` lookup of a thousand ids cost more than running the query: the
scheduler's pass and the recorder's batches read these columns by hand. Each id list is cut
into slices of 900, under SQLite's limit of host parameters.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from django.db import connection

SLICE = 900


def column(model: Any, name: str) -> str:
    """The quoted column of ``model``'s field ``name``."""
    return connection.ops.quote_name(cast("str", model._meta.get_field(name).column))


def select_by_ids(
    model: Any, key: str, value: str, ids: Iterable[int], where: str = "", params: Any = ()
) -> list[Any]:
    """``(key, value)`` of the rows of ``model`` whose ``key`` is in ``ids``, and ``where``.

    ``ids`` are integers (the app's own keys); ``where`` is SQL with ``%s`` for ``params``.
    """
    key_column = column(model, key)
    head = (
        f"SELECT {key_column}, {column(model, value)} "  # noqa: S608 (quoted identifiers)
        f"FROM {connection.ops.quote_name(model._meta.db_table)} "
        f"WHERE {where + ' AND ' if where else ''}{key_column} IN "
    )
    ordered = sorted(ids)
    rows: list[Any] = []
    with connection.cursor() as cursor:
        for start in range(0, len(ordered), SLICE):
            part = ordered[start : start + SLICE]
            cursor.execute(f"{head}({', '.join(['%s'] * len(part))})", [*params, *part])
            rows.extend(cursor.fetchall())
    return rows


def keys_in(
    model: Any, key: str, ids: Iterable[int], where: str = "", params: Any = ()
) -> set[int]:
    """Those of ``ids`` that some row of ``model`` (and ``where``) has as its ``key``."""
    return {found for found, _same in select_by_ids(model, key, key, ids, where, params)}
