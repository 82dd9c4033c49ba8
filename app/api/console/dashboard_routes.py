"""The console's home page: how many users the tenant has, sign-ins, failed sign-ins and
sign-ups per day over 30 days (the service behind GET /api/v2/stats/daily) as an inline
SVG chart with its data table, and mail and webhook delivery health (the service behind
GET /tenants/{id}/delivery-health)."""

from __future__ import annotations

from flask import Response

from app.api.auth import public
from app.api.console import blp, page
from app.api.console.chart import Day, daily_chart
from app.api.console.edge import console_tenant, console_view, current
from app.api.delivery_health import tenant_delivery_health
from app.audit import service as audit_service
from app.core.db import utcnow
from app.users import stats as user_stats


# "/console" (the app routes "/console/" as "/console": core.http.StripTrailingSlash).
@blp.route("", methods=["GET"])
@public(tenant_from=console_tenant)
@console_view(action="read")
def dashboard() -> Response:
    """The console's home page: users, daily sign-ins, delivery health"""
    tenant_id = current().user.tenant_id
    days = [
        Day(day=s.date, signins=s.logins, failed=s.failed_logins, signups=s.signups)
        for s in audit_service.daily_stats()
    ]
    today = utcnow().date()
    return page(
        "dashboard.html",
        users=user_stats.count_users(tenant_id=tenant_id),
        days=days,
        today=next((d for d in days if d.day == today), None),
        totals={
            "signins": sum(d.signins for d in days),
            "failed": sum(d.failed for d in days),
            "signups": sum(d.signups for d in days),
        },
        chart=daily_chart(days, today),
        health=tenant_delivery_health(),
    )
