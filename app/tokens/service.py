"""The tokens sign-in issues: access and ID tokens (RS256 JWTs), refresh tokens (opaque,
hashed, rotated in families with reuse detection), sessions and their revocation. The
check of a bearer access token on every request is tokens.bearer.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from app.audit import service as audit_service
from app.core import scopes as scope_catalogue
from app.core import security
from app.core.db import add_unique, db, utcnow
from app.core.errors import AppError
from app.core.sweeps import Cleanup
from app.tenants import service as tenant_service
from app.tenants.models import Tenant
from app.tokens import signing
from app.tokens.claims import session_scopes, user_claims
from app.tokens.models import AuthSession, CustomTokenUse, RefreshToken
from app.users.models import User

REFRESH_PREFIX = "rt_"
# The user's scope version when the access token was minted (only Gatehouse reads it).
SCOPE_VERSION_CLAIM = "gh_sv"
# Userinfo's claims that the ID token leaves out.
USERINFO_ONLY = ("phone_number", "updated_at")


@dataclass
class TokenSet:
    access_token: str
    expires_in: int
    scope: str
    id_token: str | None = None
    refresh_token: str | None = None
    user_id: str | None = None
    is_new_user: bool = False


def tenant_of_refresh_token(raw: str) -> str | None:
    """The tenant a refresh token names (`rt_<tenant>_<secret>`), unchecked; None if it
    has not that form."""
    parts = raw.split("_", 2)
    if len(parts) != 3 or f"{parts[0]}_" != REFRESH_PREFIX or not parts[1]:
        return None
    return parts[1]


def access_ttl(tenant: Tenant) -> int:
    return tenant.access_token_ttl or current_app.config["ACCESS_TOKEN_TTL"]


def _refresh_ttl(tenant: Tenant) -> int:
    return tenant.refresh_token_ttl or current_app.config["REFRESH_TOKEN_TTL"]


def timestamp(moment: datetime) -> int:
    """A JWT NumericDate: whole seconds (standard clients refuse a fractional `iat` as
    issued in the future). Revocation does not rest on it: see AuthSession."""
    return int(moment.timestamp())


def _id_token(
    user: User,
    tenant: Tenant,
    now: datetime,
    ttl: int,
    session: AuthSession,
    *,
    access_token: str,
    scope: list[str],
    nonce: str | None = None,
) -> str:
    """OIDC claims of the user (for an application's session, those its `scope` asks
    for). Issued to a registered application, `aud` is its client_id and `azp` says so
    too (OIDC Core §2), with `at_hash` binding the access token it came with; otherwise
    `aud` is the tenant."""
    about = user_claims(user, scope if session.scope is not None else None)
    claims: dict[str, Any] = {
        "iss": current_app.config["ISSUER"],
        "aud": session.client_id or tenant.id,
        "tid": tenant.id,
        "iat": timestamp(now),
        "exp": timestamp(now) + ttl,
        "auth_time": timestamp(session.auth_time),
        **{key: value for key, value in about.items() if key not in USERINFO_ONLY},
    }
    if session.amr:
        claims["amr"] = list(session.amr)
    # The session, so that a later use of the token (link_with) can tell it was revoked.
    claims["sid"] = session.id
    if session.client_id:
        claims["azp"] = session.client_id
        claims["at_hash"] = security.left_half_hash(access_token)
        claims["nonce"] = nonce
    return signing.sign({k: v for k, v in claims.items() if v not in (None, "")})


def refresh_row(
    user: User, tenant: Tenant, session: AuthSession, now: datetime
) -> tuple[str, dict[str, Any]]:
    """A new refresh token of `session`: the raw token (shown once) and its row (hashed)."""
    raw = f"{REFRESH_PREFIX}{user.tenant_id}_{security.random_token(32)}"
    row = {
        "id": security.random_hex(16),
        "tenant_id": user.tenant_id,
        "token_hash": security.sha256_hex(raw),
        "family_id": session.id,
        "user_id": user.id,
        "created_at": now,
        "expires_at": now + timedelta(seconds=_refresh_ttl(tenant)),
    }
    return raw, row


def _new_refresh_token(user: User, tenant: Tenant, session: AuthSession, now: datetime) -> str:
    raw, row = refresh_row(user, tenant, session, now)
    db.session.add(RefreshToken(**row))
    return raw


def session_expiry(tenant: Tenant, now: datetime) -> datetime:
    """When a session touched now can have no valid token left (refresh or access)."""
    return now + timedelta(seconds=max(_refresh_ttl(tenant), access_ttl(tenant)))


def start_session(
    *,
    user: User,
    tenant: Tenant,
    now: datetime,
    client_id: str | None = None,
    auth_time: datetime | None = None,
    expires_at: datetime | None = None,
    scope: list[str] | None = None,
    into: Session | None = None,
    amr: list[str] | None = None,
    parent_id: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    added: bool = True,
) -> AuthSession:
    """A new sign-in session (refresh family) of `user`, under its current generation;
    `auth_time` is when the user entered a password (now unless a browser sign-in session
    carried it over), `client_id` the registered application it is for and `scope` what
    that application was granted (application_scopes); refreshes never widen it. `into`
    is the unit of work to add it to (the request's unless given; with `added` False,
    none: a sign-in's one write inserts it itself, app.tokens.login). `amr` says how the
    user authenticated (OIDC amr: pwd, otp, hwk, swk, mfa), `parent_id` names the browser
    sign-in session an application's session was issued through (ending that one ends
    this one), `ip` and `user_agent` where it began (the account page lists them)."""
    if client_id is not None and scope is None:
        raise ValueError("an application's session needs the scopes it was granted")
    session = AuthSession(
        id=security.random_hex(16),
        tenant_id=user.tenant_id,
        user_id=user.id,
        generation=user.session_generation or 0,
        auth_time=auth_time or now,
        created_at=now,
        expires_at=expires_at or session_expiry(tenant, now),
        client_id=client_id,
        scope=" ".join(scope) if client_id is not None and scope is not None else None,
        amr=list(amr) if amr else None,
        parent_id=parent_id,
        ip=ip[:64] if ip else None,
        user_agent=user_agent[:255] if user_agent else None,
        last_seen_at=now,
    )
    if added:
        (into or db.session).add(session)
    return session


def issue_session(
    *,
    user: User,
    session: AuthSession | None = None,
    client_id: str | None = None,
    auth_time: datetime | None = None,
    nonce: str | None = None,
    scope: list[str] | None = None,
    amr: list[str] | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
) -> TokenSet:
    """Access, ID and refresh tokens for `user` in `session` (a new one unless given; a
    given one has already been extended by the refresh that continues it). A new session
    is for the registered application `client_id` if given, begun at `auth_time` from `ip`
    and `user_agent`; `nonce` goes into the ID token (OIDC Core §3.1.2.1).

    The access token carries `scope` (an application's grant, or a narrowing of the
    session's asked for by a refresh), else the session's scopes (session_scopes). An
    application's session gets a refresh token only when granted `offline_access`; a
    session without an application (a password grant naming no app) always does."""
    tenant = tenant_service.get_tenant(user.tenant_id)
    now = utcnow()
    session = session or start_session(
        user=user,
        tenant=tenant,
        now=now,
        client_id=client_id,
        auth_time=auth_time,
        scope=scope,
        amr=amr,
        ip=ip,
        user_agent=user_agent,
    )
    access, id_token, ttl, granted = mint(
        user=user, tenant=tenant, session=session, now=now, scope=scope, nonce=nonce
    )
    return TokenSet(
        access_token=access,
        expires_in=ttl,
        scope=" ".join(granted),
        id_token=id_token,
        refresh_token=_new_refresh_token(user, tenant, session, now)
        if is_offline(session)
        else None,
        user_id=user.id,
    )


def is_offline(session: AuthSession) -> bool:
    """Whether the session gets refresh tokens: an application's only when granted
    `offline_access`; a session without an application (a password grant naming no app,
    a custom token) always does."""
    return session.scope is None or scope_catalogue.OFFLINE_ACCESS in session.scope.split()


def mint(
    *,
    user: User,
    tenant: Tenant,
    session: AuthSession,
    now: datetime,
    scope: list[str] | None = None,
    nonce: str | None = None,
    id_token: bool = True,
) -> tuple[str, str | None, int, list[str]]:
    """The signed access token of `session`, its ID token (unless `id_token` is False: a
    grant that did not ask for `openid`), their lifetime, and the scopes the access token
    holds: `scope` (an application's grant, or a narrowing of the session's asked for by
    a refresh), else the session's (session_scopes)."""
    granted = scope if scope is not None else session_scopes(user, session)
    ttl = access_ttl(tenant)
    claims: dict[str, Any] = {
        "iss": current_app.config["ISSUER"],
        "sub": user.id,
        "aud": tenant.id,
        "tid": tenant.id,
        "scope": " ".join(granted),
        "iat": timestamp(now),
        "exp": timestamp(now) + ttl,
        "auth_time": timestamp(session.auth_time),
        "jti": uuid.uuid4().hex,
        "sid": session.id,
        SCOPE_VERSION_CLAIM: user.scope_version or 0,
    }
    if session.client_id:
        # The application the token was issued to (RFC 9068 `client_id`, OIDC `azp`):
        # what it may do on the user's behalf (link_with) depends on it.
        claims["azp"] = session.client_id
    access = signing.sign(claims)
    if not id_token:
        return access, None, ttl, granted
    about = _id_token(
        user, tenant, now, ttl, session, access_token=access, scope=granted, nonce=nonce
    )
    return access, about, ttl, granted


def spend_once(*, jti: str, user_id: str, ttl: int, used: AppError) -> None:
    """Mark the single-use token `jti` used (in the tenant in scope), remembered `ttl`
    seconds (its lifetime: after that it is refused as expired anyway); raises `used` if
    it was used already, also by a concurrent request (the primary key decides)."""
    now = utcnow()
    add_unique(
        CustomTokenUse(
            jti=jti, user_id=user_id, used_at=now, expires_at=now + timedelta(seconds=ttl)
        ),
        used,
    )


def record_login(
    user: User, *, actor: str, ip: str | None, method: str, data: dict[str, Any] | None = None
) -> None:
    """Count a successful sign-in (in this transaction, so the next read shows it); `data`
    goes into its audit event beside the method.

    An atomic `logins_count + 1` rather than a versioned row update: concurrent sign-ins of
    one user must both count, and a sign-in is no edit of the user (version, updated_at
    and so the ETag stay)."""
    now = utcnow()
    table = User.__table__
    # A Core statement on the unit of work's connection: the ORM's bulk-update machinery
    # costs more CPU than the round trip itself on the sign-in path.
    db.session.connection().execute(
        update(table)
        .where(table.c.tenant_id == user.tenant_id, table.c.id == user.id)
        .values(
            logins_count=table.c.logins_count + 1,
            last_login_at=now,
            updated_at=table.c.updated_at,
        )
    )
    set_committed_value(user, "logins_count", (user.logins_count or 0) + 1)
    set_committed_value(user, "last_login_at", now)
    audit_service.record(
        action="user.signed_in",
        actor=actor,
        user_id=user.id,
        ip=ip,
        data={"method": method, **(data or {})},
    )


def revoke_user_sessions(*, user: User, keep_session: str | None = None) -> None:
    """End every session of the user except `keep_session` (its tokens stay valid).

    Bumping the generation ends sessions that no UPDATE could see: one a sign-in or a
    refresh is creating at this very moment is born under the old generation and is
    refused on its first use."""
    now = utcnow()
    user.tokens_valid_after = now
    user.session_generation = (user.session_generation or 0) + 1
    db.session.flush()
    if keep_session is not None:
        db.session.execute(
            update(AuthSession)
            .where(AuthSession.id == keep_session, AuthSession.user_id == user.id)
            .values(generation=user.session_generation)
            .execution_options(synchronize_session=False)
        )
    db.session.execute(
        update(AuthSession)
        .where(AuthSession.user_id == user.id, AuthSession.revoked_at.is_(None))
        .where(AuthSession.id != (keep_session or ""))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )


def revoke_session(session_id: str, *, into: Session | None = None) -> None:
    """End one session: every access and refresh token of its family, including any a
    concurrent refresh is minting right now (they name the session, which is checked).
    `into` is the unit of work to do it in (the request's unless given)."""
    (into or db.session).execute(
        update(AuthSession)
        .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def revoke_client_sessions(client_id: str) -> None:
    """End every session started for a registered application (it was deleted)."""
    db.session.execute(
        update(AuthSession)
        .where(AuthSession.client_id == client_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def session_id_is_live(user: User, session_id: str) -> bool:
    """Whether the session `session_id` of `user` still stands (see session_is_live)."""
    session = db.session.get(AuthSession, session_id)
    return session is not None and session.user_id == user.id and session_is_live(user, session)


def session_is_live(user: User, session: AuthSession | None) -> bool:
    """Whether a session still stands: not revoked, and of the user's current generation."""
    return session is not None and session_state_is_live(
        revoked_at=session.revoked_at,
        generation=session.generation,
        user_generation=user.session_generation,
    )


def session_state_is_live(
    *, revoked_at: datetime | None, generation: int, user_generation: int | None
) -> bool:
    """The rule of session_is_live on bare column values (the bearer check's select)."""
    return revoked_at is None and generation == (user_generation or 0)


# What the periodic clean-up deletes (core.sweeps runs it across tenants): expired
# refresh tokens, used custom-token ids and ended sessions of each kind.
EXPIRED: tuple[Cleanup, ...] = (
    Cleanup("expired refresh tokens", RefreshToken, lambda now: RefreshToken.expires_at < now),
    Cleanup("used custom-token ids", CustomTokenUse, lambda now: CustomTokenUse.expires_at < now),
    Cleanup("expired sessions", AuthSession, lambda now: AuthSession.expires_at < now),
)
