"""Registered applications, their allowed CORS origins, and authorization codes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.db import (
    Base,
    TenantScoped,
    TimestampMixin,
    str32,
    str64,
    str128,
    str255,
    user_foreign_key,
)
from app.core.scopes import DEFAULT_APP_SCOPES

PUBLIC, CONFIDENTIAL = "public", "confidential"


class Application(TenantScoped, TimestampMixin, Base):
    """An app that signs users in: its id is the OAuth `client_id` (globally unique, so it
    names its tenant); a confidential app also has a secret, of which only a hash is kept."""

    __tablename__ = "application"

    id: Mapped[str32] = mapped_column(primary_key=True)
    name: Mapped[str255]
    type: Mapped[str32]
    secret_hash: Mapped[str64 | None]
    redirect_uris: Mapped[list[Any]] = mapped_column(JSON, default=list)
    post_logout_redirect_uris: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # The scopes the app may obtain for a user (what it asks for, the user holds and this
    # lists); NULL until set: the default, which follows the catalogue (permitted_scopes).
    allowed_scopes: Mapped[list[Any] | None] = mapped_column(JSON)
    # Users signing in to this app need a second factor (as the tenant's mfa_required).
    mfa_required: Mapped[bool] = mapped_column(default=False, server_default=false())

    origins: Mapped[list[ApplicationOrigin]] = relationship(
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="ApplicationOrigin.position",
        lazy="selectin",
    )

    @property
    def allowed_origins(self) -> list[str]:
        return [row.origin for row in self.origins]

    @property
    def permitted_scopes(self) -> list[str]:
        """allowed_scopes, or the default (OIDC and current-user scopes) when never set."""
        if self.allowed_scopes is None:
            return list(DEFAULT_APP_SCOPES)
        return [str(scope) for scope in self.allowed_scopes]

    @property
    def is_confidential(self) -> bool:
        return self.type == CONFIDENTIAL


class ApplicationOrigin(TenantScoped, Base):
    """One origin an app's browser code may call the token, revocation, userinfo and JWKS
    endpoints from (CORS); a row of its own so a preflight finds it by an indexed look-up."""

    __tablename__ = "application_origin"
    __table_args__ = (Index("ix_application_origin_origin", "origin"),)

    application_id: Mapped[str32] = mapped_column(
        ForeignKey("application.id", ondelete="CASCADE"), primary_key=True
    )
    origin: Mapped[str255] = mapped_column(primary_key=True)
    position: Mapped[int] = mapped_column(default=0)


class AuthorizationCode(TenantScoped, Base):
    """A single-use authorization code (RFC 6749 §4.1.2), bound to its app, redirect URI and
    PKCE challenge; only its SHA-256 is kept. `session_id` is the sign-in session its
    exchange started, ended if the code is presented again (RFC 6749 §4.1.2)."""

    __tablename__ = "authorization_code"
    __table_args__ = (
        user_foreign_key(),
        Index("ix_authorization_code_expires", "expires_at"),
    )

    code_hash: Mapped[str64] = mapped_column(primary_key=True)
    client_id: Mapped[str32] = mapped_column(ForeignKey("application.id", ondelete="CASCADE"))
    user_id: Mapped[str128]
    redirect_uri: Mapped[str | None] = mapped_column(String(2048))
    code_challenge: Mapped[str128]
    nonce: Mapped[str | None] = mapped_column(String(512))
    scope: Mapped[str | None] = mapped_column(String(2048))
    auth_time: Mapped[datetime]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    session_id: Mapped[str32 | None]
    # How the user authenticated (OIDC `amr`: pwd, otp, hwk, swk, mfa), for the ID token.
    amr: Mapped[list[Any] | None] = mapped_column(JSON)
    # The browser sign-in session that issued the code: ending it ends the app's session.
    login_session_id: Mapped[str32 | None]
