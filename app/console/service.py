"""Who may use the admin console and how far: grant, revoke and list console members, the
role check every console page makes (`may`), the tenant's console OIDC client, and the
console's sign-in (the code exchange the token endpoint makes, then the admission rules).

Every function runs in the tenant's scope, entered by the edge (the platform routes, the
console pages, the CLI)."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from sqlalchemy import select

from app.applications import grants as grant_service
from app.applications import login as login_service
from app.applications import service as application_service
from app.applications.models import PUBLIC, Application
from app.audit import service as audit_service
from app.console.models import ConsoleClient, ConsoleMember
from app.core import security
from app.core.db import db, independent_write, lock_until_commit, utcnow
from app.core.errors import Forbidden, Invalid, NotFound
from app.core.tenancy import Principal
from app.tenants import service as tenant_service
from app.tokens import service as token_service
from app.tokens import signing
from app.users import service as user_service

ADMIN, SUPPORT, VIEWER = "console:admin", "console:support", "console:viewer"
ROLES = (ADMIN, SUPPORT, VIEWER)
# What each role may do: "read" every page, "act" on users (block, reset MFA, sign out),
# "admin" everything else (apps, keys, webhooks, connections, settings, members).
_ALLOWED = {
    ADMIN: frozenset({"read", "act", "admin"}),
    SUPPORT: frozenset({"read", "act"}),
    VIEWER: frozenset({"read"}),
}
ACTIONS = ("read", "act", "admin")
CONSOLE_APP_NAME = "Gatehouse console"
# The console asks for who the user is, nothing that acts for the user.
CONSOLE_SCOPES = ["openid", "profile", "email"]


def may(role: str | None, action: str) -> bool:
    """Whether `role` may take `action` ("read", "act" or "admin"); no role may nothing."""
    if action not in ACTIONS:
        raise ValueError(f"unknown console action {action!r}")
    return action in _ALLOWED.get(role or "", frozenset())


def _member(user_id: str) -> ConsoleMember | None:
    return db.session.scalar(select(ConsoleMember).where(ConsoleMember.user_id == user_id))


def _check_role(role: str) -> str:
    if role not in ROLES:
        message = f"role must be one of {', '.join(ROLES)}"
        raise Invalid(message, code="invalid_console_role", fields={"role": [message]})
    return role


def grant_member(*, tenant_id: str, user_id: str, role: str, actor: Principal) -> ConsoleMember:
    """Give the user `role` in the console (a member's role changes), audited as
    `console.member_granted`; the tenant's console client is made if it is missing.
    Invalid `invalid_console_role`, NotFound `user_not_found` (also another tenant's)."""
    _check_role(role)
    tenant_service.get_tenant(tenant_id)
    user = user_service.get_user(user_id)
    ensure_console_application(tenant_id=tenant_id)
    # Two grants of one user at once: the second waits and changes the first's row.
    lock_until_commit(f"console-member:{tenant_id}:{user.id}")
    member = _member(user.id)
    if member is None:
        member = ConsoleMember(
            id=security.random_hex(16), tenant_id=tenant_id, user_id=user.id, created_at=utcnow()
        )
        db.session.add(member)
    member.role = role
    member.granted_by = actor.label
    db.session.flush()
    _audit("console.member_granted", member, actor)
    return member


def _audit(action: str, member: ConsoleMember, actor: Principal) -> None:
    audit_service.record(
        action=action,
        actor=actor.label,
        user_id=member.user_id,
        target=member.user_id,
        ip=actor.ip,
        data={"role": member.role},
    )


def grant_member_by_email(
    *, tenant_id: str, email: str, role: str, actor: Principal
) -> ConsoleMember:
    """grant_member for the one user with this address. NotFound `user_not_found` when
    none has it, Invalid `ambiguous_email` when several do (grant by user id then)."""
    _check_role(role)
    users = user_service.find_by_email(email.strip())
    if not users:
        raise NotFound("No user of this tenant has this email address", code="user_not_found")
    if len(users) > 1:
        raise Invalid(
            "Several users have this email address: grant the role by user id "
            "(POST /tenants/{id}/console-members)",
            code="ambiguous_email",
            fields={"email": ["several users have this address"]},
        )
    return grant_member(tenant_id=tenant_id, user_id=users[0].id, role=role, actor=actor)


def get_member(*, tenant_id: str, user_id: str) -> ConsoleMember:
    """The console member `user_id`; NotFound `console_member_not_found` (also for another
    tenant's)."""
    member = _member(user_id)
    if member is None:
        raise NotFound("Console member not found", code="console_member_not_found")
    return member


def revoke_member(*, tenant_id: str, user_id: str, actor: Principal) -> None:
    """Take the user's console role away (effective on the member's next request),
    audited as `console.member_revoked`; NotFound `console_member_not_found`."""
    member = get_member(tenant_id=tenant_id, user_id=user_id)
    _audit("console.member_revoked", member, actor)
    db.session.delete(member)
    db.session.flush()


def list_members(*, tenant_id: str) -> list[ConsoleMember]:
    """The tenant's console members, oldest first (each with its user's email)."""
    tenant_service.get_tenant(tenant_id)
    query = select(ConsoleMember).order_by(ConsoleMember.created_at, ConsoleMember.id)
    return list(db.session.scalars(query))


def role_of(*, tenant_id: str, user_id: str) -> str | None:
    """The user's console role, or None."""
    member = _member(user_id)
    return member.role if member is not None else None


# --- the console's own OIDC client --------------------------------------------------------


def callback_uri() -> str:
    """Where the hosted login sends the console's code: `{ISSUER}/console/callback`."""
    return str(current_app.config["ISSUER"]).rstrip("/") + "/console/callback"


def ensure_console_application(*, tenant_id: str) -> Application:
    """The tenant's console client (public, PKCE, OIDC scopes only, redirect URI
    callback_uri()), registered the first time it is needed; its redirect URI follows
    ISSUER if that changed. NotFound `tenant_not_found`."""
    tenant_service.get_tenant(tenant_id)
    lock_until_commit(f"console-client:{tenant_id}")
    row = db.session.scalar(select(ConsoleClient))
    if row is not None:
        application = application_service.get_application(
            tenant_id=tenant_id, client_id=row.client_id
        )
        if application.redirect_uris != [callback_uri()]:
            application = application_service.update_application(
                tenant_id=tenant_id,
                client_id=row.client_id,
                fields={"redirect_uris": [callback_uri()]},
            )
        return application
    application = application_service.create_application(
        tenant_id=tenant_id,
        name=CONSOLE_APP_NAME,
        type=PUBLIC,
        redirect_uris=[callback_uri()],
        allowed_scopes=CONSOLE_SCOPES,
    ).application
    db.session.add(ConsoleClient(client_id=application.id, tenant_id=tenant_id))
    db.session.flush()
    return application


# --- signing in -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsoleSignIn:
    """A finished console sign-in: the user and the hosted sign-in session it rides on."""

    user_id: str
    session_id: str
    role: str


@dataclass(frozen=True)
class ConsoleUser:
    """The member a console request serves, read fresh for that request."""

    tenant_id: str
    session_id: str
    user_id: str
    email: str | None
    role: str


def _multi_factor(amr: object) -> bool:
    return isinstance(amr, list | tuple) and bool(
        login_service.AMR_MULTI_FACTOR.intersection(str(value) for value in amr)
    )


def _admit(*, tenant_id: str, user_id: str, amr: object) -> str:
    """The member's role, when the console admits this sign-in; Forbidden
    `console_no_role` without one, `console_mfa_required` when the tenant asks for a
    second factor the sign-in did not give."""
    role = role_of(tenant_id=tenant_id, user_id=user_id)
    if role is None:
        raise Forbidden("This account has no console role", code="console_no_role")
    if tenant_service.get_tenant(tenant_id).console_require_mfa and not _multi_factor(amr):
        raise Forbidden(
            "The console needs a sign-in with two-step verification", code="console_mfa_required"
        )
    return role


def complete_sign_in(
    *,
    tenant_id: str,
    code: str,
    code_verifier: str,
    nonce: str,
    ip: str | None,
    user_agent: str | None,
) -> ConsoleSignIn:
    """Exchange the console client's code as the token endpoint does (same grant code),
    check its ID token (audience, nonce), and admit the user (see _admit). The
    application session the exchange starts is ended at once: the console keeps none of
    its tokens, only the hosted sign-in session it came from. InvalidGrant, Forbidden."""
    client = ensure_console_application(tenant_id=tenant_id)
    tokens = grant_service.authorization_code_grant(
        client=client,
        code=code,
        redirect_uri=callback_uri(),
        code_verifier=code_verifier,
        ip=ip,
        user_agent=user_agent,
    )
    # The console's client always asks for openid; an answer without an ID token (a
    # changed grant, a code issued to another client) is not a sign-in for this console.
    claims = signing.verify_id_token(tokens.id_token) if tokens.id_token else {}
    if claims.get("aud") != client.id or not security.constant_time_equals(
        str(claims.get("nonce", "")), nonce
    ):
        raise Forbidden(
            "The sign-in answer was not for this console", code="console_nonce_mismatch"
        )
    app_session = str(claims["sid"])
    parent = login_service.sign_in_session_of(session_id=app_session)
    # Ended in a transaction of its own: also when the user is not admitted below.
    with independent_write() as ending:
        token_service.revoke_session(app_session, into=ending)
    if parent is None:
        raise Forbidden("The sign-in has ended; sign in again", code="console_signin_ended")
    user_id = str(claims["sub"])
    role = _admit(tenant_id=tenant_id, user_id=user_id, amr=claims.get("amr"))
    return ConsoleSignIn(user_id=user_id, session_id=parent, role=role)


def current_user(*, tenant_id: str, session_id: str, user_id: str) -> ConsoleUser | None:
    """The member of a console session, re-checked on every request: None when the hosted
    sign-in session ended (signed out, expired, revoked, user blocked) or is another
    user's; Forbidden (see _admit) when the role was revoked or the tenant now asks for a
    second factor this sign-in lacks."""
    found = login_service.live_session(tenant_id=tenant_id, session_id=session_id)
    if found is None or found[0].id != user_id:
        return None
    user, session = found
    role = _admit(tenant_id=tenant_id, user_id=user.id, amr=session.amr or [])
    return ConsoleUser(
        tenant_id=tenant_id, session_id=session.id, user_id=user.id, email=user.email, role=role
    )


def sign_out(*, tenant_id: str, session_id: str) -> None:
    """End the hosted sign-in session under the console (as the hosted logout does)."""
    login_service.sign_out(tenant_id=tenant_id, session_id=session_id)
