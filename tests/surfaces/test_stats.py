"""Daily stats and active users on the management surface (Auth0's `/stats`): counted from
the audit events per UTC day, every day of the range present; the range's bounds and
limits; `read:stats`; another tenant's events never counted."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests import factories
from tests.factories import TenantHandle, assert_surface_error
from tests.oauth_support import PASSWORD, sign_in

TODAY = datetime.now(UTC).date()


def _key(tenant: TenantHandle) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant.key}"}


def _day(days_ago: int, hour: int = 12) -> datetime:
    return datetime.combine(TODAY - timedelta(days=days_ago), time(hour), UTC)


def _ymd(days_ago: int) -> str:
    return (TODAY - timedelta(days=days_ago)).strftime("%Y%m%d")


def test_counts_per_day_from_the_audit_log(
    app: Flask, client: FlaskClient, tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    created = client.post(  # a sign-up today (audited user.created)
        "/api/v2/users",
        json={"connection": "db", "username": "alice", "password": PASSWORD},
        headers=_key(tenant),
    )
    assert created.status_code == 201, created.get_data(as_text=True)
    sign_in(client, tenant.id, "alice")  # a sign-in today
    wrong = {"grant_type": "password", "username": "alice", "password": "wrong password"}
    assert (
        client.post("/oauth/token", headers={"X-Tenant-ID": tenant.id}, data=wrong).status_code
        == 401
    )
    factories.record_events(
        app,
        tenant.id,
        [
            {"action": "user.signed_in", "actor": "t", "user_id": "a", "at": _day(2, 1)},
            {"action": "user.signed_in", "actor": "t", "user_id": "b", "at": _day(2, 23)},
            {"action": "user.signin_failed", "actor": "t", "at": _day(2, 5)},
            {"action": "user.deleted", "actor": "t", "at": _day(2)},  # not counted
            {"action": "user.signed_in", "actor": "t", "user_id": "c", "at": _day(40)},
        ],
    )
    factories.record_events(
        app, other_tenant.id, [{"action": "user.signed_in", "actor": "t", "at": _day(2)}]
    )

    answer = client.get("/api/v2/stats/daily", headers=_key(tenant))

    assert answer.status_code == 200, answer.get_data(as_text=True)
    days = answer.get_json()
    assert len(days) == 30  # the default range: the last 30 days, today included
    assert days[-1]["date"] == f"{TODAY.isoformat()}T00:00:00.000Z"
    assert days[0]["date"].startswith((TODAY - timedelta(days=29)).isoformat())
    today, two_ago, empty = days[-1], days[-3], days[-2]
    assert (today["logins"], today["signups"], today["failed_logins"]) == (1, 1, 1)
    assert (two_ago["logins"], two_ago["signups"], two_ago["failed_logins"]) == (2, 0, 1)
    assert two_ago["created_at"] == _day(2, 1).isoformat().replace("+00:00", ".000Z")
    assert two_ago["updated_at"] == _day(2, 23).isoformat().replace("+00:00", ".000Z")
    assert empty == {
        "date": empty["date"],
        "logins": 0,
        "signups": 0,
        "leaked_passwords": 0,
        "failed_logins": 0,
        "updated_at": None,
        "created_at": None,
    }

    older = client.get(
        "/api/v2/stats/daily", query_string={"from": _ymd(45), "to": _ymd(35)}, headers=_key(tenant)
    ).get_json()
    assert len(older) == 11 and sum(day["logins"] for day in older) == 1

    active = client.get("/api/v2/stats/active-users", headers=_key(tenant))
    assert active.status_code == 200 and active.get_json() == 3  # alice, a, b (not c: 40 days)


@pytest.mark.parametrize(
    "query",
    [
        {"from": "2026-01-01"},
        {"to": "20261301"},
        {"from": _ymd(1), "to": _ymd(2)},
        {"from": _ymd(90)},
        {"from": _ymd(100), "to": _ymd(5)},
    ],
    ids=["not YYYYMMDD", "no such month", "from after to", "91 days", "96 days"],
)
def test_bad_ranges_are_400(client: FlaskClient, tenant: TenantHandle, query: dict) -> None:
    answer = client.get("/api/v2/stats/daily", query_string=query, headers=_key(tenant))
    assert_surface_error(answer, 400, "management", "invalid_query_string")


def test_ninety_days_is_the_longest_range(client: FlaskClient, tenant: TenantHandle) -> None:
    answer = client.get(
        "/api/v2/stats/daily", query_string={"from": _ymd(89)}, headers=_key(tenant)
    )
    assert answer.status_code == 200 and len(answer.get_json()) == 90


def test_stats_need_read_stats(app: Flask, client: FlaskClient, tenant: TenantHandle) -> None:
    audit_only = {"Authorization": f"Bearer {factories.make_key(app, tenant.id, ['read:audit'])}"}
    stats = {"Authorization": f"Bearer {factories.make_key(app, tenant.id, ['read:stats'])}"}
    for path in ("/api/v2/stats/daily", "/api/v2/stats/active-users"):
        assert_surface_error(
            client.get(path, headers=audit_only), 403, "management", "insufficient_scope"
        )
        assert client.get(path, headers=stats).status_code == 200
