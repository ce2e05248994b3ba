"""Hand-written SQL for the hot paths (every post and read passes through them): statements
written once from the models' metadata, parameters prepared and rows converted by the models'
own fields, as the ORM would. Building and compiling a QuerySet costs 0.2-0.4 ms of CPU per query,
most of a post's cost (docs/performance.md); a statement string built once costs nothing.

Only for statements on every request; everything else uses the ORM. The SQL is plain enough for
PostgreSQL and SQLite alike; `for_update()` adds the row lock where the database has one.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Iterable, TypeVar

from django.db import connection, models
from django.db.models import Model

M = TypeVar("M", bound=Model)


_STATEMENTS: dict[tuple, str] = {}


def statement(name: str, build: Callable[[], str], *variant: Any) -> str:
    """The statement `name` (with `variant`), built by `build` once per database vendor."""
    key = (connection.vendor, name, *variant)
    found = _STATEMENTS.get(key)
    if found is None:
        found = _STATEMENTS[key] = build()
    return found


def table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def column(model: type[Model], name: str) -> str:
    return connection.ops.quote_name(model._meta.get_field(name).column)


def columns(model: type[Model], names: Iterable[str] | None = None, *, prefix: str = "") -> str:
    """Quoted columns of `names` (default: every concrete field, in the model's order)."""
    return ", ".join(f"{prefix}{column(model, name)}" for name in (names or field_names(model)))


@lru_cache(maxsize=None)
def field_names(model: type[Model]) -> tuple[str, ...]:
    return tuple(f.attname if f.is_relation else f.name for f in model._meta.concrete_fields)


def for_update() -> str:
    return " FOR UPDATE" if connection.features.has_select_for_update else ""


def param(model: type[Model], name: str, value: Any) -> Any:
    """A value prepared for the database as the field would prepare it (a UUID on SQLite, say).
    Text and integer fields take str and int as they are (both drivers adapt them): only the
    other fields pay for Django's preparation, a few microseconds a value on every statement."""
    found = _PREPARED_FIELDS.get((model, name))
    if found is None:
        field = model._meta.get_field(name)
        found = _PREPARED_FIELDS[(model, name)] = (field, isinstance(field, _AS_IS_FIELDS))
    field, as_is = found
    if as_is and (value is None or type(value) in (str, int)):
        return value
    return field.get_db_prep_value(value, connection, prepared=False)


_AS_IS_FIELDS = (models.CharField, models.TextField, models.IntegerField)  # BigInteger, PositiveBigInteger...
_PREPARED_FIELDS: dict[tuple, tuple[Any, bool]] = {}


def fetchall(sql: str, params: Iterable[Any] = ()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        return cursor.fetchall()


def fetchone(sql: str, params: Iterable[Any] = ()) -> tuple | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        return cursor.fetchone()


def writes_in_with() -> bool:
    """Whether INSERT/UPDATE may be WITH clauses of another statement (PostgreSQL, not SQLite)."""
    return connection.vendor == "postgresql"


def run_after(writes: list[tuple[str, list]], query: str, params: list) -> list[tuple]:
    """Run the `writes` (INSERT/UPDATE without RETURNING), then `query`; return `query`'s rows.
    On PostgreSQL all of it is one statement, the writes as WITH clauses: one round trip, not n."""
    with connection.cursor() as cursor:
        if writes and writes_in_with():
            clauses = ", ".join(f"w{i} AS ({write})" for i, (write, _) in enumerate(writes))
            cursor.execute(f"WITH {clauses} {query}", [p for _, ps in writes for p in ps] + list(params))
            return cursor.fetchall()
        for write, write_params in writes:
            cursor.execute(write, write_params)
        cursor.execute(query, params)
        return cursor.fetchall()


def select_with(write: tuple[str, list] | None, query: str, params: list) -> list[tuple]:
    """`query`'s row (a SELECT of one row) joined with each row `write` (an INSERT/UPDATE ...
    RETURNING) returns; without `write`, `query`'s row alone. One statement on PostgreSQL; the
    write runs after the query on SQLite, and in the same snapshot as the query on PostgreSQL, so
    the query must not read what the write changes."""
    with connection.cursor() as cursor:
        if write is None:
            cursor.execute(query, params)
            return cursor.fetchall()
        write_sql, write_params = write
        if writes_in_with():
            cursor.execute(f"WITH w AS ({write_sql}) SELECT q.*, w.* FROM ({query}) AS q CROSS JOIN w",
                           list(write_params) + list(params))
            return cursor.fetchall()
        cursor.execute(query, params)
        (row,) = cursor.fetchall()
        cursor.execute(write_sql, write_params)
        return [row + written for written in cursor.fetchall()]


def _converters(model: type[Model], names: tuple[str, ...]) -> list[tuple[int, list, Any]]:
    """Per column, the backend's and the field's from-database converters (what the ORM applies)."""
    key = (connection.vendor, model, names)
    cached = _CONVERTERS.get(key)
    if cached is None:
        cached = []
        for index, name in enumerate(names):
            expression = model._meta.get_field(name).get_col(model._meta.db_table)
            found = connection.ops.get_db_converters(expression) + expression.get_db_converters(connection)
            if found:
                cached.append((index, found, expression))
        _CONVERTERS[key] = cached
    return cached


_CONVERTERS: dict[tuple, list] = {}


def instance(model: type[M], names: tuple[str, ...], values: tuple | list) -> M:
    """A model instance from a row of `names` columns, as if the ORM had loaded it."""
    converters = _converters(model, names)
    if converters:
        values = list(values)
        for index, functions, expression in converters:
            value = values[index]
            for convert in functions:
                value = convert(value, expression, connection)
            values[index] = value
    return model.from_db(connection.alias, list(names), values)
