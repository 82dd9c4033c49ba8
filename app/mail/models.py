"""Email delivery rows: one per message, with status, attempts and the provider's id."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, TenantScoped, TimestampMixin, str32, str64, str255

QUEUED, SENDING, SENT, FAILED = "queued", "sending", "sent", "failed"


class EmailDelivery(TenantScoped, TimestampMixin, Base):
    __tablename__ = "email_delivery"
    __table_args__ = (
        Index("ix_email_delivery_status_due", "status", "next_attempt_at"),
        Index("ix_email_delivery_created", "created_at"),
    )

    id: Mapped[str32] = mapped_column(primary_key=True)
    kind: Mapped[str32]
    to_address: Mapped[str255]
    from_address: Mapped[str255]
    subject: Mapped[str255]
    # Text and HTML bodies (they hold a reset link), encrypted with the key ring.
    body_encrypted: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(String(1024))
    provider_message_id: Mapped[str64 | None]
    sent_at: Mapped[datetime | None]
