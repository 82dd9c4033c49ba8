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
from app.credentials import mfa as mfa_service
from app.credentials import passkeys as passkey_service
from app.federation import service as federation_service
from app.federation.service import PendingLink
from app.signin import flow
from app.tenants import service as tenant_service
from app.tokens import service as token_service
from app.tokens.models import AuthSession
from app.users import service as user_service
from app.users.models import User

LOGIN_METHOD = "login_page"
# OIDC `amr` values (RFC 8176) of the sign-ins the page completes.
AMR_PASSWORD = ["pwd"]
# A sign-in session with one of these satisfies an app or tenant that requires MFA (a
# passkey with user verification is itself multi-factor).
AMR_MULTI_FACTOR = frozenset({"mfa", "hwk", "swk"})
# A sign-in through another provider (app.federation): RFC 8176 registers no value for
# "another identity provider vouched", and the upstream's own amr is not ours to repeat;
# "fed" is the value Microsoft Entra ID uses for a federated sign-in. With the second
# factor after it: "fed" + "otp"/"mfa", as "pwd" + "otp"/"mfa" after a password.
AMR_FEDERATED = ["fed"]
FEDERATED_METHOD = "federated:"


def _first_factor(via: str | None) -> tuple[list[str], str]:
    """The amr and audit method of a sign-in's first factor: the password on the login
    page, or the connection `via` (a federated sign-in awaiting its second factor)."""
    if via:
        return list(AMR_FEDERATED), f"{FEDERATED_METHOD}{via}"
    return list(AMR_PASSWORD), LOGIN_METHOD


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
    # The second factors the user may give at the pending step ("totp", "passkey").
    pending_kinds: tuple[str, ...] = ()
    # MFA is required and the user has none: a TOTP enrolment begun for the pending user.
    enrolment: mfa_service.TotpStart | None = None
    # Shown once before going on (`resume(just_signed_in=True)` gives the location).
    recovery_codes: tuple[str, ...] = ()
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


def _answer(request: AuthorizationRequest | None, user: User, session: AuthSession) -> Outcome:
    if request is None:  # a sign-in for the account page: no app to answer
        return Outcome(session_id=session.id, auth_time=session.auth_time)
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
    if mfa_required(request) and not AMR_MULTI_FACTOR.intersection(found[1].amr or ()):
        return None  # signed in with the password alone: this app needs a second factor
    if request.login_hint and not _hint_names(request.login_hint, found[0]):
        return None  # the app asks for another user: the form, prefilled
    found[1].last_seen_at = utcnow()  # the account page's "last seen"
    return _answer(request, *found)


def mfa_required(request: AuthorizationRequest) -> bool:
    """Whether a sign-in for this request needs a second factor: the tenant's or the
    application's `mfa_required`."""
    application = authorization.application_of(request)
    return bool(
        application.mfa_required or tenant_service.get_tenant(request.tenant_id).mfa_required
    )


def _hint_names(hint: str, user: User) -> bool:
    """Whether a login_hint names `user` (its id, username or address)."""
    folded = hint.strip().casefold()
    return folded in {
        user.id.casefold(),
        (user.username_normalized or "").casefold(),
        (user.email_normalized or "").casefold(),
    } - {""}


def _complete(
    request: AuthorizationRequest | None,
    user: User,
    ip: str | None,
    password: str | None = None,
    *,
    amr: list[str],
    user_agent: str | None = None,
    recovery_codes: list[str] | None = None,
    method: str = LOGIN_METHOD,
    offer_passkey: bool = False,
    link: PendingLink | None = None,
) -> Outcome:
    if link is not None:
        # Every factor is checked: the provider's identity joins the account now, in the
        # sign-in's transaction (a link that fails leaves the user signed out).
        federation_service.link(pending=link, user=user, ip=ip)
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
    if signed_in.second_factor_failures or recovery_codes:
        # The user is told first; the code is issued when the user goes on (it lives
        # a minute, reading the page may take longer).
        return Outcome(
            session_id=session.id,
            auth_time=session.auth_time,
            second_factor_failures=signed_in.second_factor_failures,
            recovery_codes=tuple(recovery_codes or ()),
        )
    if offer_passkey:
        return Outcome(session_id=session.id, auth_time=session.auth_time, offer_passkey=True)
    return _answer(request, user, session)


def _tenant_of(request: AuthorizationRequest | None, tenant_id: str | None) -> str:
    """The tenant of a step: the request's (its application must still exist), else the
    one given (a sign-in for the account page, which answers no app)."""
    if request is not None:
        authorization.application_of(request)
        return request.tenant_id
    if tenant_id is None:
        raise ValueError("a sign-in without an authorization request needs its tenant")
    return tenant_id


def password_step(
    *,
    request: AuthorizationRequest | None,
    login: str,
    password: str,
    ip: str | None,
    tenant_id: str | None = None,
    user_agent: str | None = None,
    offer_passkey: bool = False,
    by_email: bool = False,
    link: PendingLink | None = None,
) -> Outcome:
    """Check the password of the user a login names (a username, or an email when no user
    has that username) through the sign-in flow: its limits, and InvalidGrant, audited,
    with the same answer and cost whether or not the user exists. Then either the code,
    or the second factor still to come (bound to the user's session generation).

    When the tenant or the application requires MFA: a user with a second factor (TOTP
    or passkey) gives it; a user with none enrols TOTP in place (`enrolment`).
    Without a `request` (the account page's own sign-in, in `tenant_id`) a completed
    sign-in only starts the browser sign-in session: no code; the user's own second
    factors are asked for, but none is enrolled in place (the account page enrols one),
    and such a session does not satisfy an app that requires MFA (`resume`).
    `offer_passkey` (the browser can make one here): a user without a passkey is signed
    in but offered one first (`Outcome.offer_passkey`, no code yet). `by_email`: the login
    is an address only (the sign-in that links a provider to the account with it), never
    tried as a username. `link`: the upstream identity to link once signed in (now, or
    after the second factor: the caller carries it to that step)."""
    tenant_id = _tenant_of(request, tenant_id)
    required = request is not None and mfa_required(request)
    user = flow.check_password(
        tenant_id=tenant_id,
        ip=ip,
        username=None if by_email else login,
        email=login if by_email else None,
        password=password,
    )
    needs_otp = flow.needs_second_factor(user)
    kinds = mfa_service.second_factor_kinds(user) if needs_otp or required else []
    if needs_otp and mfa_service.TOTP not in kinds:
        kinds.insert(0, mfa_service.TOTP)  # a started TOTP the user must use (SPEC §8)
    if needs_otp or (required and kinds):
        generation = flow.await_second_factor(user=user, password=password, ip=ip)
        return Outcome(
            pending_user=user.id, pending_generation=generation, pending_kinds=tuple(kinds)
        )
    if required:
        generation = flow.await_second_factor(user=user, password=password, ip=ip)
        return Outcome(
            pending_user=user.id,
            pending_generation=generation,
            enrolment=mfa_service.begin_sign_in_enrolment(user),
        )
    offer = offer_passkey and not passkey_service.has_passkeys(user)
    return _complete(
        request,
        user,
        ip,
        password,
        amr=AMR_PASSWORD,
        user_agent=user_agent,
        offer_passkey=offer,
        link=link,
    )


def federated_step(
    *,
    request: AuthorizationRequest,
    user: User,
    connection_name: str,
    ip: str | None,
    user_agent: str | None = None,
) -> Outcome:
    """Sign in a user an upstream provider vouched for (app.federation found, linked or
    created them): audited `user.signed_in` with method `federated:<connection>`. The
    provider is the first factor only: a user with a second factor enrolled gives it
    (the same pending step as after a password), and an app or tenant that requires MFA
    enrols one in place, as password_step does."""
    authorization.application_of(request)
    if user.blocked:
        raise InvalidGrant("This account is blocked", code="user_blocked")
    required = mfa_required(request)
    needs_otp = flow.needs_second_factor(user)
    kinds = mfa_service.second_factor_kinds(user) if needs_otp or required else []
    if needs_otp and mfa_service.TOTP not in kinds:
        kinds.insert(0, mfa_service.TOTP)
    generation = user.session_generation or 0
    if needs_otp or (required and kinds):
        return Outcome(
            pending_user=user.id, pending_generation=generation, pending_kinds=tuple(kinds)
        )
    if required:
        return Outcome(
            pending_user=user.id,
            pending_generation=generation,
            enrolment=mfa_service.begin_sign_in_enrolment(user),
        )
    return _complete(
        request,
        user,
        ip,
        amr=list(AMR_FEDERATED),
        user_agent=user_agent,
        method=f"{FEDERATED_METHOD}{connection_name}",
    )


def second_factor_step(
    *,
    request: AuthorizationRequest | None,
    user_id: str,
    generation: int,
    code: str,
    ip: str | None,
    tenant_id: str | None = None,
    user_agent: str | None = None,
    via: str | None = None,
    link: PendingLink | None = None,
) -> Outcome:
    """Check the one-time code of a user whose password was just checked, through the
    sign-in flow (the account's budget shared with the password grant's `otp`, each code
    once, failures audited). InvalidGrant for a wrong or reused code; `signin_restart`
    for a user blocked or deleted meanwhile, or whose sessions were revoked (password
    change or reset); RateLimited while the account's codes are locked. Without a
    `request`, as password_step. `via`: the first factor was connection `via`'s provider
    (federated_step), not a password: the amr and the audit method say so. `link`: the
    upstream identity the sign-in links (password_step's)."""
    tenant_id = _tenant_of(request, tenant_id)
    user = flow.pending_user(tenant_id=tenant_id, ip=ip, user_id=user_id, generation=generation)
    kind = flow.check_second_factor(tenant_id=tenant_id, ip=ip, user=user, code=code)
    first, method = _first_factor(via)
    # A recovery code has no RFC 8176 value: two factors were shown (the first, and a
    # code the user kept), none of them an OTP device.
    amr = [*first, "otp", "mfa"] if kind == flow.OTP else [*first, "mfa"]
    return _complete(request, user, ip, amr=amr, user_agent=user_agent, method=method, link=link)


def enrolment_in_progress(*, user_id: str) -> mfa_service.TotpStart | None:
    """The pending TOTP enrolment of a sign-in's user (to show its QR code again)."""
    user = user_service.find_user(user_id)
    return mfa_service.pending_totp(user) if user is not None else None


def enrolment_step(
    *,
    request: AuthorizationRequest,
    user_id: str,
    generation: int,
    code: str,
    ip: str | None,
    via: str | None = None,
    link: PendingLink | None = None,
) -> Outcome:
    """Confirm the TOTP enrolment begun at this sign-in (MFA required, the user had no
    second factor) with a code of the new authenticator (audited `mfa.enrolled`), then
    sign in with amr pwd+otp; the new recovery codes come back to be shown once before
    the browser goes on. Invalid `mfa_code_invalid` for a wrong code (the same limits
    per IP and account as the sign-in), `signin_restart` as for the second factor.
    `via` and `link`: as second_factor_step's (amr fed+otp+mfa, method federated:<via>)."""
    authorization.application_of(request)
    user = flow.pending_user(
        tenant_id=request.tenant_id, ip=ip, user_id=user_id, generation=generation
    )
    codes = mfa_service.confirm_sign_in_enrolment(user=user, code=code, ip=ip)
    first, method = _first_factor(via)
    return _complete(
        request,
        user,
        ip,
        amr=[*first, "otp", "mfa"],
        recovery_codes=codes,
        method=method,
        link=link,
    )


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
    via: str | None = None,
    link: PendingLink | None = None,
) -> Outcome:
    """A passkey as the second factor of a user whose password was just checked (same
    budget as the codes); then the code, with amr pwd + hwk/swk + mfa (fed instead of
    pwd, and method federated:<via>, after a sign-in through connection `via`; `link`:
    as second_factor_step's)."""
    authorization.application_of(request)
    user = flow.pending_user(
        tenant_id=request.tenant_id, ip=ip, user_id=user_id, generation=generation
    )
    assertion = flow.check_second_factor_passkey(
        tenant_id=request.tenant_id, ip=ip, user=user, credential=credential, challenge=challenge
    )
    first, method = _first_factor(via)
    return _complete(request, user, ip, amr=[*first, *assertion.amr], method=method, link=link)


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


def sign_in_session_of(*, session_id: str) -> str | None:
    """The browser sign-in session an application's session was issued through (by an
    authorization code), when that one is still live; else None."""
    session = db.session.get(AuthSession, session_id)
    if session is None or session.parent_id is None:
        return None
    return session.parent_id if _live_session(session.parent_id) is not None else None
