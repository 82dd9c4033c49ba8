"""A tenant's upstream identity-provider connections. The client secret is encrypted with
the key ring (app/encryption.py rotates it); every other option is plain JSON."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, TenantScoped, TimestampMixin, str32, str128, str255

OIDC, OAUTH2, GITHUB = "oidc", "oauth2", "github"
GOOGLE, MICROSOFT, APPLE = "google-oauth2", "windowslive", "apple"
STRATEGIES = (OIDC, OAUTH2, GITHUB, GOOGLE, MICROSOFT, APPLE)
# As Auth0 sets `isSocial` on the identities a connection makes.
SOCIAL_STRATEGIES = frozenset({GOOGLE, GITHUB, APPLE, MICROSOFT, OAUTH2})


class Connection(TenantScoped, TimestampMixin, Base):
    """One upstream provider a tenant's users may sign in with: its `strategy`, the
    non-secret `options` (issuer or discovery URL, client id, scopes, endpoints, profile
    mapping) and the applications it serves (`enabled_clients`)."""

    __tablename__ = "connection"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[str32] = mapped_column(primary_key=True)
    name: Mapped[str128]
    strategy: Mapped[str32]
    display_name: Mapped[str255 | None]
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    client_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    enabled_clients: Mapped[list[Any]] = mapped_column(JSON, default=list)

    @property
    def is_social(self) -> bool:
        return self.strategy in SOCIAL_STRATEGIES
