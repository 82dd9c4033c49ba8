"""The bearer check on every request: the token's claims (verified once per token per
worker, see signing.verify) and one indexed select that reads everything revocation
needs — the user's `blocked`, `session_generation` and `scope_version`, the session's
`revoked_at` and `generation` — on every request, so revocation holds on the next one
(SPEC §9, §10). The caller's profile, which answers that print it use without reading
the row again, comes from the worker's kept views (read_model.ViewCache) while the row's
`profile_version` has not moved: the select then returns the revocation columns and that
version only. A caller not kept yet is read whole in the same select; one whose version
moved costs one more select, the view's.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import Select, bindparam, select

from app.core import prepared
from app.core.db import db
from app.core.tenancy import Principal
from app.tenants import service as tenant_service
from app.tokens import signing
from app.tokens.models import AuthSession
from app.tokens.service import SCOPE_VERSION_CLAIM, session_state_is_live
from app.users import read_model

SESSION = AuthSession.__table__


USER = read_model.USER
# What the check reads when the caller's view is kept: revocation, and whether it is stale.
REVOCATION_COLUMNS = (
    USER.c.profile_version,
    USER.c.blocked,
    USER.c.session_generation,
    USER.c.scope_version,
)


@cache
def _caller_select(dialect_name: str, *, whole: bool) -> Select[Any]:
    """The caller's revocation columns (with its whole view when `whole`) and its token's
    session (NULLs when the session is gone).

    The session is joined by its primary key alone and its owner compared in the select:
    with the owner in the join, PostgreSQL's generic plan may walk every session of the
    user by (tenant, user) and filter on the id, which grows with each sign-in."""
    joined = USER.outerjoin(SESSION, SESSION.c.id == bindparam("session_id"))
    owned = (SESSION.c.tenant_id == USER.c.tenant_id) & (SESSION.c.user_id == USER.c.id)
    return (
        select(
            *(read_model.view_columns(dialect_name) if whole else REVOCATION_COLUMNS),
            owned.label("session_owned"),
            SESSION.c.revoked_at.label("session_revoked_at"),
            SESSION.c.generation.label("session_started_generation"),
        )
        .select_from(joined)
        .where(read_model.user_where())
    )


def _live_caller(claims: dict[str, Any], session_id: str, *, whole: bool) -> dict[str, Any]:
    """The caller's row (revocation columns, or the whole view), after every revocation
    check: invalid_token when the user is blocked or gone, the session revoked, ended by
    a newer generation or not the user's, or the token's scope version stale."""
    params = {"tenant_id": claims["tid"], "user_id": str(claims["sub"]), "session_id": session_id}
    caller = prepared.fetch_one(_caller_select(db.engine.dialect.name, whole=whole), params)
    if caller is None or caller["blocked"]:
        raise signing.invalid_token()
    owned = caller.pop("session_owned")  # NULL when no session has this id
    revoked_at = caller.pop("session_revoked_at")
    generation = caller.pop("session_started_generation")
    if not owned or not session_state_is_live(
        revoked_at=revoked_at, generation=generation, user_generation=caller["session_generation"]
    ):
        raise signing.invalid_token("The access token was revoked")
    if claims.get(SCOPE_VERSION_CLAIM) != (caller["scope_version"] or 0):
        raise signing.invalid_token("The permissions changed; refresh the access token")
    return caller


def _caller_view(claims: dict[str, Any], session_id: str) -> read_model.UserView:
    """The live caller's view: the kept one while its version holds, else read now (and
    kept, under the version it was read at)."""
    tenant_id, user_id = claims["tid"], str(claims["sub"])
    views = read_model.kept_views()
    kept = views.get(tenant_id, user_id) if views is not None else None
    if kept is None:
        view = read_model.complete(_live_caller(claims, session_id, whole=True))
    else:
        version = _live_caller(claims, session_id, whole=False)["profile_version"]
        if version == kept.profile_version:
            return kept
        # Read after the check: a change in between shows here (and moves the version
        # again), so the view is never older than the row the check read.
        fresh = read_model.load_view(tenant_id=tenant_id, user_id=user_id)
        if fresh is None:  # deleted since the check
            raise signing.invalid_token()
        view = fresh
    if views is not None:
        views.put(view)
    return view


def authenticate_access_token(raw: str) -> Principal:
    """The principal behind a bearer JWT; invalid_token when it is expired or forged, its
    session was revoked (password change, reset, revoke, reuse), its scopes are stale
    (group, custom scopes or policies changed), or its user is blocked or gone. The user
    and the session come from one select (two when the kept view is stale)."""
    claims = signing.verify(raw)
    if not isinstance(claims.get("scope"), str) or "jti" not in claims:
        raise signing.invalid_token("An ID token is not an access token")
    tenant_id = claims["tid"]
    scopes = frozenset(str(claims.get("scope", "")).split())
    if claims.get("gty") == "client-credentials":
        api_key = tenant_service.find_live_api_key(str(claims.get("azp", "")))
        if api_key is None or api_key.tenant_id != tenant_id:
            raise signing.invalid_token()
        return Principal(
            tenant_id=tenant_id, scopes=scopes, kind="api_key", credential_id=api_key.id
        )
    sid = claims.get("sid")
    if not isinstance(sid, str):
        raise signing.invalid_token()
    view = _caller_view(claims, sid)
    auth_time = claims.get("auth_time")
    client_id = claims.get("azp")
    return Principal(
        tenant_id=tenant_id,
        scopes=scopes,
        user_id=view.id,
        kind="user",
        credential_id=sid,
        auth_time=auth_time if isinstance(auth_time, int) else None,
        client_id=client_id if isinstance(client_id, str) else None,
        user_view=view,
    )
