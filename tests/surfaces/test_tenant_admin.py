"""Operators list and delete tenants: `GET /tenants` (paged), `DELETE /tenants/{id}` with
everything the tenant owns, `flask tenants list|delete|deleted` (issue 17, finding 8)."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.core.db import db
from app.core.tenancy import all_tenants
from tests import factories
from tests.factories import PASSWORD, TenantHandle


def _rows_of(app: Flask, tenant_id: str) -> dict[str, int]:
    """How many rows each tenant-owned table holds for `tenant_id`."""
    with app.app_context(), all_tenants():
        return {
            table.name: db.session.scalar(
                select(func.count()).select_from(table).where(table.c.tenant_id == tenant_id)
            )
            for table in db.metadata.sorted_tables
            if "tenant_id" in table.c
        }


def _populate(app: Flask, client: FlaskClient, tenant: TenantHandle) -> None:
    """A user with a password, a secret, a property, a refresh token and audit events."""
    factories.make_user(app, tenant.id, user_id="u1", email="u1@example.com", password=PASSWORD)
    tokens = factories.sign_in(client, tenant.id, "u1@example.com", PASSWORD)
    bearer = factories.bearer(tokens["access_token"])
    assert (
        client.post(
            "/user/u1/secrets", json={"name": "s", "value": "v"}, headers=bearer
        ).status_code
        == 201
    )
    assert (
        client.post(
            "/user/u1/properties", json={"name": "p", "value": 1}, headers=bearer
        ).status_code
        == 201
    )


def test_tenants_are_listed_in_pages(client: FlaskClient, root_headers: dict[str, str]) -> None:
    made = [
        client.post("/tenants", json={"name": f"t{i}"}, headers=root_headers).get_json()
        for i in range(3)
    ]
    first = client.get("/tenants?limit=2", headers=root_headers)
    assert first.status_code == 200
    page = first.get_json()
    assert page["items"] == made[:2]  # the same shape as GET /tenants/{id}
    second = client.get(f"/tenants?limit=2&cursor={page['next_cursor']}", headers=root_headers)
    assert second.get_json() == {"items": made[2:], "next_cursor": None}


def test_tenant_listing_needs_the_root_key(client: FlaskClient, tenant: TenantHandle) -> None:
    body = factories.assert_error(
        client.get("/tenants", headers=tenant.headers), 403, "root_key_required"
    )
    assert body["error"] == "root_key_required"
    assert (
        factories.assert_error(client.get("/tenants"), 401, "missing_credentials")["error"]
        == "missing_credentials"
    )
    for query in ("limit=0", "limit=101", "cursor=%%%", "sort=name"):
        bad = client.get(f"/tenants?{query}", headers={"X-APIKEY": tenant.key})
        assert bad.status_code == 403  # the credential is checked before the query


def test_bad_listing_queries_are_400(client: FlaskClient, root_headers: dict[str, str]) -> None:
    for query in ("limit=0", "limit=101", "limit=x", "cursor=not-a-cursor"):
        expected = "invalid_cursor" if "cursor" in query else "validation_failed"
        factories.assert_error(client.get(f"/tenants?{query}", headers=root_headers), 400, expected)


def test_deleting_a_tenant_removes_everything_it_owns_and_is_audited(
    app: Flask,
    client: FlaskClient,
    root_headers: dict[str, str],
    tenant: TenantHandle,
    other_tenant: TenantHandle,
) -> None:
    _populate(app, client, tenant)
    _populate(app, client, other_tenant)
    owned = _rows_of(app, tenant.id)
    assert owned["user_account"] == 1 and owned["secret"] == 1 and owned["audit_event"] >= 1
    untouched = _rows_of(app, other_tenant.id)

    gone = client.delete(f"/tenants/{tenant.id}", headers=root_headers)
    assert gone.status_code == 204 and gone.get_data() == b""
    assert set(_rows_of(app, tenant.id).values()) == {0}
    assert _rows_of(app, other_tenant.id) == untouched
    factories.assert_error(
        client.get(f"/tenants/{tenant.id}", headers=root_headers), 404, "tenant_not_found"
    )
    assert client.get("/auth/user?userId=u1", headers=tenant.headers).status_code == 401
    assert client.get("/auth/user?userId=u1", headers=other_tenant.headers).status_code == 200
    again = factories.assert_error(
        client.delete(f"/tenants/{tenant.id}", headers=root_headers),
        404,
        "tenant_not_found",
    )
    assert again["error"] == "tenant_not_found"

    # The tenant's own audit events went with it; the deletion is a platform event.
    record = app.test_cli_runner().invoke(args=["tenants", "deleted"])
    assert record.exit_code == 0, record.output
    assert tenant.id in record.output and "acme" in record.output and "by root" in record.output
    from app.audit import service as audit_service

    with app.app_context():
        [event] = audit_service.list_platform_events().items
        assert event.action == "tenant.deleted" and event.target == tenant.id
        assert event.data["rows"]["user_account"] == 1 and event.data["rows"]["secret"] == 1


def test_only_the_root_key_deletes_a_tenant(
    client: FlaskClient, tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    body = factories.assert_error(
        client.delete(f"/tenants/{tenant.id}", headers=tenant.headers),
        403,
        "root_key_required",
    )
    assert body["error"] == "root_key_required"
    factories.assert_error(
        client.delete(f"/tenants/{other_tenant.id}", headers=tenant.headers),
        403,
        "root_key_required",
    )
    assert client.get("/auth/user?userId=x", headers=tenant.headers).status_code == 200


def test_cli_lists_and_deletes_tenants_in_batches(
    app: Flask, client: FlaskClient, tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    _populate(app, client, tenant)
    runner = app.test_cli_runner()
    listed = runner.invoke(args=["tenants", "list"])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.strip().splitlines()
    assert [line.split()[0] for line in lines] == [tenant.id, other_tenant.id]
    assert lines[0].endswith("acme") and lines[1].endswith("globex")

    refused = runner.invoke(args=["tenants", "delete", tenant.id], input="n\n")
    assert refused.exit_code == 1 and _rows_of(app, tenant.id)["user_account"] == 1
    deleted = runner.invoke(args=["tenants", "delete", tenant.id, "--yes", "--batch-size", "1"])
    assert deleted.exit_code == 0, deleted.output
    assert f"deleted {tenant.id}" in deleted.output
    assert set(_rows_of(app, tenant.id).values()) == {0}
    unknown = runner.invoke(args=["tenants", "delete", tenant.id, "--yes"])
    assert unknown.exit_code == 1 and "Tenant not found" in unknown.output
    assert runner.invoke(args=["tenants", "list"]).output.split()[0] == other_tenant.id
