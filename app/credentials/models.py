"""Password-reset requests (single use; the token itself is never stored), MFA enrolments
(TOTP secrets encrypted at rest) and device credentials (public keys)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, TenantScoped, str32, str64, str128, str255, user_foreign_key


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


class MfaEnrolment(TenantScoped, Base):
    """One second factor of a user: a TOTP secret, pending until a code confirms it."""

    __tablename__ = "mfa_enrolment"
    __table_args__ = (
        user_foreign_key(),
        UniqueConstraint("tenant_id", "user_id", "type"),
    )

    id: Mapped[str32] = mapped_column(primary_key=True)
    user_id: Mapped[str128]
    type: Mapped[str] = mapped_column(String(16))  # totp
    status: Mapped[str] = mapped_column(String(16))  # pending | confirmed
    secret_encrypted: Mapped[str] = mapped_column(Text)
    # The TOTP time-step of the last accepted code: a code is accepted once.
    last_used_step: Mapped[int | None]
    created_at: Mapped[datetime]
    confirmed_at: Mapped[datetime | None]
    last_auth_at: Mapped[datetime | None]


class DeviceCredential(TenantScoped, Base):
    """A device's public key (PEM), registered for a user and an application."""

    __tablename__ = "device_credential"
    __table_args__ = (
        user_foreign_key(),
        UniqueConstraint("tenant_id", "user_id", "device_id", "type"),
        Index("ix_device_credential_tenant_user", "tenant_id", "user_id"),
    )

    id: Mapped[str64] = mapped_column(primary_key=True)
    user_id: Mapped[str128]
    device_name: Mapped[str255]
    device_id: Mapped[str255]
    type: Mapped[str] = mapped_column(String(32))  # public_key
    value: Mapped[str] = mapped_column(Text)
    client_id: Mapped[str128 | None]
    created_at: Mapped[datetime]
