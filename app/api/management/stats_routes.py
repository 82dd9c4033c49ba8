"""Routes of the management surface for the tenant's statistics (Auth0's `/stats`): daily
sign-ins, sign-ups and failed sign-ins, and the count of active users."""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from app.api.auth import requires
from app.api.fields import IsoDateTime, OutputSchema, StrictSchema
from app.api.management import blp
from app.audit import service as audit_service
from app.core.smorest import Dumped

SCOPE = "read:stats"


# Kept here rather than in schemas.py: the shapes of this module's two routes only.
class DailyStatsQuerySchema(StrictSchema):
    from_ = ma.fields.Date(
        format="%Y%m%d",
        data_key="from",
        metadata={"description": "first day (YYYYMMDD, UTC), inclusive; default 30 days ago"},
    )
    to = ma.fields.Date(
        format="%Y%m%d",
        metadata={"description": "last day (YYYYMMDD, UTC), inclusive; default today"},
    )


class DailyStatsSchema(OutputSchema):
    date = IsoDateTime(attribute="starts_at")
    logins = ma.fields.Integer()
    signups = ma.fields.Integer()
    leaked_passwords = ma.fields.Constant(0, metadata={"type": "integer"})
    failed_logins = ma.fields.Integer()
    updated_at = IsoDateTime(allow_none=True)
    created_at = IsoDateTime(allow_none=True)


@blp.route("/api/v2/stats/daily", methods=["GET"])
@requires(SCOPE, user_arg=None)
@blp.arguments(DailyStatsQuerySchema, location="query")
@blp.errors(400)
@blp.response(200, DailyStatsSchema(many=True))
def daily_stats(query: dict[str, Any]) -> list[audit_service.DailyStats]:
    """Count sign-ins, sign-ups and failed sign-ins per day (from, to: YYYYMMDD, ≤ 90 days)"""
    return audit_service.daily_stats(first=query.get("from_"), last=query.get("to"))


@blp.route("/api/v2/stats/active-users", methods=["GET"])
@requires(SCOPE, user_arg=None)
@blp.response(200, {"type": "integer", "minimum": 0})
def active_users() -> Dumped:
    """Count the users who signed in during the last 30 days"""
    return Dumped(audit_service.active_users())
