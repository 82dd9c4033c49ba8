"""Password-reset requests (single use; the token itself is never stored)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, TenantScoped, str32, str128, user_foreign_key


class PasswordResetRequest(TenantScoped, Base):
    __tablename__ = "password_reset_request"
    __table_args__ = (
        user_foreign_key(),
        Index("ix_password_reset_request_expires", "expires_at"),
    )

    id: Mapped[str32] = mapped_column(primary_key=True)
    user_id: Mapped[str128]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
