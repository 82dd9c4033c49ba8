"""Sign-ins that follow a proof by mail rather than the login form: the verification link
of a hosted sign-up, and the hosted password reset. Each starts a browser sign-in session
(as the login page does, amr ["pwd"]: the user chose the password minutes before and
proved the mailbox) and, when the flow began from an app's authorization request, answers
it with a code.

A user with a second factor is never signed in by a mail alone: after a reset that began
from an app, the second-factor step follows (the new password was just given); otherwise
the user signs in with the new password. Nor is one whom the tenant or the app requires
to have a second factor not yet enrolled: the login page enrols it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app

from app.applications import authorization, login
from app.applications.authorization import AuthorizationRequest
from app.core.db import db, utcnow
from app.core.errors import Invalid
from app.credentials import mfa as mfa_service
from app.credentials import reset as reset_service
from app.credentials.verification import Verified
from app.signin import flow
from app.tenants import service as tenant_service
from app.tokens import service as token_service
from app.users.models import User

SIGNUP_METHOD = "signup_link"
RESET_METHOD = "password_reset"
AMR = ["pwd"]


@dataclass(frozen=True)
class Continued:
    """Where a mail-proved step leaves the browser: the app's request it began from (if
    any), and the login outcome (a code, a sign-in session, or the second factor still to
    come); `outcome` None when the user is not signed in (the page says so)."""

    request: AuthorizationRequest | None
    outcome: login.Outcome | None


def _request(data: dict[str, Any] | None) -> AuthorizationRequest | None:
    """The app's request a mailed link carries, while its app and redirect URI stand (a
    link outlives them: without them the flow ends on the page rather than failing)."""
    if data is None:
        return None
    try:
        request = AuthorizationRequest.from_dict(data)
        authorization.application_of(request)
    except (Invalid, TypeError):
        return None
    return request


def _mfa_enrolment_due(user: User, request: AuthorizationRequest | None) -> bool:
    """Whether the tenant (or the request's app) requires a second factor the user lacks:
    the login page enrols it, so a mail alone does not sign in."""
    required = tenant_service.get_tenant(user.tenant_id).mfa_required or (
        request is not None and authorization.application_of(request).mfa_required
    )
    return bool(required) and not flow.needs_second_factor(user)


def _sign_in(
    user: User,
    request: AuthorizationRequest | None,
    *,
    method: str,
    ip: str | None,
    user_agent: str | None,
) -> login.Outcome:
    flow.finish(user=user, ip=ip, method=method)
    now = utcnow()
    session = token_service.start_session(
        user=user,
        tenant=tenant_service.get_tenant(user.tenant_id),
        now=now,
        expires_at=now + timedelta(seconds=current_app.config["LOGIN_SESSION_TTL"]),
        amr=AMR,
        ip=ip,
        user_agent=user_agent,
    )
    db.session.flush()
    if request is None:
        return login.Outcome(session_id=session.id, auth_time=session.auth_time)
    outcome = login.resume(request=request, session_id=session.id, just_signed_in=True)
    assert outcome is not None  # a session just made is live
    return outcome


def after_verification(
    *, verified: Verified, ip: str | None, user_agent: str | None
) -> Continued | None:
    """Sign in the user of a sign-up's verification link (None for a plain verification
    link); the outcome is None when the user must sign in with the form (blocked since,
    or given a second factor meanwhile)."""
    if not verified.sign_in:
        return None
    db.session.flush()  # the app's look-up crosses tenants: nothing of this one pending
    request = _request(verified.continue_with)
    user = verified.user
    if user.blocked or flow.needs_second_factor(user) or _mfa_enrolment_due(user, request):
        return Continued(request, None)
    return Continued(
        request, _sign_in(user, request, method=SIGNUP_METHOD, ip=ip, user_agent=user_agent)
    )


def reset_password(
    *, token: str, password: str, ip: str | None, user_agent: str | None
) -> Continued:
    """Set a new password with a hosted reset link's token (the policy as on every hosted
    page, every session ended) and sign the user in under a new session; with a second
    factor, the pending step when the reset began from an app, else no sign-in."""
    done = reset_service.confirm_reset(token=token, password=password, ip=ip, chosen_on_page=True)
    request = _request(done.continue_with)
    user = done.user
    if user.blocked or _mfa_enrolment_due(user, request):
        return Continued(request, None)
    if flow.needs_second_factor(user):
        if request is None:
            return Continued(None, None)
        generation = flow.await_second_factor(user=user, password=password, ip=ip)
        pending = login.Outcome(
            pending_user=user.id,
            pending_generation=generation,
            pending_kinds=tuple(mfa_service.second_factor_kinds(user)),
        )
        return Continued(request, pending)
    return Continued(
        request, _sign_in(user, request, method=RESET_METHOD, ip=ip, user_agent=user_agent)
    )
