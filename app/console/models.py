"""Console members (a tenant's users holding a console role) and the tenant's console
client (the registered application the console signs in through)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.db import Base, TenantScoped, str32, str128, str255, user_foreign_key, utcnow

if TYPE_CHECKING:
    from app.users.models import User


class ConsoleMember(TenantScoped, Base):
    """A user of the tenant who may use the console, and the role that says how far;
    deleting the user deletes the membership (the database cascades)."""

    __tablename__ = "console_member"
    __table_args__ = (
        user_foreign_key(),
        UniqueConstraint("tenant_id", "user_id"),
    )

    id: Mapped[str32] = mapped_column(primary_key=True)
    user_id: Mapped[str128]
    role: Mapped[str32]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The audit label of whoever granted the role last (`cli`, `api_key:…`, `user:…`).
    granted_by: Mapped[str255]

    # Read-only: the member's user, loaded with it (lists show the address).
    user: Mapped[User] = relationship("User", viewonly=True, lazy="joined")

    @property
    def email(self) -> str | None:
        return self.user.email if self.user is not None else None


class ConsoleClient(TenantScoped, Base):
    """Which of the tenant's applications is the console's own OIDC client: made once, at
    the first grant or sign-in; deleting that application drops this row, and the next
    sign-in makes a new one."""

    __tablename__ = "console_client"
    __table_args__ = (UniqueConstraint("tenant_id"),)

    client_id: Mapped[str32] = mapped_column(
        ForeignKey("application.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
