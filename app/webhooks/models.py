"""A tenant's webhook endpoints and the messages written for them (the outbox): one row per
event and endpoint, whose id is the `webhook-id` every attempt sends."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Text, true
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, TenantScoped, TimestampMixin, str32, str64, str255

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


class WebhookEndpoint(TenantScoped, TimestampMixin, Base):
    """Where a tenant's events go: an https URL, the event types it wants (none: all), and
    the signing secret (encrypted; after a rotation the previous one signs too until
    `previous_secret_expires_at`)."""

    __tablename__ = "webhook_endpoint"

    id: Mapped[str32] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str255] = mapped_column(default="")
    event_types: Mapped[list[Any]] = mapped_column(JSON, default=list)
    enabled: Mapped[bool] = mapped_column(default=True, server_default=true())
    secret_encrypted: Mapped[str] = mapped_column(Text)
    previous_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None]
    # Since when every delivery attempt has failed (NULL after a success): five days of
    # that disable the endpoint.
    failing_since: Mapped[datetime | None]
    disabled_reason: Mapped[str64 | None]


class WebhookMessage(TenantScoped, Base):
    """One event for one endpoint. `body` is the exact JSON text signed and sent on every
    attempt; `next_attempt_at` is when it is due (or, while an attempt runs, the end of
    that attempt's lease, so a killed worker's message comes due again)."""

    __tablename__ = "webhook_message"
    __table_args__ = (
        Index("ix_webhook_message_endpoint", "tenant_id", "endpoint_id", "created_at", "id"),
        Index("ix_webhook_message_due", "status", "next_attempt_at"),
    )

    id: Mapped[str64] = mapped_column(primary_key=True)
    endpoint_id: Mapped[str32] = mapped_column(
        ForeignKey("webhook_endpoint.id", ondelete="CASCADE")
    )
    event_type: Mapped[str64]
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str32] = mapped_column(default=PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    last_status_code: Mapped[int | None]
    last_error: Mapped[str255 | None]
    last_attempt_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
