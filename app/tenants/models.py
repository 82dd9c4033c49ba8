"""Tenant rows with their settings, and the API keys that act for a tenant."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String, false, true
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, TenantScoped, TimestampMixin, str32, str128, str255


class Tenant(TimestampMixin, Base):
    __tablename__ = "tenant"

    id: Mapped[str32] = mapped_column(primary_key=True)
    name: Mapped[str255]
    allow_user_token_management: Mapped[bool] = mapped_column(default=False)
    email_from: Mapped[str255 | None]
    postmark_server_token_encrypted: Mapped[str | None] = mapped_column(String(512))
    password_reset_hosts: Mapped[list[Any]] = mapped_column(JSON, default=list)
    password_min_length: Mapped[int] = mapped_column(default=8)
    # Imported hashes of a weak algorithm (md4, md5, sha1, unsalted digests): "accept"
    # them (verified once, then rehashed to argon2id) or "reset" (the user must reset).
    weak_password_hashes: Mapped[str] = mapped_column(
        String(8), default="accept", server_default="accept"
    )
    access_token_ttl: Mapped[int | None]
    refresh_token_ttl: Mapped[int | None]
    # Hosted self-service (issue 25). `password_policy` in the settings is
    # {min_length: password_min_length, block_common: password_block_common}: a password a
    # user chooses on the hosted pages must not be on the shipped list of common ones.
    password_block_common: Mapped[bool] = mapped_column(default=True, server_default=true())
    signup_enabled: Mapped[bool] = mapped_column(default=False, server_default=false())
    # The profile fields the sign-up page asks for (besides email and password).
    signup_fields: Mapped[list[Any]] = mapped_column(JSON, default=list, server_default="[]")
    # Every user must sign in with a second factor (enrolled in place when missing).
    mfa_required: Mapped[bool] = mapped_column(default=False, server_default=false())
    # The admin console (app.console) admits only sign-ins with a second factor.
    console_require_mfa: Mapped[bool] = mapped_column(default=False, server_default=false())
    # {display_name, logo_url, primary_color (#rrggbb), support_url}: the hosted pages' look.
    branding: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")


class ApiKey(TenantScoped, Base):
    """A tenant's API key; only the SHA-256 of the whole key is kept."""

    __tablename__ = "api_key"

    id: Mapped[str32] = mapped_column(primary_key=True)
    name: Mapped[str128 | None]
    key_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[Any]] = mapped_column(JSON, default=lambda: ["*"])
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
