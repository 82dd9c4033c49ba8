"""Record audit events and list them newest first with keyset paging."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.models import AuditEvent, PlatformEvent
from app.core import metrics, security
from app.core.db import db, utcnow
from app.core.pagination import Page, paginate_by_creation

# Fixed names clients filter on (SPEC §8), plus the hosted sign-in's own (issue 19):
# `user.email_verified` (a verification link was used) and `token.code_reused` (an
# authorization code presented twice; the session it started is ended); issue 24's
# `user.password_rehashed` (an imported hash replaced by argon2id at a sign-in); issue 25's
# account page: `session.revoked` (sessions signed out there) and `user.reauthenticated`
# (the password entered again before a credential change).
ACTIONS = frozenset(
    {
        "user.created",
        "user.deleted",
        "user.signed_in",
        "user.signin_failed",
        "user.password_changed",
        "user.password_rehashed",
        "user.blocked",
        "token.custom_issued",
        "token.refresh_reused",
        "secret.value_read",
        "identity.linked",
        "identity.unlinked",
        "mfa.enrolled",
        "mfa.removed",
        "mfa.recovery_code_used",
        "mfa.recovery_codes_regenerated",
        "password_reset.requested",
        "password_reset.confirmed",
        "user.email_verified",
        "token.code_reused",
        "users.imported",
        "users.exported",
        "session.revoked",
        "user.reauthenticated",
        "passkey.registered",
        "passkey.removed",
        "passkey.clone_detected",
        # issue 25: a hosted sign-up with an address already registered (no account made,
        # its owner mailed).
        "user.signup_attempted",
        # issue 26: changes webhooks announce, and the endpoints' own story.
        "user.updated",
        "application.created",
        "application.deleted",
        "webhook.created",
        "webhook.updated",
        "webhook.deleted",
        "webhook.secret_rotated",
        "webhook.disabled",
    }
)
_SIGNIN_ACTIONS = frozenset({"user.signed_in", "user.signin_failed"})
_FORBIDDEN_DATA_KEYS = frozenset(
    {"password", "token", "secret", "value", "refresh_token", "password_hash", "hash"}
)


# Called with every event recorded, in its transaction (the webhooks' outbox, wired by
# create_app): what the audit log says happened is what they announce.
AuditListener = Callable[[AuditEvent, Session], None]
_LISTENERS: list[AuditListener] = []


def listen(listener: AuditListener) -> None:
    """Call `listener(event, session)` for every event recorded from now on (once each)."""
    if listener not in _LISTENERS:
        _LISTENERS.append(listener)


def _event(
    *,
    action: str,
    actor: str,
    user_id: str | None,
    target: str | None,
    ip: str | None,
    data: dict[str, Any] | None,
    at: datetime | None,
) -> AuditEvent:
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    data = data or {}
    leaked = _FORBIDDEN_DATA_KEYS & set(data)
    if leaked:
        raise ValueError(f"audit data must not hold {sorted(leaked)}")
    return AuditEvent(
        id=security.random_hex(16),
        action=action,
        actor=actor,
        user_id=user_id,
        target=target,
        ip=ip,
        data=data,
        created_at=at or utcnow(),
    )


def _announce(event: AuditEvent, session: Session) -> None:
    for listener in _LISTENERS:
        listener(event, session)
    if event.action in _SIGNIN_ACTIONS:
        metrics.count_signin(event.action == "user.signed_in")


def record(
    *,
    action: str,
    actor: str,
    user_id: str | None = None,
    target: str | None = None,
    ip: str | None = None,
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
    session: Session | None = None,
) -> AuditEvent:
    """Add one audit event to the current transaction (tenant from the current scope), or
    to `session` (an `independent_write()`: kept even if the request then fails)."""
    event = _event(
        action=action, actor=actor, user_id=user_id, target=target, ip=ip, data=data, at=at
    )
    (session or db.session).add(event)
    _announce(event, session or db.session)
    return event


def record_written_by_caller(
    *,
    action: str,
    actor: str,
    user_id: str | None = None,
    target: str | None = None,
    ip: str | None = None,
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEvent:
    """One audit event whose row the caller inserts itself, in the very statement that
    makes the change (a sign-in's one write, app.tokens.login): checked as `record`
    checks, and handed to the listeners now, in the request's unit of work. What they
    write there (the webhooks' outbox rows) opens its transaction, and the caller's
    statement then joins it (core.prepared.write), so the two commit together. The event
    is not added to any session: the caller must write its columns."""
    event = _event(
        action=action, actor=actor, user_id=user_id, target=target, ip=ip, data=data, at=at
    )
    _announce(event, db.session)
    return event


PLATFORM_ACTIONS = frozenset({"tenant.deleted", "encryption.rotated"})


def record_platform_event(
    *, action: str, actor: str, target: str, ip: str | None, data: dict[str, Any]
) -> PlatformEvent:
    """Add one platform event (no tenant) to the current transaction."""
    if action not in PLATFORM_ACTIONS:
        raise ValueError(f"unknown platform action {action!r}")
    event = PlatformEvent(
        id=security.random_hex(16),
        action=action,
        actor=actor,
        target=target,
        ip=ip,
        data=data,
        created_at=utcnow(),
    )
    db.session.add(event)
    return event


def list_platform_events(
    *, action: str | None = None, limit: int | None = None, cursor: str | None = None
) -> Page[Any]:
    """Platform events (of one `action` when given), newest first."""
    query = select(PlatformEvent)
    if action is not None:
        query = query.where(PlatformEvent.action == action)
    return paginate_by_creation(
        query,
        created_col=PlatformEvent.created_at,
        id_col=PlatformEvent.id,
        limit=limit,
        cursor=cursor,
        newest_first=True,
    )


def list_events(
    *,
    user_id: str | None = None,
    action: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Page[AuditEvent]:
    """The current tenant's events, newest first, optionally filtered; Invalid cursor."""
    query = select(AuditEvent)
    if user_id is not None:
        query = query.where(AuditEvent.user_id == user_id)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    return paginate_by_creation(
        query,
        created_col=AuditEvent.created_at,
        id_col=AuditEvent.id,
        limit=limit,
        cursor=cursor,
        newest_first=True,
    )
