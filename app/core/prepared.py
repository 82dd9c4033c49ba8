"""One read-only select, as cheaply as the driver allows: on PostgreSQL a server-side
prepared statement run straight on a pooled psycopg connection (no ORM session, no
result metadata built per call, no transaction: the pool hands out autocommit
connections, see core.lazy_begin); elsewhere (the embedded SQLite) through SQLAlchemy.

For the hot reads only (the bearer check, a user's view): statements built once with
named bind parameters, whose columns need no conversion on the way out.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import Select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

from app.core.db import db

_CURSOR = "gatehouse.prepared_cursor"


@cache
def _compiled(statement: Select[Any], dialect: Dialect) -> tuple[str, dict[str, Any], list[str]]:
    # Cached by statement object: callers build each statement once per process.
    compiled = statement.compile(dialect=dialect)
    return str(compiled), dict(compiled.params), list(statement.selected_columns.keys())


def fetch_one(statement: Select[Any], params: dict[str, Any]) -> dict[str, Any] | None:
    """The first row of `statement` as a dict keyed by column label, or None. Database
    errors surface as SQLAlchemy's, connecting included (a lost or refusing server is an
    OperationalError, so 503)."""
    engine = db.engine
    # A unit of work already under way may hold writes of its own: read through it, so
    # they are seen. The fast path is for requests that have not touched the session.
    in_unit_of_work = db.session.registry.has() and db.session().in_transaction()
    if engine.dialect.driver != "psycopg" or in_unit_of_work:
        row = db.session.connection().execute(statement, params).first()
        return dict(row._mapping) if row is not None else None
    sql, defaults, names = _compiled(statement, engine.dialect)
    values = {**defaults, **params}
    dbapi_error = engine.dialect.loaded_dbapi.Error
    try:
        pooled = engine.raw_connection()
    except dbapi_error as exc:
        # Engine.raw_connection() hands the driver's own error up unwrapped (Connection
        # wraps it; the pool does not): wrapped, a refused connection is an
        # OperationalError like any other, so the answer is 503, not 500.
        raise DBAPIError.instance(
            None, None, exc, dbapi_error, hide_parameters=True, dialect=engine.dialect
        ) from exc
    try:
        # One cursor per connection, kept: it keeps its loaders between executions. The
        # binary format spares both sides formatting and parsing numbers and timestamps.
        cursor = pooled.info.get(_CURSOR)
        if cursor is None or cursor.closed:
            cursor = pooled.info[_CURSOR] = pooled.driver_connection.cursor(binary=True)
        row = cursor.execute(sql, values, prepare=True).fetchone()
    except dbapi_error as exc:
        disconnected = engine.dialect.is_disconnect(exc, pooled.dbapi_connection, None)
        if disconnected:
            pooled.invalidate(exc)
        raise DBAPIError.instance(
            sql,
            values,
            exc,
            dbapi_error,
            hide_parameters=True,
            dialect=engine.dialect,
            connection_invalidated=disconnected,
        ) from exc
    finally:
        pooled.close()
    return dict(zip(names, row, strict=True)) if row is not None else None
