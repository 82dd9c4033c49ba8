"""User rows (keyed by tenant + id), permission policies and linked identities."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.db import Base, TenantScoped, TimestampMixin, str32, str128, str255, user_foreign_key

PRIMARY_PROVIDER = "gatehouse"
PASSWORD_CONNECTION = "Username-Password-Authentication"


class User(TenantScoped, TimestampMixin, Base):
    __tablename__ = "user_account"
    __table_args__ = (
        UniqueConstraint("tenant_id", "username_normalized"),
        Index("ix_user_account_tenant_email", "tenant_id", "email_normalized"),
        Index("ix_user_account_tenant_created", "tenant_id", "created_at", "id"),
        # Prefix search (users.search: `alice*`, the console's search box) at 1 M users:
        # LIKE 'x%' uses a btree only under the C collation, or with the pattern operator
        # classes (PostgreSQL; SQLite ignores them). Equality uses them too.
        Index(
            "ix_user_account_tenant_email_prefix",
            "tenant_id",
            "email_normalized",
            postgresql_ops={"email_normalized": "varchar_pattern_ops"},
        ),
        Index(
            "ix_user_account_tenant_username_prefix",
            "tenant_id",
            "username_normalized",
            postgresql_ops={"username_normalized": "varchar_pattern_ops"},
        ),
        Index(
            "ix_user_account_tenant_id_prefix",
            "tenant_id",
            "id",
            postgresql_ops={"id": "varchar_pattern_ops"},
        ),
    )

    tenant_id: Mapped[str32] = mapped_column(
        ForeignKey("tenant.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str128] = mapped_column(primary_key=True)
    username: Mapped[str128 | None]
    username_normalized: Mapped[str128 | None]
    email: Mapped[str255 | None]
    email_normalized: Mapped[str255 | None]
    email_verified: Mapped[bool] = mapped_column(default=False)
    display_name: Mapped[str255 | None]
    first_name: Mapped[str255 | None]
    last_name: Mapped[str255 | None]
    nickname: Mapped[str255 | None]
    photo_url: Mapped[str | None] = mapped_column(String(2048))
    phone_number: Mapped[str32 | None]
    blocked: Mapped[bool] = mapped_column(default=False)
    permissions_group: Mapped[str128 | None]
    custom_scopes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    settings: Mapped[list[Any]] = mapped_column(JSON, default=list)
    user_metadata: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    app_metadata: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    require_twofactor_auth: Mapped[bool] = mapped_column(default=False)
    device_token: Mapped[str255 | None]
    device_type: Mapped[str32 | None]
    password_hash: Mapped[str255 | None]
    # The first byte of a keyed HMAC of the password, and which key made it
    # (core.security.password_tag): among several holders of an address, only those whose
    # tag matches are verified. None for a hash set before tags existed (filled in at the
    # next sign-in).
    password_tag: Mapped[int | None]
    # Wrong second-factor codes since the last sign-in: the next one shows the count.
    second_factor_failures: Mapped[int] = mapped_column(default=0, server_default="0")
    last_activity_at: Mapped[datetime | None]
    last_login_at: Mapped[datetime | None]
    logins_count: Mapped[int] = mapped_column(default=0)
    # When the user's sessions were last revoked (shown as tokensValidAfterTime).
    tokens_valid_after: Mapped[datetime | None]
    # Bumped to end every session at once (password change or reset): a session made under
    # an older generation is dead, even one created by a sign-in that was in flight.
    session_generation: Mapped[int] = mapped_column(default=0, server_default="0")
    # Bumped when what a token may do changes (group, custom scopes, policies): access
    # tokens carry it, so one minted before the change is refused on the next request.
    scope_version: Mapped[int] = mapped_column(default=0, server_default="0")
    version: Mapped[int] = mapped_column(default=1)
    # Moves on every change of what a profile view prints: the row, its policies, its linked
    # identities, whoever writes them (ORM, Core, COPY, SQL by hand). On PostgreSQL database
    # triggers set it from one sequence at every UPDATE (migration 3ad285f9be70), so a
    # number is never given twice; the bearer check keeps each caller's view per worker
    # under it (users.read_model.ViewCache). 0 means never numbered (a new row, and always
    # on the embedded SQLite): such a view is never kept.
    profile_version: Mapped[int] = mapped_column(BigInteger, server_default="0")

    policies: Mapped[list[Policy]] = relationship(
        back_populates="user",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Policy.id",
    )
    linked_identities: Mapped[list[Identity]] = relationship(
        back_populates="user",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Identity.id",
    )

    __mapper_args__ = {"version_id_col": version}

    @property
    def identities(self) -> list[dict[str, Any]]:
        """The primary (own) identity followed by every linked one."""
        primary = primary_identity(self.id, has_password=bool(self.password_hash))
        return [primary] + [identity.as_dict() for identity in self.linked_identities]


# The name's prefix search matches lower(display_name) (users.search), so its index holds
# that expression; declared beside the table, where the column can be named.
Index(
    "ix_user_account_tenant_name_prefix",
    User.tenant_id,
    func.lower(User.display_name).label("display_name_lower"),
    postgresql_ops={"display_name_lower": "text_pattern_ops"},
)


def primary_identity(user_id: str, *, has_password: bool) -> dict[str, Any]:
    """The user's own identity, listed before the linked ones."""
    return {
        "provider": PRIMARY_PROVIDER,
        "user_id": user_id,
        "connection": PASSWORD_CONNECTION if has_password else PRIMARY_PROVIDER,
        "isSocial": False,
    }


def identity_dict(
    *,
    provider: str,
    provider_user_id: str,
    connection: str,
    is_social: bool,
    profile_data: dict[str, Any] | None,
) -> dict[str, Any]:
    """How every surface prints a linked identity."""
    return {
        "provider": provider,
        "user_id": provider_user_id,
        "connection": connection,
        "isSocial": is_social,
        "profileData": profile_data,
    }


class Policy(TenantScoped, Base):
    """One permission: `type` (read/write/admin) on a resource of a resource type."""

    __tablename__ = "policy"
    __table_args__ = (user_foreign_key(), Index("ix_policy_tenant_user", "tenant_id", "user_id"))

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    user_id: Mapped[str128]
    resource: Mapped[str255]
    resource_type: Mapped[str128]
    type: Mapped[str] = mapped_column(String(16))

    user: Mapped[User] = relationship(back_populates="policies")


class Identity(TenantScoped, Base):
    """An identity of another provider linked to a user."""

    __tablename__ = "identity"
    __table_args__ = (
        user_foreign_key(),
        # One identity per subject of a connection: two OIDC connections may both name a
        # subject "123" (different issuers), never the same connection twice.
        UniqueConstraint("tenant_id", "connection", "provider_user_id"),
        Index("ix_identity_tenant_user", "tenant_id", "user_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    user_id: Mapped[str128]
    provider: Mapped[str128]
    provider_user_id: Mapped[str255]
    connection: Mapped[str128]
    is_social: Mapped[bool] = mapped_column(default=False)
    profile_data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime]

    user: Mapped[User] = relationship(back_populates="linked_identities")

    def as_dict(self) -> dict[str, Any]:
        return identity_dict(
            provider=self.provider,
            provider_user_id=self.provider_user_id,
            connection=self.connection,
            is_social=self.is_social,
            profile_data=self.profile_data,
        )
