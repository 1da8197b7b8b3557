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


def array_casts(db: Any, fields: Sequence[Any]) -> list[str] | None:
    """``%s::type[]``: the placeholder of each field's column passed as one array (PostgreSQL),
    cast to the field's own type; None where a field has no database type."""
    types = [field.db_type(db) for field in fields]
    return [f"%s::{kind}[]" for kind in types] if all(types) else None


def update_by_key(
    db: Any,
    model: Any,
    names: Sequence[str],
    rows: Sequence[Sequence[Any]],
    increments: Sequence[str] = (),
) -> None:
    """Set fields ``names`` of many rows of ``model``: each row is its values, then its key.

    The values are prepared already (``get_db_prep_save``), one row per key. On PostgreSQL
    through psycopg 3 (``copies``) one UPDATE joins the columns as arrays, cast to each
    field's type: a statement per row was parsed and planned by the server each time (the
    statements are bound on the client), a third of a second per thousand rows in the
    scheduler's recorder. Elsewhere one ``executemany`` of an UPDATE per row. Fields in
    ``increments`` are incremented by one in every row.
    """
    if not rows:
        return
    quote = db.ops.quote_name
    fields = [model._meta.get_field(name) for name in names]
    table = quote(model._meta.db_table)
    key = quote(cast("str", model._meta.pk.column))
    columns = [quote(cast("str", field.column)) for field in fields]
    bumped = [quote(cast("str", model._meta.get_field(name).column)) for name in increments]
    # In key order: two writers of shared rows lock them in the same order.
    rows = sorted(rows, key=lambda row: row[-1])
    if copies(db) and len(rows) > 1:
        if len({row[-1] for row in rows}) != len(rows):
            raise ValueError("update_by_key: a key is given twice")
        key_type = model._meta.pk.rel_db_type(db)
        sets = [f"{column} = v.c{index}" for index, column in enumerate(columns)]
        sets += [f"{column} = {table}.{column} + 1" for column in bumped]
        arrays = [*(array_casts(db, fields) or []), f"%s::{key_type}[]"]
        aliases = [f"c{index}" for index in range(len(columns))] + ["k"]
        sql = (
            f"UPDATE {table} SET {', '.join(sets)}"  # noqa: S608 (quoted identifiers, types)
            f" FROM unnest({', '.join(arrays)}) AS v({', '.join(aliases)})"
            f" WHERE {table}.{key} = v.k"
        )
        with db.cursor() as cursor:
            cursor.execute(sql, [list(column) for column in zip(*rows, strict=True)])
        return
    sets = [f"{column} = %s" for column in columns]
    sets += [f"{column} = {column} + 1" for column in bumped]
    sql = f"UPDATE {table} SET {', '.join(sets)} WHERE {key} = %s"  # noqa: S608
    with db.cursor() as cursor:
        cursor.executemany(sql, rows)
