"""The hosted login page's sign-in, step by step: resume a browser sign-in session, check
the password, then the second factor (both through the sign-in flow, app.signin.flow, as
the password grant does: same limits, budget and audit), then answer the authorization
request with a code.

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
from app.credentials import passkeys as passkey_service
from app.signin import flow
from app.tenants import service as tenant_service
from app.tokens import service as token_service
from app.tokens.models import AuthSession
from app.users import service as user_service
from app.users.models import User

LOGIN_METHOD = "login_page"
# OIDC `amr` values (RFC 8176) of the sign-ins the page completes.
AMR_PASSWORD = ["pwd"]
AMR_PASSWORD_OTP = ["pwd", "otp", "mfa"]


@dataclass(frozen=True)
class Outcome:
    """Where a step leaves the browser: at the client with a code (`location`, and the
    sign-in session to keep in a cookie); signed in but first told how many codes failed
    since the previous sign-in (`session_id` and `second_factor_failures`; no location
    yet, `resume(just_signed_in=True)` gives it); or at the second-factor form
    (`pending_user`, bound to the user's session generation `pending_generation`)."""

    location: str | None = None
    session_id: str | None = None
    auth_time: datetime | None = None
    pending_user: str | None = None
    pending_generation: int = 0
    second_factor_failures: int = 0
    # Signed in (`session_id`), but first offered to add a passkey: the code is issued
    # when the user goes on (resume(just_signed_in=True)).
    offer_passkey: bool = False


def _live_session(session_id: str) -> tuple[User, AuthSession] | None:
    session = db.session.get(AuthSession, session_id)
    if session is None or session.client_id is not None or session.expires_at <= utcnow():
        return None
    user = user_service.find_user(session.user_id)
    if user is None or user.blocked or not token_service.session_is_live(user, session):
        return None
    return user, session


def _answer(request: AuthorizationRequest, user: User, session: AuthSession) -> Outcome:
    code = authorization.issue_code(
        request=request,
        user=user,
        auth_time=session.auth_time,
        amr=session.amr,
        login_session_id=session.id,
    )
    return Outcome(
        location=authorization.success_location(request, code),
        session_id=session.id,
        auth_time=session.auth_time,
    )


def resume(
    *, request: AuthorizationRequest, session_id: str | None, just_signed_in: bool = False
) -> Outcome | None:
    """Answer the request at once when the browser's sign-in session is live, recent
    enough (max_age, prompt=login) and the user the login_hint names, if any; None when
    the form must be shown. `just_signed_in`: the session was made by this request's
    sign-in (the user read the notice of failed codes first), so only its end matters:
    InvalidGrant `signin_restart`."""
    if session_id is None:
        return None
    found = _live_session(session_id)
    if just_signed_in:
        if found is None:
            raise InvalidGrant("Sign in again.", code="signin_restart")
        return _answer(request, *found)
    if found is None or not authorization.session_satisfies(request, found[1].auth_time):
        return None
    if request.login_hint and not _hint_names(request.login_hint, found[0]):
        return None  # the app asks for another user: the form, prefilled
    return _answer(request, *found)


def _hint_names(hint: str, user: User) -> bool:
    """Whether a login_hint names `user` (its id, username or address)."""
    folded = hint.strip().casefold()
    return folded in {
        user.id.casefold(),
        (user.username_normalized or "").casefold(),
        (user.email_normalized or "").casefold(),
    } - {""}


def _complete(
    request: AuthorizationRequest,
    user: User,
    ip: str | None,
    password: str | None = None,
    *,
    amr: list[str],
    user_agent: str | None = None,
    method: str = LOGIN_METHOD,
    offer_passkey: bool = False,
) -> Outcome:
    signed_in = flow.finish(user=user, ip=ip, method=method, password=password)
    now = utcnow()
    session = token_service.start_session(
        user=user,
        tenant=tenant_service.get_tenant(user.tenant_id),
        now=now,
        expires_at=now + timedelta(seconds=current_app.config["LOGIN_SESSION_TTL"]),
        amr=amr,
        ip=ip,
        user_agent=user_agent,
    )
    db.session.flush()
    if signed_in.second_factor_failures:
        # The user is told first; the code is issued when the user goes on (it lives
        # a minute, reading the page may take longer).
        return Outcome(
            session_id=session.id,
            auth_time=session.auth_time,
            second_factor_failures=signed_in.second_factor_failures,
        )
    if offer_passkey:
        return Outcome(session_id=session.id, auth_time=session.auth_time, offer_passkey=True)
    return _answer(request, user, session)


def password_step(
    *,
    request: AuthorizationRequest,
    login: str,
    password: str,
    ip: str | None,
    offer_passkey: bool = False,
) -> Outcome:
    """Check the password of the user a login names (a username, or an email when no user
    has that username) through the sign-in flow: its limits, and InvalidGrant, audited,
    with the same answer and cost whether or not the user exists. Then either the code,
    or the second factor still to come (bound to the user's session generation).
    `offer_passkey` (the browser can make one here): a user without a passkey is signed
    in but offered one first (`Outcome.offer_passkey`, no code yet)."""
    authorization.application_of(request)
    user = flow.check_password(
        tenant_id=request.tenant_id, ip=ip, username=login, email=None, password=password
    )
    if flow.needs_second_factor(user):
        generation = flow.await_second_factor(user=user, password=password, ip=ip)
        return Outcome(pending_user=user.id, pending_generation=generation)
    offer = offer_passkey and not passkey_service.has_passkeys(user)
    return _complete(request, user, ip, password, amr=AMR_PASSWORD, offer_passkey=offer)


def second_factor_step(
    *, request: AuthorizationRequest, user_id: str, generation: int, code: str, ip: str | None
) -> Outcome:
    """Check the one-time code of a user whose password was just checked, through the
    sign-in flow (the account's budget shared with the password grant's `otp`, each code
    once, failures audited). InvalidGrant for a wrong or reused code; `signin_restart`
    for a user blocked or deleted meanwhile, or whose sessions were revoked (password
    change or reset); RateLimited while the account's codes are locked."""
    authorization.application_of(request)
    user = flow.pending_user(
        tenant_id=request.tenant_id, ip=ip, user_id=user_id, generation=generation
    )
    flow.check_second_factor(tenant_id=request.tenant_id, ip=ip, user=user, code=code)
    return _complete(request, user, ip, amr=AMR_PASSWORD_OTP)


def passkey_step(
    *, request: AuthorizationRequest, credential: str, challenge: str, ip: str | None
) -> Outcome:
    """Sign in with a passkey (no password) through the sign-in flow: its limits, audit
    and PasskeyRefused (InvalidGrant); then the code, with amr hwk/swk + mfa."""
    authorization.application_of(request)
    assertion = flow.check_passkey(
        tenant_id=request.tenant_id, ip=ip, credential=credential, challenge=challenge
    )
    return _complete(request, assertion.user, ip, amr=assertion.amr, method=flow.PASSKEY_METHOD)


def second_factor_passkey_options(
    *, request: AuthorizationRequest, user_id: str, generation: int, ip: str | None
) -> passkey_service.Ceremony | None:
    """Options for a passkey as the second factor of a pending sign-in (the user's own
    passkeys only), or None when the user has none."""
    user = flow.pending_user(
        tenant_id=request.tenant_id, ip=ip, user_id=user_id, generation=generation
    )
    if not passkey_service.has_passkeys(user):
        return None
    return passkey_service.authentication_options(user=user)


def second_factor_passkey_step(
    *,
    request: AuthorizationRequest,
    user_id: str,
    generation: int,
    credential: str,
    challenge: str,
    ip: str | None,
) -> Outcome:
    """A passkey as the second factor of a user whose password was just checked (same
    budget as the codes); then the code, with amr pwd + hwk/swk + mfa."""
    authorization.application_of(request)
    user = flow.pending_user(
        tenant_id=request.tenant_id, ip=ip, user_id=user_id, generation=generation
    )
    assertion = flow.check_second_factor_passkey(
        tenant_id=request.tenant_id, ip=ip, user=user, credential=credential, challenge=challenge
    )
    return _complete(request, user, ip, amr=["pwd", *assertion.amr])


def sign_out(*, tenant_id: str, session_id: str) -> str | None:
    """End a browser sign-in session; the id of its user (None when it was not live)."""
    found = _live_session(session_id)
    token_service.revoke_session(session_id)
    return found[0].id if found else None


def live_session(*, tenant_id: str, session_id: str) -> tuple[User, AuthSession] | None:
    """The user and row of a live browser sign-in session (the account page's), or None."""
    return _live_session(session_id)


def signed_in_user(*, tenant_id: str, session_id: str) -> str | None:
    """The user id of a live browser sign-in session, or None."""
    found = _live_session(session_id)
    return found[0].id if found else None
