"""Who is acting (Principal) and which tenant's rows a unit of work may touch.

Every ORM statement on a `TenantScoped` model is filtered to the current tenant by one
`do_orm_execute` hook; outside `tenant_scope()` / `all_tenants()` such a statement
raises, and a `before_flush` guard refuses rows of another tenant. Fails closed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import event, select
from sqlalchemy.orm import InstrumentedAttribute, ORMExecuteState, Session, with_loader_criteria
from sqlalchemy.sql.util import find_tables

from app.core.db import Base, TenantScoped, db

ALL_TENANTS: Final = object()
_current: ContextVar[object | str | None] = ContextVar("gatehouse_tenant", default=None)
_tenant_tables_cache: tuple[int, frozenset[Any]] = (-1, frozenset())


class TenancyError(RuntimeError):
    """A tenant-scoped row was read or written outside a tenant scope (a programming error)."""


@dataclass(frozen=True)
class Principal:
    """The caller of a request: its tenant, the user it acts as (if any) and its scopes."""

    tenant_id: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    user_id: str | None = None
    kind: str = "api_key"  # api_key | root | user | system
    credential_id: str | None = None  # API key id, or the session (sid) of a user token
    ip: str | None = None
    auth_time: int | None = None  # when the user of a token last entered a password
    # The registered application a user token was issued to (its `azp`), if any.
    client_id: str | None = None
    # The user's row as the bearer check read it (a users.read_model.UserView): answers of a
    # request that changes nothing print it instead of reading the row again.
    user_view: Any = field(default=None, compare=False, repr=False)

    @property
    def label(self) -> str:
        """How the audit log names this actor."""
        if self.kind == "user":
            return f"user:{self.user_id}"
        if self.kind == "api_key":
            return f"api_key:{self.credential_id}"
        return self.kind

    def has(self, scope: str) -> bool:
        return "*" in self.scopes or scope in self.scopes

    @property
    def is_user(self) -> bool:
        return self.kind == "user"

    @property
    def audience(self) -> str:
        """Who the caller's credential was issued to: its application, else its tenant
        (an ID token the caller presents as its own must name the same)."""
        return self.client_id or self.tenant_id


def current_tenant_id() -> str:
    """The tenant of the current scope; raises outside a single-tenant scope."""
    value = _current.get()
    if not isinstance(value, str):
        raise TenancyError("no single tenant is in scope")
    return value


@contextmanager
def tenant_scope(tenant_id: str) -> Iterator[None]:
    """Restrict every tenant-scoped read and write inside the block to `tenant_id`.

    Pending writes are flushed before the block ends, so they are checked against the
    tenant they were made for (a later commit may run outside any scope)."""
    token = _current.set(tenant_id)
    try:
        yield
        # A block that never used the ORM session (a hot read) makes none just to look.
        session = db.session() if db.session.registry.has() else None
        if session is not None and (session.new or session.dirty or session.deleted):
            session.flush()
    finally:
        _current.reset(token)


@contextmanager
def all_tenants() -> Iterator[None]:
    """Lift the tenant filter (platform jobs, key look-up by id); use sparingly."""
    token = _current.set(ALL_TENANTS)
    try:
        yield
    finally:
        _current.reset(token)


def find_by_global_id(column: InstrumentedAttribute[str], value: str) -> Any:
    """The row whose globally unique `column` equals `value`, in whichever tenant holds it,
    or None. For a credential presented without a tenant (an API key by its id, an
    application by its client_id): the row names its tenant, and the caller then acts in
    that tenant only. The one look-up across tenants on a request's path. Pending changes
    are not flushed here: outside their tenant's filter they would have no tenant."""
    with db.session.no_autoflush, all_tenants():
        return db.session.scalar(select(column.class_).where(column == value))


def _touches_tenant_rows(state: ORMExecuteState) -> bool:
    for mapper in state.all_mappers:
        if issubclass(mapper.class_, TenantScoped):
            return True
    # An entity named only in the FROM clause (`select(func.count()).select_from(User)`)
    # is not among all_mappers, yet the loader criteria do filter it: look at the tables.
    if state.is_select:
        tenant_tables = _tenant_tables()
        return any(
            table in tenant_tables for table in find_tables(state.statement, include_joins=True)
        )
    return False


def _tenant_tables() -> frozenset[Any]:
    """The tables of every TenantScoped model (recomputed when a model is added)."""
    global _tenant_tables_cache
    mappers = Base.registry.mappers
    if _tenant_tables_cache[0] != len(mappers):
        tables = frozenset(m.local_table for m in mappers if issubclass(m.class_, TenantScoped))
        _tenant_tables_cache = (len(mappers), tables)
    return _tenant_tables_cache[1]


def _filter_statement(state: ORMExecuteState) -> None:
    if not (state.is_select or state.is_update or state.is_delete):
        return
    if not _touches_tenant_rows(state):
        return
    scope = _current.get()
    if scope is ALL_TENANTS:
        return
    if not isinstance(scope, str):
        raise TenancyError("tenant-scoped query outside tenant_scope()")
    state.statement = state.statement.options(
        with_loader_criteria(
            TenantScoped,
            lambda cls: cls.tenant_id == scope,
            include_aliases=True,
        )
    )


def _guard_flush(session: Session, _ctx: Any, _instances: Any) -> None:
    scope = _current.get()
    for obj in list(session.new) + list(session.dirty) + list(session.deleted):
        if not isinstance(obj, TenantScoped):
            continue
        if scope is ALL_TENANTS:
            if obj.tenant_id is None:
                raise TenancyError(f"{type(obj).__name__} has no tenant")
            continue
        if not isinstance(scope, str):
            raise TenancyError("tenant-scoped write outside tenant_scope()")
        if obj.tenant_id is None and obj in session.new:
            obj.tenant_id = scope
        elif obj.tenant_id != scope:
            raise TenancyError(f"{type(obj).__name__} of another tenant in this unit of work")


def install_tenancy_guards() -> None:
    """Attach the filter and the flush guard to every ORM session (idempotent)."""
    if not event.contains(Session, "do_orm_execute", _filter_statement):
        event.listen(Session, "do_orm_execute", _filter_statement)
        event.listen(Session, "before_flush", _guard_flush)
