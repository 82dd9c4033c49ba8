"""Password reset by email: request (same answer whether or not a user matched) and
confirm (single use, one hour, bound to the password hash at request time).

Both run in the tenant the edge entered: the request names it (a header), a reset token
carries it (`token_tenant` reads it without trusting it, so the edge can enter that scope;
the confirmation then checks the token fully)."""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from sqlalchemy import select

from app.audit import service as audit_service
from app.core import i18n, security
from app.core.db import db, utcnow
from app.core.errors import Invalid
from app.core.jobs import enqueue_after_commit
from app.core.sweeps import Cleanup
from app.core.tenancy import current_tenant_id
from app.credentials import mfa as mfa_service
from app.credentials.models import PasswordResetRequest
from app.mail import service as mail_service
from app.mail import tasks as mail_tasks
from app.tenants import service as tenant_service
from app.tokens import service as token_service
from app.users import passwords
from app.users import service as user_service
from app.users.models import User

PURPOSE = "password-reset"
MAX_USERS_PER_EMAIL = 10


def _fingerprint(user: User) -> str:
    # A new password changes the hash, so every outstanding link dies with it.
    return security.sha256_hex(user.password_hash or "-")[:16]


def _matching_users(username: str | None, email: str | None) -> list[User]:
    if username:
        user = user_service.find_by_username(username)
        return [user] if user is not None and user.email else []
    if email:
        return user_service.find_by_email(email)[:MAX_USERS_PER_EMAIL]
    return []


# The names mfa.second_factors gives, in the mail's language (add new factors here).
FACTOR_NAMES = {"an authenticator app": lazy_gettext("an authenticator app")}


def _factors_note(factors: list[str]) -> str:
    """What a reset leaves in place: the second factors still needed to sign in."""
    if not factors:
        return ""
    return _(
        "A new password does not remove your second factor: you will still sign in with "
        "%(factors)s.",
        factors=_(" and ").join(str(FACTOR_NAMES.get(f, f)) for f in factors),
    )


def _mail_bodies(link: str, factors: list[str]) -> tuple[str, str]:
    """The mail's text and HTML, in the request's language (app.core.i18n)."""
    i18n.reselect()
    note = _factors_note(factors)
    asked = _("Someone asked to reset the password of your account.")
    ignore = _("If it was not you, ignore this mail; your password stays as it is.")
    text = (
        f"{asked}\n\n"
        + _("Open this link within an hour to choose a new one:")
        + f"\n{link}\n\n"
        + (f"{note}\n\n" if note else "")
        + f"{ignore}\n"
    )
    safe = html.escape(link, quote=True)
    button = _("Choose a new password")
    markup = (
        f"<p>{html.escape(asked)}</p>"
        + f'<p><a href="{safe}">{html.escape(button)}</a> '
        + html.escape(_("(the link works for an hour)."))
        + "</p>"
        + (f"<p>{html.escape(note)}</p>" if note else "")
        + f"<p>{html.escape(ignore)}</p>"
    )
    return text, markup


def _link_base(tenant_id: str, host: str | None) -> str:
    """Where the mailed link points: the app's own page on `host` (which must be in the
    tenant's password_reset_hosts), or the hosted reset page of the issuer (host None)."""
    if host is None:
        return current_app.config["ISSUER"].rstrip("/")
    tenant = tenant_service.get_tenant(tenant_id)
    if host.lower() not in {h.lower() for h in tenant.password_reset_hosts or []}:
        raise Invalid(
            f"host {host!r} is not in the tenant's password_reset_hosts setting "
            "(PATCH /tenants/{id} with settings.password_reset_hosts to allow it)",
            code="reset_host_not_allowed",
        )
    return f"https://{host}"


def request_reset(
    *,
    tenant_id: str,
    username: str | None,
    email: str | None,
    host: str | None,
    ip: str | None,
    continue_with: dict[str, Any] | None = None,
) -> None:
    """Mail a reset link to the matching user(s) of `tenant_id` (the tenant in scope), if
    any: to the app's page on `host`, or (host None) to the hosted reset page, whose link
    may carry the authorization request the reset began from (`continue_with`). Invalid
    `reset_host_not_allowed` for a host outside the tenant's allow-list,
    `mail_not_configured` when mail is not configured. Answers the same whether or not a
    user matched."""
    base = _link_base(tenant_id, host)
    sender = mail_service.mail_settings(tenant_id).sender
    users = _matching_users(username, email)
    if not users:
        # Written for a miss too: the log shows probing, and both paths do a write.
        audit_service.record(
            action="password_reset.requested",
            actor="anonymous",
            target=(username or email or "")[:255],
            ip=ip,
            data={"matched": False},
        )
    for user in users:
        _mail_link(tenant_id, user, base, sender, "anonymous", ip, continue_with)
    db.session.flush()


def send_reset(*, tenant_id: str, user: User, actor: str, ip: str | None) -> None:
    """Mail `user` a link to the hosted reset page, as request_reset does for a matching
    user, at an administrator's request (audited `password_reset.requested` with `actor`).
    Invalid `user_has_no_email` for a user without an address, `mail_not_configured`."""
    if not user.email:
        raise Invalid("This user has no email address to mail", code="user_has_no_email")
    base, sender = _link_base(tenant_id, None), mail_service.mail_settings(tenant_id).sender
    _mail_link(tenant_id, user, base, sender, actor, ip)
    db.session.flush()


def _mail_link(
    tenant_id: str,
    user: User,
    base: str,
    sender: str,
    actor: str,
    ip: str | None,
    continue_with: dict[str, Any] | None = None,
) -> None:
    """One reset request of `user` and the mail with its link (sent after the commit)."""
    now = utcnow()
    reset = PasswordResetRequest(
        id=security.random_hex(16),
        tenant_id=tenant_id,
        user_id=user.id,
        created_at=now,
        expires_at=now + timedelta(seconds=current_app.config["PASSWORD_RESET_TTL"]),
    )
    db.session.add(reset)
    claims: dict[str, Any] = {
        "tid": tenant_id,
        "uid": user.id,
        "rid": reset.id,
        "fp": _fingerprint(user),
    }
    if continue_with is not None:
        claims["az"] = continue_with
    token = security.signed_dumps(current_app.config["SECRET_KEY"], PURPOSE, claims)
    text, markup = _mail_bodies(
        f"{base}/reset-password?token={quote(token)}", mfa_service.second_factors(user)
    )
    delivery = mail_service.create_delivery(
        tenant_id=tenant_id,
        kind="password_reset",
        to=user.email or "",
        sender=sender,
        subject=_("Reset your password"),
        text=text,
        html=markup,
    )
    audit_service.record(
        action="password_reset.requested",
        actor=actor,
        user_id=user.id,
        target=delivery.id,
        ip=ip,
    )
    enqueue_after_commit(mail_tasks.send_delivery, tenant_id, delivery.id)


def _invalid_token() -> Invalid:
    return Invalid("The reset token is invalid, used or expired", code="reset_token_invalid")


def _claims(token: str) -> dict[str, Any]:
    try:
        claims = security.signed_loads(
            current_app.config["SECRET_KEY"],
            PURPOSE,
            token,
            current_app.config["PASSWORD_RESET_TTL"],
        )
        if not isinstance(claims, dict):
            raise TypeError("claims")
        for name in ("tid", "uid", "rid"):
            if not isinstance(claims[name], str):
                raise TypeError(name)
    except (security.SignedTokenError, KeyError, TypeError) as exc:
        raise _invalid_token() from exc
    return claims


def token_tenant(token: str) -> str | None:
    """The tenant a reset token was issued in (signature and age checked, nothing else, no
    database read), or None when it is no valid token: the edge enters that tenant before
    confirm_reset checks the token fully."""
    try:
        return _claims(token)["tid"]
    except Invalid:
        return None


@dataclass(frozen=True)
class ConfirmedReset:
    """A reset done: the user, and the authorization request the reset began from (a
    hosted reset link's), if any."""

    user: User
    continue_with: dict[str, Any] | None


def _pending(token: str) -> tuple[PasswordResetRequest, User, dict[str, Any]]:
    """The unused reset request, its user and the token's claims; Invalid
    `reset_token_invalid` otherwise (also for another tenant's token)."""
    claims = _claims(token)
    tenant_id, user_id, request_id = claims["tid"], claims["uid"], claims["rid"]
    if tenant_id != current_tenant_id():
        raise _invalid_token()
    # Locked, and read afresh: the same link submitted twice at once is used once (the
    # second waits, then finds it used).
    reset = db.session.scalar(
        select(PasswordResetRequest)
        .where(PasswordResetRequest.id == request_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    user = user_service.find_user(user_id)
    if (
        reset is None
        or reset.used_at is not None
        or reset.expires_at <= utcnow()
        or user is None
        or reset.user_id != user.id
        or not security.constant_time_equals(_fingerprint(user), str(claims.get("fp", "")))
    ):
        raise _invalid_token()
    return reset, user, claims


def check_token(*, token: str) -> None:
    """Invalid `reset_token_invalid` unless the token could still reset a password (in
    the tenant in scope): the hosted page checks it before showing its form."""
    _pending(token)


def _continue_with(claims: dict[str, Any]) -> dict[str, Any] | None:
    authz = claims.get("az")
    return authz if isinstance(authz, dict) else None


def confirm_reset(
    *, token: str, password: str, ip: str | None, chosen_on_page: bool = False
) -> ConfirmedReset:
    """Set a new password with a reset token of the tenant in scope and revoke every
    session of the user; Invalid `reset_token_invalid` for a used, expired, forged or
    another tenant's token, the password policy's codes for a password it refuses
    (`chosen_on_page`: the hosted page's, where the common-password list applies too)."""
    reset, user, claims = _pending(token)
    user_service.check_password(password, chosen_on_page=chosen_on_page)
    passwords.set_password(user, password)
    reset.used_at = utcnow()
    token_service.revoke_user_sessions(user=user)
    audit_service.record(
        action="password_reset.confirmed", actor="anonymous", user_id=user.id, ip=ip
    )
    db.session.flush()
    return ConfirmedReset(user=user, continue_with=_continue_with(claims))


# What the periodic clean-up deletes (core.sweeps runs it across tenants).
EXPIRED = Cleanup(
    "expired reset requests",
    PasswordResetRequest,
    lambda now: PasswordResetRequest.expires_at < now,
)
