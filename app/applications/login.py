"""The hosted login page's sign-in, step by step: resume a browser sign-in session, check
the password (the password grant's own check: same audit, dummy-hash timing, rehash),
then the second factor, then answer the authorization request with a code.

The browser sign-in session is an AuthSession row without a client: it lets the next app
skip the form until it expires, the user signs out, or the user's sessions are revoked
(password change or reset, block), exactly as the user's token sessions end."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app

from app.applications import authorization
from app.applications.authorization import AuthorizationRequest
from app.core.db import db, utcnow
from app.core.errors import InvalidGrant
from app.core.tenancy import tenant_scope
from app.credentials import mfa as mfa_service
from app.tenants import service as tenant_service
from app.tokens import grants as token_grants
from app.tokens import service as token_service
from app.tokens.models import AuthSession
from app.users import service as user_service
from app.users.models import User

LOGIN_METHOD = "login_page"


@dataclass(frozen=True)
class Outcome:
    """Where a step leaves the browser: at the client with a code (`location`, and the
    sign-in session to keep in a cookie), or at the second-factor form (`pending_user`)."""

    location: str | None = None
    session_id: str | None = None
    auth_time: datetime | None = None
    pending_user: str | None = None


def _live_session(session_id: str) -> tuple[User, AuthSession] | None:
    session = db.session.get(AuthSession, session_id)
    if session is None or session.client_id is not None or session.expires_at <= utcnow():
        return None
    user = user_service.find_user(session.user_id)
    if user is None or user.blocked or not token_service.session_is_live(user, session):
        return None
    return user, session


def _answer(request: AuthorizationRequest, user: User, session: AuthSession) -> Outcome:
    code = authorization.issue_code(request=request, user=user, auth_time=session.auth_time)
    return Outcome(
        location=authorization.success_location(request, code),
        session_id=session.id,
        auth_time=session.auth_time,
    )


def resume(*, request: AuthorizationRequest, session_id: str | None) -> Outcome | None:
    """Answer the request at once when the browser's sign-in session is live and recent
    enough (max_age, prompt=login); None when the form must be shown."""
    if session_id is None:
        return None
    with tenant_scope(request.tenant_id):
        found = _live_session(session_id)
        if found is None or not authorization.session_satisfies(request, found[1].auth_time):
            return None
        return _answer(request, *found)


def _complete(request: AuthorizationRequest, user: User, ip: str | None) -> Outcome:
    token_service.record_login(user, actor=f"user:{user.id}", ip=ip, method=LOGIN_METHOD)
    now = utcnow()
    session = token_service.start_session(
        user=user,
        tenant=tenant_service.get_tenant(user.tenant_id),
        now=now,
        expires_at=now + timedelta(seconds=current_app.config["LOGIN_SESSION_TTL"]),
    )
    db.session.flush()
    return _answer(request, user, session)


def password_step(
    *, request: AuthorizationRequest, login: str, password: str, ip: str | None
) -> Outcome:
    """Check the password of the user a login names (a username, or an email when no user
    has that username); InvalidGrant, audited, with the same answer and cost whether or
    not the user exists. Then either the code, or the second factor still to come."""
    authorization.application_of(request)
    with tenant_scope(request.tenant_id):
        user = token_grants.authenticate_password(
            username=login, email=None, password=password, ip=ip
        )
        if mfa_service.sign_in_needs_otp(user):
            return Outcome(pending_user=user.id)
        return _complete(request, user, ip)


def second_factor_step(
    *, request: AuthorizationRequest, user_id: str, code: str, ip: str | None
) -> Outcome:
    """Check the one-time code of a user whose password was just checked (the MFA
    service's check, as the password grant's `otp`: each code works once, a wrong one is
    audited); InvalidGrant for a wrong or reused code, or a user blocked or deleted
    meanwhile."""
    authorization.application_of(request)
    with tenant_scope(request.tenant_id):
        user = user_service.find_user(user_id)
        if user is None or user.blocked:
            raise InvalidGrant("Sign in again")
        mfa_service.check_sign_in(user=user, otp=code, ip=ip)
        return _complete(request, user, ip)


def sign_out(*, tenant_id: str, session_id: str) -> str | None:
    """End a browser sign-in session; the id of its user (None when it was not live)."""
    with tenant_scope(tenant_id):
        found = _live_session(session_id)
        token_service.revoke_session(session_id)
        return found[0].id if found else None


def signed_in_user(*, tenant_id: str, session_id: str) -> str | None:
    """The user id of a live browser sign-in session, or None."""
    with tenant_scope(tenant_id):
        found = _live_session(session_id)
        return found[0].id if found else None
