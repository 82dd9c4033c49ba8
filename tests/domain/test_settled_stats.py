"""Daily stats keep the counts of settled days in Redis (app.audit.settled): a day that
ended more than a day ago is counted once and read back, while yesterday and today are
counted from the audit log on every call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Flask

from app.audit import service as audit_service
from app.core.tenancy import tenant_scope
from tests import factories
from tests.factories import TenantHandle


def _signins(app: Flask, tenant_id: str) -> dict[int, int]:
    """{days ago: sign-ins} of the default 30 days."""
    with app.app_context(), tenant_scope(tenant_id):
        stats = audit_service.daily_stats()
    today = datetime.now(UTC).date()
    return {(today - day.date).days: day.logins for day in stats}


def _sign_in_at(app: Flask, tenant_id: str, days_ago: int) -> None:
    at = datetime.now(UTC) - timedelta(days=days_ago)
    factories.record_events(
        app, tenant_id, [{"action": "user.signed_in", "actor": "user:u-1", "at": at}]
    )


def test_settled_days_are_counted_once_and_recent_days_every_time(
    app: Flask, tenant: TenantHandle
) -> None:
    for days_ago in (5, 1, 0):
        _sign_in_at(app, tenant.id, days_ago)
    first = _signins(app, tenant.id)
    assert (first[5], first[1], first[0]) == (1, 1, 1)

    # Late events (recorded after the first count) for the same days.
    for days_ago in (5, 1, 0):
        _sign_in_at(app, tenant.id, days_ago)
    again = _signins(app, tenant.id)
    assert (again[5], again[1], again[0]) == (1, 2, 2)
    assert sum(again.values()) == 5


def test_another_tenant_keeps_its_own_counts(
    app: Flask, tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    _sign_in_at(app, tenant.id, 5)
    assert _signins(app, tenant.id)[5] == 1
    assert _signins(app, other_tenant.id)[5] == 0
