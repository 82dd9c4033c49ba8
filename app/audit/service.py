"""Record audit events and list them newest first with keyset paging."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select

from app.audit.models import AuditEvent
from app.core import security
from app.core.db import db, utcnow
from app.core.errors import Invalid
from app.core.pagination import Page, check_limit, decode_cursor, page_from_rows

# Fixed names clients filter on (SPEC §8).
ACTIONS = frozenset(
    {
        "user.created",
        "user.deleted",
        "user.signed_in",
        "user.signin_failed",
        "user.password_changed",
        "user.blocked",
        "token.custom_issued",
        "token.refresh_reused",
        "secret.value_read",
        "identity.linked",
        "identity.unlinked",
        "mfa.enrolled",
        "mfa.removed",
        "password_reset.requested",
        "password_reset.confirmed",
    }
)
_FORBIDDEN_DATA_KEYS = frozenset({"password", "token", "secret", "value", "refresh_token"})


def record(
    *,
    action: str,
    actor: str,
    user_id: str | None = None,
    target: str | None = None,
    ip: str | None = None,
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEvent:
    """Add one audit event to the current transaction (tenant from the current scope)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    data = data or {}
    leaked = _FORBIDDEN_DATA_KEYS & set(data)
    if leaked:
        raise ValueError(f"audit data must not hold {sorted(leaked)}")
    event = AuditEvent(
        id=security.random_hex(16),
        action=action,
        actor=actor,
        user_id=user_id,
        target=target,
        ip=ip,
        data=data,
        created_at=at or utcnow(),
    )
    db.session.add(event)
    return event


def list_events(
    *,
    user_id: str | None = None,
    action: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Page[AuditEvent]:
    """The current tenant's events, newest first, optionally filtered; Invalid cursor."""
    size = check_limit(limit)
    query = select(AuditEvent)
    if user_id is not None:
        query = query.where(AuditEvent.user_id == user_id)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    key = decode_cursor(cursor)
    if key is not None:
        try:
            at, event_id = datetime.fromisoformat(key[0]), str(key[1])
        except (IndexError, TypeError, ValueError) as exc:
            raise Invalid("The cursor is not valid", code="invalid_cursor") from exc
        query = query.where(
            or_(
                AuditEvent.created_at < at,
                and_(AuditEvent.created_at == at, AuditEvent.id < event_id),
            )
        )
    query = query.order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc()).limit(size + 1)
    rows = list(db.session.scalars(query))
    return page_from_rows(rows, size, lambda e: [e.created_at.isoformat(), e.id])
