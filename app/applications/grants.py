"""The authorization_code grant (RFC 6749 §4.1.3 with PKCE, RFC 7636 §4.6): a code is
exchanged once, by the app it was issued to, with the same redirect URI and the verifier
of its challenge; a code presented again ends the session its first exchange started."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.applications.models import Application, AuthorizationCode
from app.audit import service as audit_service
from app.core import security
from app.core.db import db, independent_write, utcnow
from app.core.errors import AppError, Invalid, InvalidGrant
from app.core.sweeps import Cleanup
from app.tenants import service as tenant_service
from app.tokens import claims as token_claims
from app.tokens import service as token_service
from app.tokens.models import AuthSession
from app.users import service as user_service
from app.users.models import User

# RFC 7636 §4.1: 43 to 128 characters of the unreserved set.
VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")
# Spent codes are kept this long after they expire, so a late replay still ends the
# session the first exchange started.
REPLAY_MEMORY = timedelta(days=1)


@dataclass(frozen=True)
class _Claim:
    """What the code's own transaction decided: the refusal to raise (the code is spent or
    its reuse recorded, whatever the request does next), or the session it started."""

    refusal: AppError | None = None
    session: AuthSession | None = None
    user: User | None = None
    nonce: str | None = None
    granted: list[str] | None = None


def _refused(reason: str) -> InvalidGrant:
    return InvalidGrant(reason)


def _claim(
    spend: Session,
    client: Application,
    code: str,
    redirect_uri: str | None,
    code_verifier: str | None,
    ip: str | None,
    user_agent: str | None,
) -> _Claim:
    # The row lock makes a concurrent second exchange wait until this short transaction
    # has committed the code as used and the session it started, so it sees both and ends
    # that session (SQLite has one writer anyway).
    row = spend.scalar(
        select(AuthorizationCode)
        .where(AuthorizationCode.code_hash == security.sha256_hex(code))
        .with_for_update()
    )
    if row is None or row.client_id != client.id:
        return _Claim(refusal=_refused("The authorization code is not valid"))
    now = utcnow()
    if row.used_at is not None:
        if row.session_id:
            token_service.revoke_session(row.session_id, into=spend)
        audit_service.record(
            action="token.code_reused",
            actor=f"client:{row.client_id}",
            user_id=row.user_id,
            target=row.session_id,
            ip=ip,
            session=spend,
        )
        return _Claim(refusal=_refused("The authorization code was already used"))
    row.used_at = now  # spent by any attempt of its own client, right or wrong
    if row.expires_at <= now:
        return _Claim(refusal=_refused("The authorization code has expired"))
    if row.redirect_uri is not None and redirect_uri != row.redirect_uri:
        return _Claim(refusal=_refused("redirect_uri differs from the authorization request"))
    if not code_verifier:
        return _Claim(refusal=Invalid("code_verifier is required (PKCE)", code="invalid_request"))
    if not VERIFIER.fullmatch(code_verifier) or not security.constant_time_equals(
        security.pkce_s256(code_verifier), row.code_challenge
    ):
        return _Claim(refusal=_refused("The code_verifier does not match the challenge"))
    user = user_service.find_user(row.user_id)
    if user is None or user.blocked:
        return _Claim(refusal=_refused("The authorization code is not valid"))
    if row.login_session_id is not None:
        # Signed out (account page, logout) since the code was issued: nothing more may
        # be issued through that sign-in.
        parent = spend.get(AuthSession, row.login_session_id)
        if not token_service.session_is_live(user, parent):
            return _Claim(refusal=_refused("The sign-in this code came from has ended"))
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
        into=spend,
        amr=row.amr,
        parent_id=row.login_session_id,
        ip=ip,
        user_agent=user_agent,
    )
    row.session_id = session.id
    return _Claim(session=session, user=user, nonce=row.nonce, granted=granted)


def authorization_code_grant(
    *,
    client: Application,
    code: str,
    redirect_uri: str | None,
    code_verifier: str | None,
    ip: str | None,
    user_agent: str | None = None,
) -> token_service.TokenSet:
    """Exchange a code for tokens whose ID token names `client` (aud, azp) and carries the
    request's nonce, holding the scopes the request asked for that the user holds and the
    client is allowed. InvalidGrant for an unknown, expired, used or foreign code, a
    different redirect URI or a verifier that does not match; Invalid invalid_request
    without a verifier. Any attempt spends the code, and a second one ends the session the
    first started: both are written in the code's own short transaction, before raising.
    Runs in the client's tenant."""
    with independent_write() as spend:
        claim = _claim(spend, client, code, redirect_uri, code_verifier, ip, user_agent)
    if claim.refusal is not None:
        raise claim.refusal
    assert claim.session is not None and claim.user is not None
    tokens = token_service.issue_session(
        user=claim.user, session=claim.session, nonce=claim.nonce, scope=claim.granted
    )
    db.session.flush()
    return tokens


# What the periodic clean-up deletes (core.sweeps runs it across tenants): codes expired
# more than REPLAY_MEMORY ago.
EXPIRED_CODES = Cleanup(
    "expired authorization codes",
    AuthorizationCode,
    lambda now: AuthorizationCode.expires_at < now - REPLAY_MEMORY,
)
