"""Secret rows: a name per user and a value encrypted with the key ring."""

from __future__ import annotations

from sqlalchemy import Index, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, TenantScoped, TimestampMixin, str32, str128, user_foreign_key


class Secret(TenantScoped, TimestampMixin, Base):
    __tablename__ = "secret"
    __table_args__ = (
        user_foreign_key(),
        UniqueConstraint("tenant_id", "user_id", "name"),
        Index("ix_secret_tenant_user_created", "tenant_id", "user_id", "created_at", "id"),
    )

    id: Mapped[str32] = mapped_column(primary_key=True)
    user_id: Mapped[str128]
    name: Mapped[str128]
    # `v1.<key id>.<nonce+ciphertext>`: the key id tells re-encryption what is left to do.
    value_encrypted: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}
