"""The grants of the token endpoint that need no password: refresh (rotation in families,
reuse detection), client credentials (an API key), and RFC 7009 revocation. The password
grant is the sign-in flow's (app.signin.flow)."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import timedelta

from flask import current_app
from sqlalchemy import select, update

from app.audit import service as audit_service
from app.core import security
from app.core.db import db, independent_write, utcnow
from app.core.errors import AppError, Invalid, InvalidGrant, Unauthenticated
from app.core.tenancy import current_tenant_id
from app.tenants import service as tenant_service
from app.tokens import signing
from app.tokens.claims import session_scopes
from app.tokens.models import AuthSession, RefreshToken
from app.tokens.service import (
    TokenSet,
    access_ttl,
    issue_session,
    revoke_session,
    session_expiry,
    session_is_live,
    tenant_of_refresh_token,
    timestamp,
)
from app.users import service as user_service
from app.users.models import User


def _find_refresh_token(raw: str) -> RefreshToken | None:
    return db.session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == security.sha256_hex(raw))
    )


def _extend_live_session(session: AuthSession, user: User) -> bool:
    """Push a live session's expiry forward, atomically with the check that it is still
    live: a revocation committed before this statement wins, and one that commits after
    it ends the tokens this refresh mints (they name the session)."""
    tenant = tenant_service.get_tenant(user.tenant_id)
    result = db.session.execute(
        update(AuthSession)
        .where(
            AuthSession.id == session.id,
            AuthSession.revoked_at.is_(None),
            AuthSession.generation == (user.session_generation or 0),
        )
        .values(expires_at=session_expiry(tenant, utcnow()), last_seen_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def refresh_grant(
    *,
    refresh_token: str,
    ip: str | None,
    client_id: str | None = None,
    scope: str | None = None,
    allowed_scopes: Collection[str] | None = None,
) -> TokenSet:
    """Rotate a refresh token; reuse after the grace interval revokes the whole session.
    InvalidGrant for an unknown, expired or revoked token, a blocked or deleted user, or
    a token of a registered application's session that `client_id` (the application the
    request identified, authenticated when confidential) does not name.

    An application's session keeps what it was granted, narrowed for good to what the
    user holds and `allowed_scopes` (the app's, now) names; a `scope` may narrow the new
    access token further (RFC 6749 §6: not the session), never widen it (Invalid
    invalid_scope). Runs in the tenant the token names (refresh_token_tenant)."""
    if tenant_of_refresh_token(refresh_token) != current_tenant_id():
        raise InvalidGrant("The refresh token is not valid")
    row = _find_refresh_token(refresh_token)
    now = utcnow()
    if row is None or row.expires_at <= now:
        raise InvalidGrant("The refresh token is not valid")
    session = db.session.get(AuthSession, row.family_id)
    user = user_service.find_user(row.user_id)
    if user is None or user.blocked or not session_is_live(user, session):
        raise InvalidGrant("The refresh token is not valid")
    assert session is not None  # session_is_live said so
    if session.client_id is not None and session.client_id != client_id:
        raise InvalidGrant("The refresh token was issued to another client")
    grace = timedelta(seconds=current_app.config["REFRESH_REUSE_GRACE_SECONDS"])
    if row.used_at is not None and now - row.used_at > grace:
        # Kept although the request fails: written in a short transaction of its own.
        with independent_write() as kept:
            revoke_session(session.id, into=kept)
            audit_service.record(
                action="token.refresh_reused",
                actor="anonymous",
                user_id=row.user_id,
                target=session.id,
                ip=ip,
                session=kept,
            )
        raise InvalidGrant("The refresh token was already used")
    if not _extend_live_session(session, user):
        raise InvalidGrant("The refresh token is not valid")
    row.used_at = row.used_at or now
    current = session_scopes(user, session, allowed=allowed_scopes)
    if session.scope is not None:
        # What the user or the app lost is lost to the session for good: never widened.
        session.scope = " ".join(current)
    tokens = issue_session(user=user, session=session, scope=_narrowed(current, session, scope))
    db.session.flush()
    return tokens


def _narrowed(granted: list[str], session: AuthSession, scope: str | None) -> list[str]:
    """The scopes a refresh of an application's session asks for, if it asks; a session
    without an application ignores `scope`, as it did before applications existed."""
    if session.scope is None or not scope:
        return granted
    asked = scope.split()
    beyond = [s for s in asked if s not in session.scope.split()]
    if beyond:
        raise Invalid(
            f"A refresh cannot widen the session's scope: {' '.join(beyond)[:200]}",
            code="invalid_scope",
        )
    return [s for s in granted if s in asked]


def client_credentials_grant(
    *,
    client_id: str | None,
    client_secret: str | None,
    tenant_id: str | None,
    challenge: str = "Bearer",
) -> TokenSet:
    """An access token that carries an API key's scopes (no user, no refresh token).
    The API key is the client secret; a given client_id must be that key's id. A failure
    is invalid_client, challenging with the scheme the client used (RFC 6749 §5.2)."""

    def _invalid_client(message: str = "Client authentication failed") -> AppError:
        return Unauthenticated(message, code="invalid_client", scheme=challenge, realm="gatehouse")

    if not client_secret:
        raise _invalid_client("client_secret (the API key) is required")
    try:
        api_key = tenant_service.authenticate_api_key(client_secret)
    except Unauthenticated as exc:
        raise _invalid_client() from exc
    if client_id is not None and client_id != api_key.id:
        raise _invalid_client("client_id does not match the API key")
    if tenant_id is not None and tenant_id != api_key.tenant_id:
        raise _invalid_client("The tenant header does not match the API key")
    tenant = tenant_service.get_tenant(api_key.tenant_id)
    now = utcnow()
    ttl = access_ttl(tenant)
    scope = " ".join(api_key.scopes)
    access = signing.sign(
        {
            "iss": current_app.config["ISSUER"],
            "sub": f"{api_key.id}@clients",
            "aud": tenant.id,
            "tid": tenant.id,
            "azp": api_key.id,
            "gty": "client-credentials",
            "scope": scope,
            "iat": timestamp(now),
            "exp": timestamp(now) + ttl,
            "jti": uuid.uuid4().hex,
        }
    )
    return TokenSet(access_token=access, expires_in=ttl, scope=scope)


def refresh_token_tenant(raw: str, *, expected: str | None = None) -> str:
    """The tenant a refresh token names (its prefix; nothing is read), to enter before
    refresh_grant; InvalidGrant for a malformed one or one of a tenant other than
    `expected` (the tenant the request named, if it named one)."""
    tenant_id = tenant_of_refresh_token(raw)
    if tenant_id is None or (expected and tenant_id != expected):
        raise InvalidGrant("The refresh token is not valid")
    return tenant_id


def revoke_token(*, token: str) -> None:
    """RFC 7009: revoke the family of a refresh token of the tenant in scope; unknown
    tokens are ignored."""
    row = _find_refresh_token(token)
    if row is not None:
        revoke_session(row.family_id)
