"""How many users a tenant has, at a cost that does not grow with the tenant: counted
exactly up to EXACT_UP_TO, past that PostgreSQL's planner estimate (the console's
dashboard shows it at a million users in a few milliseconds; a count(*) would scan them)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, text

from app.core.db import db
from app.users.models import User

# Up to this many users the count is exact (an index-only scan that stops there).
EXACT_UP_TO = 10_000


@dataclass(frozen=True)
class UserCount:
    """A tenant's number of users; `exact` False when it is the planner's estimate."""

    value: int
    exact: bool


def count_users(*, tenant_id: str) -> UserCount:
    """The tenant's users: exact up to EXACT_UP_TO; past that the row estimate PostgreSQL
    keeps for `tenant_id` (its statistics, refreshed by autovacuum's ANALYZE), never below
    EXACT_UP_TO + 1. SQLite (the embedded mode, small) counts them all. Runs in the
    tenant's scope."""
    postgres = db.session.get_bind().dialect.name == "postgresql"
    ids = select(User.id).where(User.tenant_id == tenant_id)
    if postgres:
        ids = ids.limit(EXACT_UP_TO + 1)
    counted = int(db.session.scalar(select(func.count()).select_from(ids.subquery())) or 0)
    if counted <= EXACT_UP_TO or not postgres:
        return UserCount(value=counted, exact=True)
    plan = db.session.scalar(
        text("EXPLAIN (FORMAT JSON) SELECT 1 FROM user_account WHERE tenant_id = :tenant_id"),
        {"tenant_id": tenant_id},
    )
    estimate = int(plan[0]["Plan"]["Plan Rows"])
    return UserCount(value=max(estimate, EXACT_UP_TO + 1), exact=False)
