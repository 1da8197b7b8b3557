"""Plain SQL for the scheduler: lookups by key, and bulk writes staged through COPY.

Building the ORM's ``__in`` lookup of a thousand ids cost more than running the query: the
scheduler's pass and the recorder's batches read these columns by hand. Each id list is cut
into slices of 900, under SQLite's limit of host parameters.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, cast

from django.db import connection

SLICE = 900
# Rows from which a bulk write on PostgreSQL streams them through COPY (``staged``).
COPY_FROM = 200


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


def copies(db: Any = connection) -> bool:
    """Whether ``db`` is PostgreSQL through psycopg 3 (``staged`` works on it)."""
    if db.vendor != "postgresql":
        return False
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return bool(is_psycopg3)


@contextlib.contextmanager
def staged(
    name: str, columns: Sequence[tuple[str, str]], rows: Iterable[Sequence[Any]]
) -> Iterator[Any]:
    """A temporary table ``name`` holding ``rows``, streamed in with ``COPY``; yield a cursor.

    PostgreSQL only (``copies()``), inside a transaction. ``columns`` are ``(name, type)``
    pairs; the rows travel in COPY's binary format (byte strings as they are, not escaped).
    A statement per row, even pipelined, cost the server and the client more than the rows'
    own writes; COPY hands them over in one stream, and one statement then applies them
    all. The table is dropped when the block ends; on an error, the rollback of the
    transaction that created it removes it.
    """
    table = connection.ops.quote_name(name)
    with connection.cursor() as cursor:
        definition = ", ".join(f"{column} {kind}" for column, kind in columns)
        cursor.execute(f"CREATE TEMPORARY TABLE {table} ({definition}) ON COMMIT DROP")
        # psycopg's own cursor: Django's wrapper passes attributes through, copy() included.
        with cursor.cursor.copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types([kind for _column, kind in columns])
            for row in rows:
                copy.write_row(row)
        yield cursor
        cursor.execute(f"DROP TABLE {table}")
