"""Declarative base, the shared `db` object, UTC timestamps and the tenant-scoped mixin."""

from __future__ import annotations

import select
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    MetaData,
    String,
    event,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DisconnectionError, IntegrityError
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    configure_mappers,
    declared_attr,
    make_transient_to_detached,
    mapped_column,
    registry,
)
from sqlalchemy.pool import Pool
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as UTC and always returns them aware (SQLite forgets zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


str32 = Annotated[str, 32]
str64 = Annotated[str, 64]
str128 = Annotated[str, 128]
str255 = Annotated[str, 255]
JSONValue = Any


class Base(DeclarativeBase):
    registry = registry(
        metadata=MetaData(naming_convention=NAMING_CONVENTION),
        type_annotation_map={
            datetime: UTCDateTime(),
            str32: String(32),
            str64: String(64),
            str128: String(128),
            str255: String(255),
            dict[str, Any]: JSON(),
            list[Any]: JSON(),
        },
    )


db = SQLAlchemy(model_class=Base)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TenantScoped:
    """Rows that belong to one tenant; every query on them is filtered by core.tenancy."""

    @declared_attr
    def tenant_id(cls) -> Mapped[str]:  # noqa: N805
        return mapped_column(
            String(32), ForeignKey("tenant.id", ondelete="CASCADE"), index=True, nullable=False
        )


def add_unique(row: Any, conflict: Exception) -> None:
    """Add and flush `row` in a savepoint; a unique-constraint violation raises `conflict`
    and leaves the session usable. Uniqueness rests on the database, so a race between two
    requests gives one success and one conflict, never two rows."""
    try:
        with db.session.begin_nested():
            db.session.add(row)
    except IntegrityError as exc:
        raise conflict from exc


Model = TypeVar("Model", bound=Base)


def loaded(model: type[Model], values: dict[str, Any]) -> Model:
    """An instance of `model` in the request's session as if the session had loaded it
    from `values` (every column, by attribute name: a missing one would be read on first
    use), without SQL: for rows a hand-made select already read (app.signin.lookup). The
    instance the session already holds for that primary key, if any, wins (it may have
    changes of its own). The session keeps a reference to it until the request ends: the
    identity map alone holds instances weakly, and a later `get` must find it."""
    session = db.session()
    mapper = model.__mapper__
    key = mapper.identity_key_from_primary_key([values[c.key] for c in mapper.primary_key])
    held = session.identity_map.get(key)
    if held is not None:
        return held  # type: ignore[return-value]
    # As the ORM's own loading does: a new instance without __init__, its values set in
    # its __dict__ (no attribute events), then marked as loaded under its identity.
    if not mapper.configured:
        configure_mappers()  # what a query or a constructor would do first
    instance = mapper.class_manager.new_instance()
    instance.__dict__.update(values)
    make_transient_to_detached(instance)
    session.add(instance)
    session.info.setdefault("gatehouse.loaded", []).append(instance)
    return instance


def lock_until_commit(key: str) -> None:
    """Serialize, until the transaction ends, every transaction that locks the same `key`
    (a PostgreSQL advisory lock; SQLite has a single writer anyway): for a check-then-
    insert no unique constraint can guard."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})


@contextmanager
def independent_write() -> Iterator[Session]:
    """A short transaction of its own, beside the request's: what must be kept although the
    request then fails (a failed sign-in's audit row, a counter, a revoked token family) is
    written here on purpose, before raising, instead of an error deciding the commit.

    Yields a new Session on the same engine; it commits when the block ends and rolls back
    if the block raises. The tenant scope of the caller applies (the tenancy guards watch
    every Session and read the current scope). Rows loaded by the request's session are not
    shared: pass ids, not instances. On SQLite (embedded mode) a second writer waits for the
    request's own write transaction, so write here before the request writes anything."""
    session = Session(bind=db.engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def user_foreign_key() -> ForeignKeyConstraint:
    """The (tenant_id, user_id) → user_account link of rows a user owns; deleting the user
    deletes them (the database cascades)."""
    return ForeignKeyConstraint(
        ["tenant_id", "user_id"],
        ["user_account.tenant_id", "user_account.id"],
        ondelete="CASCADE",
    )


def _closed_by_server(dbapi_connection: Any) -> bool:
    """True when the server has closed this idle connection (a restart, an idle timeout).

    An idle connection has nothing to read; a closed one has the server's goodbye and end
    of file waiting. Polling the socket costs no round trip, unlike a pre-ping. Anything
    else waiting (a notice) is read by the driver, so only a closed socket counts."""
    fileno = getattr(dbapi_connection, "fileno", None)
    if fileno is None:  # SQLite: no socket
        return False
    try:
        poller = select.poll()
        poller.register(fileno(), select.POLLIN)
    except (OSError, ValueError, TypeError, AttributeError):
        return True  # no usable socket any more
    pgconn = getattr(dbapi_connection, "pgconn", None)  # psycopg 3's libpq connection
    for attempt in range(3):
        # An idle connection with something to read is almost always being closed: the
        # server's goodbye may come a moment before its end of file, so after the first
        # look wait a little for the rest (seen on a loaded machine).
        if not poller.poll(0 if attempt == 0 else 50):
            return False
        if pgconn is None:
            return True
        try:
            pgconn.consume_input()  # raises once it reads the end of file
        except Exception:
            return True
    return True


def _replace_closed_connection(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    # DisconnectionError at checkout makes the pool discard the connection and open a new
    # one, so a database restart costs the next request nothing (pool_pre_ping stays off).
    if _closed_by_server(dbapi_connection):
        raise DisconnectionError("the server closed this pooled connection")


def install_pool_checks() -> None:
    """Check every pooled connection at checkout (idempotent)."""
    if not event.contains(Pool, "checkout", _replace_closed_connection):
        event.listen(Pool, "checkout", _replace_closed_connection)
