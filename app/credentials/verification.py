"""Email verification: a mail with a signed link (through the outbox row, the worker and
Postmark, as the reset mail goes) that marks the user's address verified once: each link
has an id that is remembered when used, so it never works twice, even after the address
goes back to unverified."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from flask import current_app
from flask_babel import gettext as _
from flask_babel import ngettext

from app.audit import service as audit_service
from app.core import i18n, security
from app.core.errors import Invalid
from app.core.jobs import enqueue_after_commit
from app.core.tenancy import current_tenant_id
from app.mail import service as mail_service
from app.mail import tasks as mail_tasks
from app.tokens import service as token_service
from app.users import service as user_service
from app.users.models import User

PURPOSE = "email-verification"
KIND = "email_verification"
# Link ids share the used-token table with custom tokens; the prefix keeps them apart.
JTI_PREFIX = "ev_"


def _fingerprint(user: User) -> str:
    # The address and its state: a link verifies the address it was sent to, and only
    # while it is unverified, so it works once and dies when the email changes.
    return security.sha256_hex(f"{user.email_normalized}:{int(bool(user.email_verified))}")[:16]


def _mail_bodies(link: str, hours: int) -> tuple[str, str]:
    """The mail's text and HTML, in the request's language (app.core.i18n)."""
    i18n.reselect()
    confirm = _("Please confirm that this is your email address.")
    ignore = _("If you did not sign up, ignore this mail.")
    within = ngettext(
        "Open this link within %(num)d hour to confirm it:",
        "Open this link within %(num)d hours to confirm it:",
        hours,
    )
    text = f"{confirm}\n\n{within}\n{link}\n\n{ignore}\n"
    safe = html.escape(link, quote=True)
    works = ngettext(
        "(the link works for %(num)d hour).", "(the link works for %(num)d hours).", hours
    )
    button = _("Confirm my email address")
    markup = (
        f"<p>{html.escape(confirm)}</p>"
        f'<p><a href="{safe}">{html.escape(button)}</a> '
        f"{html.escape(works)}</p>"
        f"<p>{html.escape(ignore)}</p>"
    )
    return text, markup


def send_verification(
    *, user: User, sign_in: bool = False, continue_with: dict[str, Any] | None = None
) -> None:
    """Queue a verification mail to the user's address (in the user's tenant scope).
    `sign_in`: the link also signs the user in (the hosted sign-up's mail), and then goes
    on with the authorization request `continue_with`, if any. Invalid `email_missing` or
    `email_already_verified`; TOKEN_OR_EMAIL_NOT_SET when the tenant's mail is not
    configured."""
    if not user.email:
        raise Invalid("The account has no email address", code="email_missing")
    if user.email_verified:
        raise Invalid("The email address is already verified", code="email_already_verified")
    settings = mail_service.mail_settings(user.tenant_id)
    claims: dict[str, Any] = {
        "tid": user.tenant_id,
        "uid": user.id,
        "fp": _fingerprint(user),
        "jti": JTI_PREFIX + security.random_hex(16),
    }
    if sign_in:
        claims["si"] = True
        if continue_with is not None:
            claims["az"] = continue_with
    token = security.signed_dumps(current_app.config["SECRET_KEY"], PURPOSE, claims)
    issuer = current_app.config["ISSUER"].rstrip("/")
    hours = max(1, current_app.config["EMAIL_VERIFICATION_TTL"] // 3600)
    text, markup = _mail_bodies(f"{issuer}/verify-email?token={quote(token)}", hours)
    delivery = mail_service.create_delivery(
        tenant_id=user.tenant_id,
        kind=KIND,
        to=user.email,
        sender=settings.sender,
        subject=_("Confirm your email address"),
        text=text,
        html=markup,
    )
    enqueue_after_commit(mail_tasks.send_delivery, user.tenant_id, delivery.id)


def _invalid_link() -> Invalid:
    return Invalid("The link is invalid, used or expired", code="verification_token_invalid")


def _claims(token: str) -> dict[str, Any]:
    """The claims of a link's token (signature and age checked); Invalid otherwise."""
    try:
        claims = security.signed_loads(
            current_app.config["SECRET_KEY"],
            PURPOSE,
            token,
            current_app.config["EMAIL_VERIFICATION_TTL"],
        )
        values = {name: claims[name] for name in ("tid", "uid", "fp", "jti")}
    except (security.SignedTokenError, KeyError, TypeError) as exc:
        raise _invalid_link() from exc
    if not all(isinstance(value, str) for value in values.values()):
        raise _invalid_link()
    authz = claims.get("az")
    continue_with = authz if isinstance(authz, dict) else None
    return {**values, "si": claims.get("si") is True, "az": continue_with}


def token_tenant(token: str) -> str:
    """The tenant a link was mailed in (signature and age checked, nothing read), for the
    edge to enter before `confirm`; Invalid `verification_token_invalid` otherwise."""
    return _claims(token)["tid"]


@dataclass(frozen=True)
class Verified:
    """An address verified by a link: its user, whether the link also signs in (a hosted
    sign-up's), and the authorization request to go on with, if any."""

    user: User
    sign_in: bool
    continue_with: dict[str, Any] | None


def confirm(*, token: str, ip: str | None) -> Verified:
    """Mark the address a link was sent to verified (audited `user.email_verified`), in
    the tenant in scope; Invalid `verification_token_invalid` for a forged, expired or
    used link, one of another tenant, or one sent to an address the user no longer has
    (all alike)."""
    claims = _claims(token)
    user_id, fingerprint, jti = claims["uid"], claims["fp"], claims["jti"]
    if claims["tid"] != current_tenant_id():
        raise _invalid_link()
    user = user_service.find_user(user_id)
    if user is None or not user.email:
        raise _invalid_link()
    if not security.constant_time_equals(_fingerprint(user), fingerprint):
        raise _invalid_link()
    token_service.spend_once(
        jti=jti,
        user_id=user.id,
        ttl=current_app.config["EMAIL_VERIFICATION_TTL"],
        used=_invalid_link(),
    )
    user_service.update_user(user=user, changes={"email_verified": True}, actor=None)
    audit_service.record(
        action="user.email_verified", actor=f"user:{user.id}", user_id=user.id, ip=ip
    )
    return Verified(user=user, sign_in=bool(claims["si"]), continue_with=claims["az"])
