"""Password reset by email: request (same answer whether or not a user matched) and
confirm (single use, one hour, bound to the password hash at request time)."""

from __future__ import annotations

import html
from datetime import timedelta
from urllib.parse import quote

from flask import current_app
from sqlalchemy import delete, select

from app.audit import service as audit_service
from app.core import security
from app.core.db import db, utcnow
from app.core.errors import Invalid
from app.core.jobs import enqueue_after_commit
from app.core.tenancy import all_tenants, tenant_scope
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


def _mail_bodies(link: str) -> tuple[str, str]:
    text = (
        "Someone asked to reset the password of your account.\n\n"
        f"Open this link within an hour to choose a new one:\n{link}\n\n"
        "If it was not you, ignore this mail; your password stays as it is.\n"
    )
    safe = html.escape(link, quote=True)
    markup = (
        "<p>Someone asked to reset the password of your account.</p>"
        f'<p><a href="{safe}">Choose a new password</a> (the link works for an hour).</p>'
        "<p>If it was not you, ignore this mail; your password stays as it is.</p>"
    )
    return text, markup


def request_reset(
    *, tenant_id: str, username: str | None, email: str | None, host: str, ip: str | None
) -> None:
    """Mail a reset link to the matching user(s), if any. Invalid INVALID_BODY for a host
    outside the tenant's allow-list, TOKEN_OR_EMAIL_NOT_SET when mail is not configured.
    Answers the same whether or not a user matched."""
    tenant = tenant_service.get_tenant(tenant_id)
    if host.lower() not in {h.lower() for h in tenant.password_reset_hosts or []}:
        raise Invalid("host is not an allowed password-reset host", code="INVALID_BODY")
    settings = mail_service.mail_settings(tenant_id)
    ttl = current_app.config["PASSWORD_RESET_TTL"]
    with tenant_scope(tenant_id):
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
            now = utcnow()
            reset = PasswordResetRequest(
                id=security.random_hex(16),
                tenant_id=tenant_id,
                user_id=user.id,
                created_at=now,
                expires_at=now + timedelta(seconds=ttl),
            )
            db.session.add(reset)
            token = security.signed_dumps(
                current_app.config["SECRET_KEY"],
                PURPOSE,
                {"tid": tenant_id, "uid": user.id, "rid": reset.id, "fp": _fingerprint(user)},
            )
            text, markup = _mail_bodies(f"https://{host}/reset-password?token={quote(token)}")
            delivery = mail_service.create_delivery(
                tenant_id=tenant_id,
                kind="password_reset",
                to=user.email or "",
                sender=settings.sender,
                subject="Reset your password",
                text=text,
                html=markup,
            )
            audit_service.record(
                action="password_reset.requested",
                actor="anonymous",
                user_id=user.id,
                target=delivery.id,
                ip=ip,
            )
            enqueue_after_commit(mail_tasks.send_delivery, tenant_id, delivery.id)
        db.session.flush()


def _invalid_token() -> Invalid:
    return Invalid("The reset token is invalid, used or expired", code="INVALID_TOKEN")


def confirm_reset(*, token: str, password: str, ip: str | None) -> None:
    """Set a new password with a reset token and revoke every session of the user;
    Invalid INVALID_TOKEN for a used, expired or forged token, INVALID_BODY for a password
    the tenant's policy refuses."""
    try:
        claims = security.signed_loads(
            current_app.config["SECRET_KEY"],
            PURPOSE,
            token,
            current_app.config["PASSWORD_RESET_TTL"],
        )
        tenant_id, user_id, request_id = claims["tid"], claims["uid"], claims["rid"]
    except (security.SignedTokenError, KeyError, TypeError) as exc:
        raise _invalid_token() from exc
    with tenant_scope(tenant_id):
        reset = db.session.scalar(
            select(PasswordResetRequest).where(PasswordResetRequest.id == request_id)
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
        try:
            user_service.check_password(password)
        except Invalid as exc:
            raise Invalid(exc.message, code="INVALID_BODY", fields=exc.fields) from exc
        passwords.set_password(user, password)
        reset.used_at = utcnow()
        token_service.revoke_user_sessions(user=user)
        audit_service.record(
            action="password_reset.confirmed", actor="anonymous", user_id=user.id, ip=ip
        )
        db.session.flush()


def purge_expired(*, batch_size: int) -> int:
    """Delete up to `batch_size` expired reset requests (all tenants)."""
    doomed = (
        select(PasswordResetRequest.id)
        .where(PasswordResetRequest.expires_at < utcnow())
        .limit(batch_size)
    )
    with all_tenants():
        return db.session.execute(
            delete(PasswordResetRequest)
            .where(PasswordResetRequest.id.in_(doomed))
            .execution_options(synchronize_session=False)
        ).rowcount
