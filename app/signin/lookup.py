"""The one read of a password sign-in: the tenant, the users a login may name, their
policies and the state of their TOTP enrolment, in one prepared select (core.prepared),
made into the ORM instances the flow goes on with as if the session had loaded them
(core.db.loaded), so checking the password, the second factor and the scopes needs no
further SQL.

One row per user the login matches (a LEFT JOIN: one row with no user when none does, no
row for an unknown tenant). On PostgreSQL the policies come as a JSON aggregate in the same
select; elsewhere (the embedded SQLite) they are read when first used, as the ORM would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from sqlalchemy import Select, and_, bindparam, func, literal_column, or_, select, type_coerce
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.types import JSON

from app.core import prepared
from app.core.db import db, loaded
from app.credentials.mfa import TOTP
from app.credentials.models import MfaEnrolment
from app.tenants.models import Tenant
from app.users import passwords
from app.users.models import Policy, User

TENANT = Tenant.__table__
USER = User.__table__
POLICY = Policy.__table__
MFA = MfaEnrolment.__table__
# Labels: the tenant's and the user's columns share names (id, created_at, …).
T, U = "t_", "u_"


@dataclass
class Found:
    """What the read found: the tenant, the users the login may name (passwords'
    choice among the matches), and the status of each one's TOTP enrolment if it has one."""

    tenant: Tenant
    candidates: list[User]
    totp: dict[str, str] = field(default_factory=dict)


def _policies() -> Any:
    """The user's policies, every column, as a JSON array in id order ([] if none)."""
    row = func.json_build_object(
        *(part for column in POLICY.c for part in (literal_column(f"'{column.key}'"), column))
    )
    owned = (POLICY.c.tenant_id == USER.c.tenant_id) & (POLICY.c.user_id == USER.c.id)
    aggregate = func.json_agg(aggregate_order_by(row, POLICY.c.id))
    return (
        select(func.coalesce(aggregate, literal_column("'[]'::json")))
        .where(owned)
        .scalar_subquery()
    )


@cache
def _statement(dialect_name: str) -> Select[Any]:
    # Built once per process (core.prepared caches its compiled form by this object).
    matches = or_(
        USER.c.username_normalized == bindparam("username"),
        and_(USER.c.email_normalized == bindparam("email"), USER.c.password_hash.is_not(None)),
    )
    joined = TENANT.outerjoin(USER, (USER.c.tenant_id == TENANT.c.id) & matches).outerjoin(
        MFA,
        (MFA.c.tenant_id == USER.c.tenant_id)
        & (MFA.c.user_id == USER.c.id)
        & (MFA.c.type == literal_column(f"'{TOTP}'")),
    )
    columns = [column.label(T + column.key) for column in TENANT.c]
    columns += [column.label(U + column.key) for column in USER.c]
    columns.append(MFA.c.status.label("totp_status"))
    if dialect_name == "postgresql":
        columns.append(type_coerce(_policies(), JSON).label("policies"))
    return (
        select(*columns)
        .select_from(joined)
        .where(TENANT.c.id == bindparam("tenant_id"))
        .order_by(USER.c.created_at, USER.c.id)
    )


def _part(row: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {key[len(prefix) :]: value for key, value in row.items() if key.startswith(prefix)}


def _user(row: dict[str, Any]) -> User:
    user = loaded(User, _part(row, U))
    if "policies" in row and "policies" not in user.__dict__:
        policies = [loaded(Policy, values) for values in row["policies"]]
        set_committed_value(user, "policies", policies)
    return user


def find(*, tenant_id: str, username: str | None, email: str | None) -> Found | None:
    """The tenant and the users a login names: the owner of `username`, else the password
    users holding the address `email` (passwords.choose_candidates); None for an unknown
    tenant. Runs in that tenant's scope."""
    params = {
        "tenant_id": tenant_id,
        "username": username.casefold() if username else None,
        "email": email.casefold() if email else None,
    }
    # On the request's connection: the sign-in's one write follows on the same one.
    rows = prepared.fetch_all(_statement(db.engine.dialect.name), params, before_write=True)
    if not rows:
        return None
    tenant = loaded(Tenant, _part(rows[0], T))
    matches = [_user(row) for row in rows if row[U + "id"] is not None]
    totp = {row[U + "id"]: row["totp_status"] for row in rows if row["totp_status"] is not None}
    candidates = passwords.choose_candidates(matches, username=username, email=email)
    return Found(tenant=tenant, candidates=candidates, totp=totp)
