"""Imports every model so the metadata (and Alembic) sees the whole schema."""

from app.tenants.models import ApiKey, Tenant
from app.users.models import Identity, Policy, User

__all__ = ["ApiKey", "Identity", "Policy", "Tenant", "User"]
