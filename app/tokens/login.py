"""A password sign-in's one write: the new session, its refresh token, the `user.signed_in`
audit row and the login count (logins_count, last_login_at) in a single statement, run
after the tokens are signed (core.prepared.write: alone in autocommit, one round trip,
unless the request wrote something before it, whose transaction it then joins).

The count is conditional: the user must still be unblocked and under the session
generation it was read with, so a sign-in racing a block, a deletion, a password change
or reset writes nothing and is refused (the tokens it signed are thrown away), instead of
issuing tokens that the next request would refuse. The rows are inserted only if the
count was. On PostgreSQL a WITH of data-modifying statements does this in one round trip;
elsewhere (the embedded SQLite) the same statements run one by one in the transaction.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import CTE, Select, bindparam, insert, select, update
from sqlalchemy.orm.attributes import set_committed_value

from app.audit import service as audit_service
from app.audit.models import AuditEvent
from app.core import prepared
from app.core.db import db, utcnow
from app.core.tenancy import current_tenant_id
from app.tenants.models import Tenant
from app.tokens.models import AuthSession, RefreshToken
from app.tokens.service import TokenSet, is_offline, mint, refresh_row, start_session
from app.users.models import User

USER = User.__table__
SESSION = AuthSession.__table__
REFRESH = RefreshToken.__table__
AUDIT = AuditEvent.__table__
# Each inserted column and the bind parameter it takes: what the rows share (the tenant,
# the user, the moment) is one parameter, sent once.
SESSION_ROW = {
    "id": "session_id",
    "tenant_id": "of_tenant",
    "user_id": "of_user",
    "generation": "generation",
    "auth_time": "now",
    "created_at": "now",
    "expires_at": "session_expires_at",
    "client_id": "client_id",
    "scope": "scope",
    "amr": "amr",
    "ip": "session_ip",
    "user_agent": "user_agent",
    "last_seen_at": "now",
}
AUDIT_ROW = {
    "id": "event_id",
    "tenant_id": "of_tenant",
    "action": "action",
    "actor": "actor",
    "user_id": "of_user",
    "target": "event_target",
    "ip": "event_ip",
    "created_at": "now",
    "data": "event_data",
}
REFRESH_ROW = {
    "id": "refresh_id",
    "tenant_id": "of_tenant",
    "token_hash": "token_hash",
    "family_id": "session_id",
    "user_id": "of_user",
    "created_at": "now",
    "expires_at": "refresh_expires_at",
}


def _inserted(table: Any, row: dict[str, str], counted: CTE) -> CTE:
    """INSERT one row of `table` from its bind parameters, only if the login was counted
    (a SELECT from that CTE: no row there, no row here)."""
    values = select(*(bindparam(param, type_=table.c[name].type) for name, param in row.items()))
    return insert(table).from_select(list(row), values.select_from(counted)).cte(table.name)


def _count() -> Any:
    return (
        update(USER)
        .where(
            # Not named after a column: SQLAlchemy would SET a column its name matches.
            USER.c.tenant_id == bindparam("of_tenant"),
            USER.c.id == bindparam("of_user"),
            USER.c.blocked.is_(False),
            USER.c.session_generation == bindparam("generation"),
        )
        # A sign-in is no edit of the user: version and updated_at (the ETag) stay.
        .values(
            logins_count=USER.c.logins_count + 1,
            last_login_at=bindparam("now", type_=USER.c.last_login_at.type),
            updated_at=USER.c.updated_at,
        )
    )


def _rows(with_refresh: bool) -> list[tuple[Any, dict[str, str]]]:
    return [(SESSION, SESSION_ROW), (AUDIT, AUDIT_ROW)] + (
        [(REFRESH, REFRESH_ROW)] if with_refresh else []
    )


@cache
def _statement(with_refresh: bool) -> Select[Any]:
    # Built once per process per shape (core.prepared caches its compiled form).
    counted = _count().returning(USER.c.logins_count).cte("counted")
    written = [_inserted(table, row, counted) for table, row in _rows(with_refresh)]
    return select(counted.c.logins_count).add_cte(*written)


def _one_by_one(params: dict[str, Any], with_refresh: bool) -> int | None:
    """The same write as _statement's, statement by statement in the transaction (for
    databases without data-modifying WITH): the new login count, or None."""
    connection = db.session.connection()
    keys = {name: params[name] for name in ("of_tenant", "of_user", "generation", "now")}
    if connection.execute(_count(), keys).rowcount != 1:
        return None
    for table, row in _rows(with_refresh):
        connection.execute(insert(table).values({name: params[p] for name, p in row.items()}))
    return connection.scalar(
        select(USER.c.logins_count).where(
            USER.c.tenant_id == params["of_tenant"], USER.c.id == params["of_user"]
        )
    )


def sign_in(
    *,
    user: User,
    tenant: Tenant,
    method: str,
    ip: str | None,
    client_id: str | None = None,
    scope: list[str] | None = None,
    amr: list[str] | None = None,
    user_agent: str | None = None,
    id_token: bool = True,
    audit_data: dict[str, Any] | None = None,
) -> TokenSet | None:
    """Start a session of `user` (for the registered application `client_id`, granted
    `scope`, when given), issue its tokens (the ID token only if `id_token`), count the
    login and audit it `user.signed_in` with `method` and `audit_data`: signed first,
    then written in one statement. None when the user was blocked, deleted or had its
    sessions revoked since it was read: nothing was written, the tokens are dropped."""
    now = utcnow()
    session = start_session(
        user=user,
        tenant=tenant,
        now=now,
        client_id=client_id,
        scope=scope,
        amr=amr,
        ip=ip,
        user_agent=user_agent,
        added=False,
    )
    access, signed_id_token, ttl, granted = mint(
        user=user, tenant=tenant, session=session, now=now, scope=scope, id_token=id_token
    )
    event = audit_service.record(
        action="user.signed_in",
        actor=f"user:{user.id}",
        user_id=user.id,
        ip=ip,
        data={"method": method, **(audit_data or {})},
        at=now,
        written_by_caller=True,
    )
    params: dict[str, Any] = {
        "of_tenant": current_tenant_id(),
        "of_user": user.id,
        "generation": session.generation,
        "now": now,
        "session_id": session.id,
        "session_expires_at": session.expires_at,
        "client_id": session.client_id,
        "scope": session.scope,
        "amr": session.amr,
        "session_ip": session.ip,
        "user_agent": session.user_agent,
        "event_id": event.id,
        "action": event.action,
        "actor": event.actor,
        "event_target": event.target,
        "event_ip": event.ip,
        "event_data": event.data,
    }
    refresh_token = None
    if is_offline(session):
        refresh_token, row = refresh_row(user, tenant, session, now)
        params.update(
            refresh_id=row["id"], token_hash=row["token_hash"], refresh_expires_at=row["expires_at"]
        )
    if db.engine.dialect.name == "postgresql":
        rows = prepared.write(_statement(refresh_token is not None), params)
        count = rows[0]["logins_count"] if rows else None
    else:
        count = _one_by_one(params, refresh_token is not None)
    if count is None:
        return None
    set_committed_value(user, "logins_count", count)
    set_committed_value(user, "last_login_at", now)
    return TokenSet(
        access_token=access,
        expires_in=ttl,
        scope=" ".join(granted),
        id_token=signed_id_token,
        refresh_token=refresh_token,
        user_id=user.id,
    )
