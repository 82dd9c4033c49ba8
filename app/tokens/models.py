"""Signing keys (global), sign-in sessions, refresh tokens (hashed, one family per session)
and used custom-token ids."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, TenantScoped, str32, str64, str128, str255, user_foreign_key


class SigningKey(Base):
    """An RS256 key pair; the private half is encrypted with the key ring."""

    __tablename__ = "signing_key"

    kid: Mapped[str32] = mapped_column(primary_key=True)
    private_key_encrypted: Mapped[str] = mapped_column(Text)
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    # Set when a newer key takes over signing; the key still verifies until expires_at.
    retired_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]


class AuthSession(TenantScoped, Base):
    """A sign-in session: one refresh-token family. Access tokens name it (`sid`), so
    revoking the row ends every token of the family at once, however many were minted
    concurrently. `generation` is the user's `session_generation` when the session was
    made (or kept); a password change bumps the user's, which ends every other session."""

    __tablename__ = "auth_session"
    __table_args__ = (
        user_foreign_key(),
        Index("ix_auth_session_tenant_user", "tenant_id", "user_id"),
        Index("ix_auth_session_expires", "expires_at"),
        Index("ix_auth_session_tenant_parent", "tenant_id", "parent_id"),
    )

    id: Mapped[str32] = mapped_column(primary_key=True)
    user_id: Mapped[str128]
    generation: Mapped[int] = mapped_column(default=0)
    auth_time: Mapped[datetime]
    created_at: Mapped[datetime]
    # Pushed forward at every rotation: the last moment a token of this family can be valid.
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    # The registered application the session was started for (authorization code, or a
    # grant naming its client_id): its ID tokens name it as `aud`, only it may refresh.
    client_id: Mapped[str32 | None]
    # What the application was granted (space separated): a refresh never widens it. NULL
    # for a session without an application, whose tokens hold whatever the user holds.
    scope: Mapped[str | None] = mapped_column(Text)
    # How the user authenticated (OIDC `amr`), carried into the ID tokens of the session.
    amr: Mapped[list[Any] | None] = mapped_column(JSON)
    # The browser sign-in session an application's session was issued through (by an
    # authorization code): signing that one out on the account page ends this one too.
    parent_id: Mapped[str32 | None]
    # Where the session was started from and when it was last used (the account page).
    ip: Mapped[str64 | None]
    user_agent: Mapped[str255 | None]
    last_seen_at: Mapped[datetime | None]


class RefreshToken(TenantScoped, Base):
    """One refresh token of a family (a sign-in session); only its SHA-256 is kept."""

    __tablename__ = "refresh_token"
    __table_args__ = (
        user_foreign_key(),
        Index("ix_refresh_token_tenant_user", "tenant_id", "user_id"),
        Index("ix_refresh_token_family", "family_id"),
        Index("ix_refresh_token_expires", "expires_at"),
    )

    id: Mapped[str32] = mapped_column(primary_key=True)
    token_hash: Mapped[str64] = mapped_column(unique=True)
    family_id: Mapped[str32]
    user_id: Mapped[str128]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class CustomTokenUse(TenantScoped, Base):
    """The id (`jti`) of a used single-use token — a custom token exchanged, an
    email-verification link opened — kept until the token would have expired anyway: a
    second use finds it here. (Named after its first kind.)"""

    __tablename__ = "custom_token_use"
    __table_args__ = (Index("ix_custom_token_use_expires", "expires_at"),)

    jti: Mapped[str64] = mapped_column(primary_key=True)
    user_id: Mapped[str128]
    used_at: Mapped[datetime]
    expires_at: Mapped[datetime]
