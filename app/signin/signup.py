"""Self-service on the hosted pages before a sign-in: sign-up and the forgotten password.

Neither says whether an address is registered. Sign-up costs the same either way: the
limits (per IP, and per tenant and address, counted for every address), the policy's
checks, the account built (its statements and argon2 hash; undone for a registered
address), one audit row, one mail row and one queued send. A new address gets an account
(email unverified) and a verification link that signs the user in; a registered one gets
no account, and its owner a mail that someone tried to sign up with it. The forgotten
password goes through the password reset (its limits, audit and single-use token) with
the hosted reset page's link, in the worker, so that the page's answer takes the same
time either way."""

from __future__ import annotations

import html
from typing import Any

from flask import current_app
from flask_babel import gettext as _

from app.audit import service as audit_service
from app.core import ratelimit
from app.core.db import db, lock_until_commit
from app.core.errors import NotFound
from app.core.jobs import enqueue_after_commit
from app.credentials import tasks as credential_tasks
from app.credentials import verification
from app.mail import service as mail_service
from app.mail import tasks as mail_tasks
from app.tenants import service as tenant_service
from app.users import service as user_service
from app.users.models import User

# The profile fields a tenant's sign-up page may ask for (settings.signup_fields, OIDC
# names) and the user attributes that hold them (username has its own column).
PROFILE_ATTRIBUTES = {
    "name": "display_name",
    "given_name": "first_name",
    "family_name": "last_name",
    "nickname": "nickname",
}
SIGNUP_FIELDS = (*PROFILE_ATTRIBUTES, "username")
EXISTING_KIND = "signup_existing"


def _disabled() -> NotFound:
    return NotFound(_("This page does not exist."), code="signup_disabled")


def signup_fields(*, tenant_id: str) -> list[str]:
    """The profile fields the tenant's sign-up page asks for (in the settings' order);
    NotFound `signup_disabled` when the tenant offers no sign-up."""
    tenant = tenant_service.find_tenant(tenant_id)
    if tenant is None or not tenant.signup_enabled:
        raise _disabled()
    return [name for name in tenant.signup_fields or [] if name in SIGNUP_FIELDS]


def signup_enabled(*, tenant_id: str) -> bool:
    tenant = tenant_service.find_tenant(tenant_id)
    return bool(tenant is not None and tenant.signup_enabled)


def _existing_mail_bodies(link: str) -> tuple[str, str]:
    tried = _(
        "Someone tried to create an account with this email address, but it already has "
        "one. If it was you, sign in instead."
    )
    forgot = _("If you forgot your password, you can choose a new one here:")
    not_you = _("If it was not you, ignore this mail; nothing has changed.")
    text = f"{tried}\n\n{forgot}\n{link}\n\n{not_you}\n"
    safe = html.escape(link, quote=True)
    markup = (
        f"<p>{html.escape(tried)}</p>"
        f'<p>{html.escape(forgot)} <a href="{safe}">{html.escape(link)}</a></p>'
        f"<p>{html.escape(not_you)}</p>"
    )
    return text, markup


def sign_up(
    *,
    tenant_id: str,
    email: str,
    password: str,
    profile: dict[str, str],
    continue_with: dict[str, Any] | None,
    ip: str | None,
) -> None:
    """Sign up with an address and a password in `tenant_id` (the tenant in scope), the
    same answer and cost whether or not the address is registered (see the module).
    NotFound `signup_disabled`; RateLimited; Invalid `invalid_email`, the password
    policy's codes, `invalid_username`; Conflict `username_exists`; Invalid
    `mail_not_configured`."""
    allowed = signup_fields(tenant_id=tenant_id)
    ratelimit.check("RATELIMIT_SIGNUP_PER_IP", ip or "-")
    address = user_service.normalize_email(email)
    ratelimit.check("RATELIMIT_SIGNUP_PER_ADDRESS", tenant_id, address.casefold())
    user_service.check_password(password, chosen_on_page=True)
    username = profile.get("username") if "username" in allowed else None
    attributes = {
        PROFILE_ATTRIBUTES[name]: value
        for name, value in profile.items()
        if name in allowed and name in PROFILE_ATTRIBUTES and value
    }
    settings = mail_service.mail_settings(tenant_id)
    # Two sign-ups of one new address at once would both find it free: one at a time.
    lock_until_commit(f"signup:{tenant_id}:{address.casefold()}")
    existing = user_service.find_by_email(address)
    # Both paths build the account (the same statements, checks and argon2 hash); for a
    # registered address it is then undone. Invalid or Conflict (a taken username) alike.
    attempt = db.session.begin_nested()
    try:
        user = user_service.create_user(
            email=address, password=password, username=username or None, **attributes
        )
    except BaseException:
        attempt.rollback()
        raise
    if existing:
        attempt.rollback()
        _tell_owner(tenant_id, existing[0], address, settings.sender, ip)
        return
    attempt.commit()
    audit_service.record(
        action="user.created", actor="anonymous", user_id=user.id, ip=ip, data={"via": "signup"}
    )
    verification.send_verification(user=user, sign_in=True, continue_with=continue_with)


def _tell_owner(tenant_id: str, owner: User, address: str, sender: str, ip: str | None) -> None:
    """Mail the owner of a registered address that someone tried to sign up with it."""
    issuer = str(current_app.config["ISSUER"]).rstrip("/")
    text, markup = _existing_mail_bodies(f"{issuer}/forgot-password?tenant={tenant_id}")
    delivery = mail_service.create_delivery(
        tenant_id=tenant_id,
        kind=EXISTING_KIND,
        to=owner.email or address,
        sender=sender,
        subject=_("Someone tried to sign up with your address"),
        text=text,
        html=markup,
    )
    audit_service.record(
        action="user.signup_attempted",
        actor="anonymous",
        user_id=owner.id,
        target=delivery.id,
        ip=ip,
    )
    enqueue_after_commit(mail_tasks.send_delivery, tenant_id, delivery.id)


def forgot_password(
    *, tenant_id: str, email: str, continue_with: dict[str, Any] | None, ip: str | None
) -> None:
    """Mail the hosted reset link to the users of `tenant_id` (in scope) holding the
    address, carrying the authorization request the reset began from. The look-up and the
    mail are the worker's (credentials.tasks.hosted_reset_request, through the password
    reset), so the answer and its time are the same whether or not any user holds the
    address. RateLimited (RATELIMIT_RESET_PER_IP, _PER_ADDRESS); Invalid `invalid_email`,
    `mail_not_configured`."""
    address = user_service.normalize_email(email)
    ratelimit.check("RATELIMIT_RESET_PER_IP", ip or "-")
    ratelimit.check_each("RATELIMIT_RESET_PER_ADDRESS", tenant_id, ratelimit.login_keys(address))
    mail_service.mail_settings(tenant_id)  # not configured: said now, not lost in the worker
    enqueue_after_commit(
        credential_tasks.hosted_reset_request, tenant_id, address, continue_with, ip
    )
