"""Property rows: a name per user and a JSON value."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Index, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, TenantScoped, TimestampMixin, str32, str128, user_foreign_key


class Property(TenantScoped, TimestampMixin, Base):
    __tablename__ = "property"
    __table_args__ = (
        user_foreign_key(),
        UniqueConstraint("tenant_id", "user_id", "name"),
        Index("ix_property_tenant_user_created", "tenant_id", "user_id", "created_at", "id"),
    )

    id: Mapped[str32] = mapped_column(primary_key=True)
    user_id: Mapped[str128]
    name: Mapped[str128]
    value: Mapped[Any] = mapped_column(JSON(none_as_null=False))
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}
