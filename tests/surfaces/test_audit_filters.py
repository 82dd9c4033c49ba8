"""The audit log's filters (user, action, actor, time) with cursor paging over the
filtered set, and its CSV export: the same filtered set, formula-safe cells, capped with a
cursor to continue; bad times are 400; another tenant's events never show."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.api.csv_text import safe_cell
from tests import factories
from tests.factories import TenantHandle, assert_error

NOW = datetime.now(UTC).replace(microsecond=0)


def _at(hours_ago: int) -> datetime:
    return NOW - timedelta(hours=hours_ago)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture()
def events(app: Flask, tenant: TenantHandle, other_tenant: TenantHandle) -> list[str]:
    """Six events over six hours by two actors, newest last; one in another tenant."""
    factories.record_events(
        app, other_tenant.id, [{"action": "user.deleted", "actor": "api_key:x", "at": _at(1)}]
    )
    return factories.record_events(
        app,
        tenant.id,
        [
            {
                "action": "user.deleted" if hour % 2 else "user.created",
                "actor": "api_key:ops" if hour < 3 else "user:admin",
                "user_id": f"u{hour}",
                "at": _at(6 - hour),
            }
            for hour in range(6)
        ],
    )


def _list(client: FlaskClient, tenant: TenantHandle, **query: object) -> dict:
    answer = client.get("/audit-events", query_string=query, headers=tenant.headers)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()


def test_filters_by_actor_and_time_and_pages_through_them(
    client: FlaskClient, tenant: TenantHandle, events: list[str]
) -> None:
    by_actor = _list(client, tenant, actor="user:admin")["items"]
    assert [e["user_id"] for e in by_actor] == ["u5", "u4", "u3"]

    window = {"from": _iso(_at(5)), "to": _iso(_at(1))}  # from inclusive, to exclusive
    assert [e["user_id"] for e in _list(client, tenant, **window)["items"]] == [
        "u4",
        "u3",
        "u2",
        "u1",
    ]
    both = _list(client, tenant, actor="api_key:ops", action="user.deleted", **window)
    assert [e["user_id"] for e in both["items"]] == ["u1"]

    first = _list(client, tenant, limit=2, **window)
    assert [e["user_id"] for e in first["items"]] == ["u4", "u3"]
    second = _list(client, tenant, limit=2, cursor=first["next_cursor"], **window)
    assert [e["user_id"] for e in second["items"]] == ["u2", "u1"]
    assert second["next_cursor"] is None


def test_a_time_without_a_zone_is_utc(
    client: FlaskClient, tenant: TenantHandle, events: list[str]
) -> None:
    naive = _at(1).replace(tzinfo=None).isoformat()
    assert [e["user_id"] for e in _list(client, tenant, **{"from": naive})["items"]] == ["u5"]


@pytest.mark.parametrize(
    "query",
    [
        {"from": "yesterday"},
        {"to": "2026-13-01T00:00:00Z"},
        {"from": "2026-02-02", "to": "2026-02-01"},
    ],
    ids=["not a time", "no such month", "from after to"],
)
def test_bad_times_are_400(client: FlaskClient, tenant: TenantHandle, query: dict) -> None:
    for path in ("/audit-events", "/audit-events.csv"):
        answer = client.get(path, query_string=query, headers=tenant.headers)
        assert answer.status_code == 400, answer.get_data(as_text=True)
        assert answer.get_json()["error"] in ("validation_failed", "invalid_range")


def test_the_csv_export_is_the_filtered_set(
    client: FlaskClient, tenant: TenantHandle, events: list[str]
) -> None:
    answer = client.get(
        "/audit-events.csv", query_string={"actor": "api_key:ops"}, headers=tenant.headers
    )

    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.mimetype == "text/csv"
    assert "attachment" in answer.headers["Content-Disposition"]
    assert "X-Next-Cursor" not in answer.headers
    rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
    assert [row["user_id"] for row in rows] == ["u2", "u1", "u0"]
    assert list(rows[0]) == [
        "id",
        "action",
        "actor",
        "user_id",
        "target",
        "ip",
        "created_at",
        "data",
    ]
    assert rows[0]["created_at"].endswith("Z") and rows[0]["data"] == "{}"
    assert {row["id"] for row in rows} <= set(events)


def test_csv_cells_cannot_become_formulas(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    factories.record_events(
        app,
        tenant.id,
        [
            {
                "action": "user.created",
                "actor": '=HYPERLINK("http://evil")',
                "user_id": "@SUM(A1)",
                "target": "+1",
                "data": {"method": "-2"},
            }
        ],
    )
    text = client.get("/audit-events.csv", headers=tenant.headers).get_data(as_text=True)
    (row,) = csv.DictReader(io.StringIO(text))
    assert row["actor"] == '\'=HYPERLINK("http://evil")'
    assert row["user_id"] == "'@SUM(A1)" and row["target"] == "'+1"
    assert row["data"] == '{"method":"-2"}'  # JSON text starts with {: never a formula


def test_safe_cell() -> None:
    assert safe_cell(None) == ""
    assert safe_cell("plain") == "plain"
    for dangerous in ("=1+2", "+1", "-1", "@x", "\tx", "\rx"):
        assert safe_cell(dangerous) == "'" + dangerous
    assert safe_cell(5) == "5"
    assert safe_cell(-5) == "'-5"  # a negative number would also be read as a formula
    assert safe_cell({"b": 1, "a": [2]}) == '{"a":[2],"b":1}'


def test_the_csv_export_is_capped_with_a_cursor_to_continue(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    factories.record_events(
        app,
        tenant.id,
        [
            {"action": "user.created", "actor": "t", "user_id": f"u{n}", "at": _at(n)}
            for n in range(5)
        ],
    )
    # 10,000 rows at most (the default); `limit` asks for fewer.
    first = client.get("/audit-events.csv", query_string={"limit": 3}, headers=tenant.headers)
    assert [r["user_id"] for r in csv.DictReader(io.StringIO(first.get_data(as_text=True)))] == [
        "u0",
        "u1",
        "u2",
    ]
    cursor = first.headers["X-Next-Cursor"]
    rest = client.get("/audit-events.csv", query_string={"cursor": cursor}, headers=tenant.headers)
    too_many = {"limit": 10_001}
    assert (
        client.get("/audit-events.csv", query_string=too_many, headers=tenant.headers).status_code
        == 400
    )
    assert [r["user_id"] for r in csv.DictReader(io.StringIO(rest.get_data(as_text=True)))] == [
        "u3",
        "u4",
    ]
    assert "X-Next-Cursor" not in rest.headers


def test_the_export_needs_read_audit(app: Flask, client: FlaskClient, tenant: TenantHandle) -> None:
    narrow = {"X-APIKEY": factories.make_key(app, tenant.id, ["read:users"])}
    assert_error(client.get("/audit-events.csv", headers=narrow), 403, "insufficient_scope")
    assert_error(client.get("/audit-events.csv"), 401, "missing_credentials")
