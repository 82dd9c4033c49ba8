"""Statements run as cheaply as the driver allows: on PostgreSQL a server-side prepared
statement run straight on a pooled psycopg connection (no ORM session, no result metadata
built per call, no transaction of its own: the pool hands out autocommit connections, see
core.lazy_begin); elsewhere (the embedded SQLite) through SQLAlchemy.

For the hot paths only (the bearer check, a user's view, a sign-in's one read and one
write): statements built once with named bind parameters, whose columns need no
conversion on the way in or out (a JSON value goes in as text the statement casts).

Each is a SELECT (a write is a WITH of INSERTs and UPDATEs whose SELECT reads what they
returned). A read runs on a connection of its own unless the unit of work has begun. A
write is one statement, atomic by itself: when the unit of work has written nothing yet it runs in
autocommit on the session's connection (no BEGIN, no COMMIT: one round trip); otherwise
it joins the transaction, so everything the request wrote commits together.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from psycopg.types.json import Json
from sqlalchemy import Select
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError

from app.core.db import db

_CURSOR = "gatehouse.prepared_cursor"
_IDLE = 0  # psycopg.pq.TransactionStatus.IDLE: no transaction is open


@cache
def _compiled(statement: Select[Any], dialect: Dialect) -> tuple[str, dict[str, Any], list[str]]:
    # Cached by statement object: callers build each statement once per process.
    compiled = statement.compile(dialect=dialect)
    return str(compiled), dict(compiled.params), list(statement.selected_columns.keys())


@contextmanager
def _driver_errors(
    pooled: Any, sql: str, values: dict[str, Any], owner: Connection | None
) -> Iterator[None]:
    """The driver's errors as SQLAlchemy's (a lost server is an OperationalError, so 503),
    invalidating a connection the server dropped (through `owner`, the unit of work's
    Connection, when it holds it: the unit of work then knows, and rolls back cleanly)."""
    engine = db.engine
    dbapi_error = engine.dialect.loaded_dbapi.Error
    try:
        yield
    except dbapi_error as exc:
        disconnected = engine.dialect.is_disconnect(exc, pooled.dbapi_connection, None)
        if disconnected:
            (owner or pooled).invalidate(exc)
        raise DBAPIError.instance(
            sql,
            values,
            exc,
            dbapi_error,
            hide_parameters=True,
            dialect=engine.dialect,
            connection_invalidated=disconnected,
        ) from exc


def _run(
    pooled: Any, statement: Select[Any], params: dict[str, Any], owner: Connection | None = None
) -> list[dict[str, Any]]:
    """Run `statement` prepared on the pooled connection `pooled` (of the unit of work's
    Connection `owner`, if given); its rows as dicts."""
    sql, defaults, names = _compiled(statement, db.engine.dialect)
    values = {**defaults, **params}
    with _driver_errors(pooled, sql, values, owner):
        # One cursor per connection, kept: it keeps its loaders between executions. The
        # binary format spares both sides formatting and parsing numbers and timestamps.
        cursor = pooled.info.get(_CURSOR)
        if cursor is None or cursor.closed:
            cursor = pooled.info[_CURSOR] = pooled.driver_connection.cursor(binary=True)
        rows = cursor.execute(sql, values, prepare=True).fetchall()
    return [dict(zip(names, row, strict=True)) for row in rows]


def fetch_all(
    statement: Select[Any], params: dict[str, Any], *, before_write: bool = False
) -> list[dict[str, Any]]:
    """The rows of a read-only `statement` as dicts keyed by column label. Database errors
    surface as SQLAlchemy's, connecting included. `before_write`: the request writes next
    (`write`), so the read runs on the unit of work's connection, which the write then
    uses too (one checkout from the pool, not two)."""
    engine = db.engine
    if before_write and engine.dialect.driver == "psycopg":
        connection = db.session.connection()
        return _run(connection.connection, statement, params, connection)
    # A unit of work already under way may hold writes of its own: read through it, so
    # they are seen. The fast path is for requests that have not touched the session.
    in_unit_of_work = db.session.registry.has() and db.session().in_transaction()
    if engine.dialect.driver != "psycopg" or in_unit_of_work:
        return [dict(row._mapping) for row in db.session.connection().execute(statement, params)]
    try:
        pooled = engine.raw_connection()
    except engine.dialect.loaded_dbapi.Error as exc:
        # Engine.raw_connection() hands the driver's own error up unwrapped (Connection
        # wraps it; the pool does not): wrapped, a refused connection is an
        # OperationalError like any other, so the answer is 503, not 500.
        raise DBAPIError.instance(
            None,
            None,
            exc,
            engine.dialect.loaded_dbapi.Error,
            hide_parameters=True,
            dialect=engine.dialect,
        ) from exc
    try:
        return _run(pooled, statement, params)
    finally:
        pooled.close()


def fetch_one(statement: Select[Any], params: dict[str, Any]) -> dict[str, Any] | None:
    """The first row of a read-only `statement` (see fetch_all), or None."""
    rows = fetch_all(statement, params)
    return rows[0] if rows else None


def write(statement: Select[Any], params: dict[str, Any]) -> list[dict[str, Any]]:
    """Run one data-modifying statement (a WITH of INSERTs and UPDATEs) in the request's
    unit of work and return its rows: alone in autocommit when nothing was written before
    it (pending ORM changes are flushed first, so they count), else inside the open
    transaction, which the edge commits as usual."""
    session = db.session()
    if session.new or session.dirty or session.deleted:
        session.flush()
    connection = session.connection()
    pooled = connection.connection
    dbapi = pooled.dbapi_connection
    alone = (
        db.engine.dialect.driver == "psycopg"
        and dbapi.autocommit
        and dbapi.info.transaction_status == _IDLE
    )
    if not alone:
        return [dict(row._mapping) for row in connection.execute(statement, params)]
    # What SQLAlchemy's JSON type would serialize, the driver is told is JSON (a list
    # would otherwise go as an array).
    values = {k: Json(v) if isinstance(v, dict | list) else v for k, v in params.items()}
    return _run(pooled, statement, values, connection)
