"""Hand-written SQL for the few statements that every API request and every submission runs.

On this project's 2-core machine, building and compiling one ORM query costs about 0.5 ms of CPU,
several times what PostgreSQL spends running it, and a submission ran a dozen of them
(docs/benchmarks.md, bench/queue.py). Those statements are written out with these helpers instead.
Their column lists come from the models, so they follow schema changes, and they run on
PostgreSQL and SQLite alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any, TypeVar

from django.db import connection, transaction
from django.db.models import Model
from django.db.models.fields import AutoFieldMixin

M = TypeVar("M", bound=Model)


def table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


@cache
def columns(model: type[Model]) -> str:
    """Every concrete column of ``model``, qualified by its table, in field order."""
    name = table(model)
    return ", ".join(f"{name}.{connection.ops.quote_name(f.column)}" for f in model._meta.concrete_fields)


def width(model: type[Model]) -> int:
    return len(model._meta.concrete_fields)


Converter = tuple[int, Callable[..., Any], Any]


@cache
def converters(model: type[Model], vendor: str) -> list[Converter]:
    """(column index, function, column) for what the ORM applies to a loaded row, as its
    compiler does: the backend's converters, then the field's own (JSON, SQLite's datetimes)."""
    found = []
    for index, field in enumerate(model._meta.concrete_fields):
        column = field.get_col(model._meta.db_table)
        functions = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        found += [(index, function, column) for function in functions]
    return found


def instance(model: type[M], values: Sequence[Any]) -> M:
    """A model instance from the values of ``columns(model)``, as the ORM would have loaded it."""
    loaded = list(values)
    for index, function, column in converters(model, connection.vendor):
        loaded[index] = function(loaded[index], column, connection)
    names = [f.attname for f in model._meta.concrete_fields]
    return model.from_db(connection.alias, names, loaded)


@cache
def insert_sql(model: type[Model]) -> str:
    fields = model._meta.concrete_fields
    names = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    marks = ", ".join(["%s"] * len(fields))
    return f"INSERT INTO {table(model)} ({names}) VALUES ({marks})"  # noqa: S608 (names from the model)


def insert(obj: Model) -> None:
    """``obj.save()`` for a new row whose primary key is already set (a UUID), without the
    compiler: every concrete field's value as ``save()`` would prepare it. No signals are sent."""
    model = type(obj)
    values = [f.get_db_prep_save(f.pre_save(obj, add=True), connection) for f in model._meta.concrete_fields]
    execute(insert_sql(model), values)
    obj._state.adding = False
    obj._state.db = connection.alias


def insert_many(objs: Sequence[Model]) -> None:
    """``bulk_create`` of new rows of one model in one statement, without the compiler; an
    auto-incremented primary key is left to the database (and not read back). No signals."""
    if not objs:
        return
    model = type(objs[0])
    fields = [f for f in model._meta.concrete_fields if not (f.primary_key and isinstance(f, AutoFieldMixin))]
    names = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    values = [f.get_db_prep_save(f.pre_save(obj, add=True), connection) for obj in objs for f in fields]
    execute(f"INSERT INTO {table(model)} ({names}) VALUES {', '.join([row] * len(objs))}", values)  # noqa: S608


def update_returning(
    model: type[Model], changes: dict[str, Any], pks: Sequence[Any], **where: Any
) -> set[str]:
    """``UPDATE ... SET changes WHERE pk IN pks AND where ... RETURNING pk``: one statement that says
    which rows it changed (as ``str`` of their primary keys' database values)."""
    returned = connection.ops.quote_name(model._meta.pk.column)
    return {str(row[0]) for row in fetch_all(*conditional_update(model, changes, pks, where, returned))}


def update_returning_rows(model: type[M], changes: dict[str, Any], pk: Any, **where: Any) -> M | None:
    """``update_returning`` of one row, ``RETURNING`` every column: the row as it is now, read by
    the statement that changed it (None when it changed nothing)."""
    returned = ", ".join(connection.ops.quote_name(field.column) for field in model._meta.concrete_fields)
    row = fetch_one(*conditional_update(model, changes, [pk], where, returned))
    return None if row is None else instance(model, row)


def conditional_update(
    model: type[Model], changes: dict[str, Any], pks: Sequence[Any], where: dict[str, Any], returned: str
) -> tuple[str, list[Any]]:
    """The statement and parameters of ``UPDATE ... SET changes WHERE pk IN pks AND where ...
    RETURNING returned``."""
    fields = {field.name: field for field in model._meta.concrete_fields}
    pk, quote = fields[model._meta.pk.name], connection.ops.quote_name
    assignments = ", ".join(f"{quote(fields[name].column)} = %s" for name in changes)
    conditions = "".join(f" AND {quote(fields[name].column)} = %s" for name in where)
    marks = ", ".join(["%s"] * len(pks))
    statement = (
        f"UPDATE {table(model)} SET {assignments} WHERE {quote(pk.column)} IN ({marks}){conditions} "  # noqa: S608
        f"RETURNING {returned}"
    )
    params = [fields[name].get_db_prep_save(value, connection) for name, value in changes.items()]
    params += [pk.get_db_prep_value(value, connection) for value in pks]
    params += [fields[name].get_db_prep_save(value, connection) for name, value in where.items()]
    return statement, params


def update_rows(
    model: type[Model], changes: dict[str, Any], rows: dict[Any, dict[str, Any]], **where: Any
) -> set[str]:
    """``update_returning`` where each row also gets values of its own (``rows``: primary key ->
    {field name: value}, the same names for every row): a batch of rows in one statement. On
    PostgreSQL the rows' values travel as one array per column (a statement of a few parameters,
    which psycopg parses once); on SQLite as ``CASE pk WHEN ... END``."""
    if not rows:
        return set()
    fields = {field.name: field for field in model._meta.concrete_fields}
    pk, quote = fields[model._meta.pk.name], connection.ops.quote_name
    own = [fields[name] for name in next(iter(rows.values()))]
    pks = [pk.get_db_prep_value(value, connection) for value in rows]
    columns = {
        field: [field.get_db_prep_save(values[field.name], connection) for values in rows.values()]
        for field in own
    }
    assignments = [f"{quote(fields[name].column)} = %s" for name in changes]
    params = [fields[name].get_db_prep_save(value, connection) for name, value in changes.items()]
    if connection.vendor == "postgresql":
        names = ["pk", *(f"v{index}" for index in range(len(own)))]
        assignments += [
            f"{quote(field.column)} = v.{name}" for field, name in zip(own, names[1:], strict=True)
        ]
        arrays = ", ".join(f"%s::{cast_type(field)}[]" for field in [pk, *own])
        source, match = f" FROM unnest({arrays}) AS v({', '.join(names)})", f"{quote(pk.column)} = v.pk"
        after = [pks, *columns.values()]
    else:
        for field, values in columns.items():
            then = f"WHEN %s THEN CAST(%s AS {cast_type(field)})"
            assignments.append(
                f"{quote(field.column)} = CASE {quote(pk.column)} {' '.join([then] * len(rows))} END"
            )
            params += [value for pair in zip(pks, values, strict=True) for value in pair]
        source, match, after = "", f"{quote(pk.column)} IN ({', '.join(['%s'] * len(pks))})", list(pks)
    conditions = "".join(f" AND {table(model)}.{quote(fields[name].column)} = %s" for name in where)
    statement = (
        f"UPDATE {table(model)} SET {', '.join(assignments)}{source} "  # noqa: S608 (names from the model)
        f"WHERE {table(model)}.{match}{conditions} RETURNING {table(model)}.{quote(pk.column)}"
    )
    params += after + [fields[name].get_db_prep_save(value, connection) for name, value in where.items()]
    return {str(row[0]) for row in fetch_all(statement, params)}


def cast_type(field: Any) -> str:
    return str(field.cast_db_type(connection))


def db_pk(obj: Model) -> str:
    """``str`` of the object's primary key as the database holds it (what ``update_returning`` says)."""
    pk = type(obj)._meta.pk
    assert pk is not None
    return str(pk.get_db_prep_value(obj.pk, connection))


def fetch_one(sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return tuple(row) if row is not None else None


def fetch_all(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [tuple(row) for row in cursor.fetchall()]


def execute(sql: str, params: Sequence[Any]) -> int:
    """Run a statement; the number of rows it changed."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)


@contextmanager
def hint_transaction() -> Iterator[None]:
    """A transaction for writes that are hints (a running job's step counter): on PostgreSQL its
    commit does not wait for the WAL to reach the disk (``synchronous_commit`` off, for this
    transaction only). Others see it at once as usual; a database crash may lose the last fraction
    of a second of such writes, never corrupt anything. The wait was about 3 ms per commit on this
    machine, on a trivial job's critical path (bench/latency.py). Elsewhere a plain transaction."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        yield
