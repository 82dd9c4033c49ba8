"""Password-reset requests (single use; the token itself is never stored), MFA enrolments
(TOTP secrets encrypted at rest), recovery codes (hashed), passkeys and device
credentials (public keys)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String, Text, UniqueConstraint
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


class RecoveryCode(TenantScoped, Base):
    """One single-use recovery code of a user (issued ten at a time with a second
    factor): only its SHA-256 is kept, and `used_at` once it served."""

    __tablename__ = "recovery_code"
    __table_args__ = (
        user_foreign_key(),
        UniqueConstraint("tenant_id", "user_id", "code_hash"),
    )

    id: Mapped[str32] = mapped_column(primary_key=True)
    user_id: Mapped[str128]
    code_hash: Mapped[str64]
    created_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class Passkey(TenantScoped, Base):
    """A WebAuthn credential (passkey) of a user: its id and public key as the
    authenticator gave them (base64url), the signature counter last seen (a lower one
    means a cloned authenticator), and what the account page and the management surface
    show of it."""

    __tablename__ = "passkey"
    __table_args__ = (
        user_foreign_key(),
        UniqueConstraint("tenant_id", "credential_id"),
        Index("ix_passkey_tenant_user", "tenant_id", "user_id"),
    )

    id: Mapped[str32] = mapped_column(primary_key=True)
    user_id: Mapped[str128]
    credential_id: Mapped[str] = mapped_column(String(1400))
    public_key: Mapped[str] = mapped_column(Text)
    sign_count: Mapped[int] = mapped_column(default=0)
    # usb, nfc, ble, internal, hybrid: hints for the browser at the next sign-in.
    transports: Mapped[list[Any]] = mapped_column(JSON, default=list)
    aaguid: Mapped[str64 | None]
    # single_device (a security key: amr "hwk") or multi_device (synced: amr "swk").
    device_type: Mapped[str32]
    backed_up: Mapped[bool] = mapped_column(default=False)
    name: Mapped[str255]
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
