"""Audit events (a tenant's, and the platform's: what outlives a tenant); they never
hold a password, token or secret value."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, TenantScoped, str32, str64, str128, str255


class AuditEvent(TenantScoped, Base):
    __tablename__ = "audit_event"
    __table_args__ = (
        Index("ix_audit_event_tenant_created", "tenant_id", "created_at", "id"),
        Index("ix_audit_event_tenant_user", "tenant_id", "user_id", "created_at"),
        Index("ix_audit_event_tenant_action", "tenant_id", "action", "created_at"),
    )

    id: Mapped[str32] = mapped_column(primary_key=True)
    action: Mapped[str64]
    actor: Mapped[str255]
    user_id: Mapped[str128 | None]
    target: Mapped[str255 | None]
    ip: Mapped[str64 | None]
    created_at: Mapped[datetime]
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class PlatformEvent(Base):
    """An operator action on the platform itself (`tenant.deleted`): it belongs to no
    tenant, so it survives the tenant it names."""

    __tablename__ = "platform_event"
    __table_args__ = (Index("ix_platform_event_created", "created_at", "id"),)

    id: Mapped[str32] = mapped_column(primary_key=True)
    action: Mapped[str64]
    actor: Mapped[str255]
    target: Mapped[str255 | None]
    ip: Mapped[str64 | None]
    created_at: Mapped[datetime]
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
