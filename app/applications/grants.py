"""The authorization_code grant (RFC 6749 §4.1.3 with PKCE, RFC 7636 §4.6): a code is
exchanged once, by the app it was issued to, with the same redirect URI and the verifier
of its challenge; a code presented again ends the session its first exchange started."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import delete, select

from app.applications.models import Application, AuthorizationCode
from app.audit import service as audit_service
from app.core import security
from app.core.db import db, utcnow
from app.core.errors import Invalid, InvalidGrant
from app.core.tenancy import all_tenants, tenant_scope
from app.tenants import service as tenant_service
from app.tokens import claims as token_claims
from app.tokens import service as token_service
from app.users import service as user_service

# RFC 7636 §4.1: 43 to 128 characters of the unreserved set.
VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")
# Spent codes are kept this long after they expire, so a late replay still ends the
# session the first exchange started.
REPLAY_MEMORY = timedelta(days=1)


def _locked_code(raw: str) -> AuthorizationCode | None:
    # The row lock makes a concurrent second exchange wait for the first to commit, so it
    # sees the code used and the session it started (SQLite has one writer anyway).
    return db.session.scalar(
        select(AuthorizationCode)
        .where(AuthorizationCode.code_hash == security.sha256_hex(raw))
        .with_for_update()
    )


def _reused(row: AuthorizationCode, ip: str | None) -> InvalidGrant:
    if row.session_id:
        token_service.revoke_session(row.session_id)
    audit_service.record(
        action="token.code_reused",
        actor=f"client:{row.client_id}",
        user_id=row.user_id,
        target=row.session_id,
        ip=ip,
    )
    db.session.flush()
    return InvalidGrant("The authorization code was already used", commit=True)


def authorization_code_grant(
    *,
    client: Application,
    code: str,
    redirect_uri: str | None,
    code_verifier: str | None,
    ip: str | None,
) -> token_service.TokenSet:
    """Exchange a code for tokens whose ID token names `client` (aud, azp) and carries the
    request's nonce, holding the scopes the request asked for that the user holds and the
    client is allowed. InvalidGrant for an unknown, expired, used or foreign code, a
    different redirect URI or a verifier that does not match (the code is spent then);
    Invalid invalid_request without a verifier."""
    with tenant_scope(client.tenant_id):
        row = _locked_code(code)
        if row is None or row.client_id != client.id:
            raise InvalidGrant("The authorization code is not valid")
        now = utcnow()
        if row.used_at is not None:
            raise _reused(row, ip)
        row.used_at = now  # spent by any attempt of its own client, right or wrong
        db.session.flush()  # kept (the edge commits) when one of the checks below fails
        if row.expires_at <= now:
            raise InvalidGrant("The authorization code has expired", commit=True)
        if row.redirect_uri is not None and redirect_uri != row.redirect_uri:
            raise InvalidGrant("redirect_uri differs from the authorization request", commit=True)
        if not code_verifier:
            raise Invalid("code_verifier is required (PKCE)", code="invalid_request", commit=True)
        if not VERIFIER.fullmatch(code_verifier) or not security.constant_time_equals(
            security.pkce_s256(code_verifier), row.code_challenge
        ):
            raise InvalidGrant("The code_verifier does not match the challenge", commit=True)
        user = user_service.find_user(row.user_id)
        if user is None or user.blocked:
            raise InvalidGrant("The authorization code is not valid", commit=True)
        granted = token_claims.application_scopes(
            user, requested=row.scope, allowed=client.permitted_scopes
        )
        session = token_service.start_session(
            user=user,
            tenant=tenant_service.get_tenant(client.tenant_id),
            now=now,
            client_id=client.id,
            auth_time=row.auth_time,
            scope=granted,
        )
        row.session_id = session.id
        tokens = token_service.issue_session(
            user=user, session=session, nonce=row.nonce, scope=granted
        )
        db.session.flush()
        return tokens


def purge_expired(*, batch_size: int) -> int:
    """Delete up to `batch_size` codes expired more than REPLAY_MEMORY ago (all tenants)."""
    doomed = (
        select(AuthorizationCode.code_hash)
        .where(AuthorizationCode.expires_at < utcnow() - REPLAY_MEMORY)
        .limit(batch_size)
    )
    with all_tenants():
        return db.session.execute(
            delete(AuthorizationCode)
            .where(AuthorizationCode.code_hash.in_(doomed))
            .execution_options(synchronize_session=False)
        ).rowcount
