"""The console-members API on the platform surface (root key, or a tenant key holding
`manage:console`), its audit trail, and `flask console grant`."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from app.applications import service as application_service
from app.console import service as console_service
from app.core.tenancy import tenant_scope
from tests import factories
from tests.factories import TenantHandle, assert_error
from tests.oauth_support import audit_events, make_alice

MEMBERS = "/tenants/{}/console-members"


def test_the_root_key_grants_lists_changes_and_revokes_a_role(
    app: Flask, client: FlaskClient, tenant: TenantHandle, root_headers: dict[str, str]
) -> None:
    alice = make_alice(app, tenant.id)

    granted = client.post(
        MEMBERS.format(tenant.id),
        json={"user_id": alice, "role": "console:support"},
        headers=root_headers,
    )
    assert granted.status_code == 201, granted.get_json()
    body = granted.get_json()
    assert body["user_id"] == alice and body["email"] == "alice@example.com"
    assert body["role"] == "console:support" and body["granted_by"] == "root"
    assert body["created_at"].endswith("Z")

    changed = client.post(
        MEMBERS.format(tenant.id),
        json={"user_id": alice, "role": "console:admin"},
        headers=root_headers,
    )
    assert changed.status_code == 201
    listed = client.get(MEMBERS.format(tenant.id), headers=root_headers)
    assert [(m["user_id"], m["role"]) for m in listed.get_json()] == [(alice, "console:admin")]

    revoked = client.delete(f"{MEMBERS.format(tenant.id)}/{alice}", headers=root_headers)
    assert revoked.status_code == 204
    assert client.get(MEMBERS.format(tenant.id), headers=root_headers).get_json() == []
    again = client.delete(f"{MEMBERS.format(tenant.id)}/{alice}", headers=root_headers)
    assert_error(again, 404, "console_member_not_found")

    headers = {**root_headers, "X-Tenant-ID": tenant.id}
    granted_events = audit_events(client, headers, "console.member_granted")
    assert [e["data"]["role"] for e in granted_events] == ["console:admin", "console:support"]
    assert {e["user_id"] for e in granted_events} == {alice}
    revoked_events = audit_events(client, headers, "console.member_revoked")
    assert [(e["user_id"], e["actor"]) for e in revoked_events] == [(alice, "root")]


def test_the_first_grant_registers_the_console_client_once(
    app: Flask, client: FlaskClient, tenant: TenantHandle, root_headers: dict[str, str]
) -> None:
    alice = make_alice(app, tenant.id)
    for role in ("console:viewer", "console:admin"):
        client.post(
            MEMBERS.format(tenant.id), json={"user_id": alice, "role": role}, headers=root_headers
        )

    with app.app_context(), tenant_scope(tenant.id):
        apps = application_service.list_applications(tenant_id=tenant.id)
        assert [(a.name, a.type, a.redirect_uris) for a in apps] == [
            ("Gatehouse console", "public", ["http://gatehouse.test/console/callback"])
        ]
        assert sorted(apps[0].permitted_scopes) == ["email", "openid", "profile"]
        assert console_service.ensure_console_application(tenant_id=tenant.id).id == apps[0].id


def test_a_tenant_key_needs_manage_console_and_its_own_tenant(
    app: Flask,
    client: FlaskClient,
    tenant: TenantHandle,
    other_tenant: TenantHandle,
) -> None:
    alice = make_alice(app, tenant.id)
    scoped = {"X-APIKEY": factories.make_key(app, tenant.id, ["manage:console"])}
    unscoped = {"X-APIKEY": factories.make_key(app, tenant.id, ["read:users"])}
    body = {"user_id": alice, "role": "console:viewer"}

    assert client.post(MEMBERS.format(tenant.id), json=body, headers=scoped).status_code == 201
    assert_error(
        client.post(MEMBERS.format(tenant.id), json=body, headers=unscoped),
        403,
        "insufficient_scope",
    )
    assert_error(client.get(MEMBERS.format(tenant.id), headers=unscoped), 403, "insufficient_scope")
    # Another tenant's key, and another tenant's user: as if they did not exist.
    foreign = {"X-APIKEY": other_tenant.key}
    assert_error(client.get(MEMBERS.format(tenant.id), headers=foreign), 404, "tenant_not_found")
    bob = factories.make_user(app, other_tenant.id, user_id="bob-1", email="bob@example.com")
    stranger = client.post(
        MEMBERS.format(tenant.id), json={"user_id": bob, "role": "console:viewer"}, headers=scoped
    )
    assert_error(stranger, 404, "user_not_found")
    assert_error(
        client.delete(f"{MEMBERS.format(other_tenant.id)}/{bob}", headers=scoped),
        404,
        "tenant_not_found",
    )


def test_a_bad_role_is_a_400_in_the_platform_dialect(
    app: Flask, client: FlaskClient, tenant: TenantHandle, root_headers: dict[str, str]
) -> None:
    alice = make_alice(app, tenant.id)
    for role in ("admin", "console:owner", ""):
        answer = client.post(
            MEMBERS.format(tenant.id), json={"user_id": alice, "role": role}, headers=root_headers
        )
        assert answer.status_code == 400
        assert "role" in str(answer.get_json()), answer.get_json()
    assert client.get(MEMBERS.format(tenant.id), headers=root_headers).get_json() == []


def test_deleting_the_user_deletes_the_membership(
    app: Flask, client: FlaskClient, tenant: TenantHandle, root_headers: dict[str, str]
) -> None:
    alice = make_alice(app, tenant.id)
    client.post(
        MEMBERS.format(tenant.id),
        json={"user_id": alice, "role": "console:admin"},
        headers=root_headers,
    )
    assert client.delete(f"/api/v2/users/{alice}", headers=tenant.headers).status_code == 204
    assert client.get(MEMBERS.format(tenant.id), headers=root_headers).get_json() == []


def test_the_tenant_setting_console_require_mfa(
    client: FlaskClient, tenant: TenantHandle, root_headers: dict[str, str]
) -> None:
    read = client.get(f"/tenants/{tenant.id}", headers=root_headers).get_json()
    assert read["settings"]["console_require_mfa"] is False
    patched = client.patch(
        f"/tenants/{tenant.id}",
        json={"settings": {"console_require_mfa": True}},
        headers=root_headers,
    )
    assert patched.status_code == 200
    assert patched.get_json()["settings"]["console_require_mfa"] is True
    bad = client.patch(
        f"/tenants/{tenant.id}",
        json={"settings": {"console_require_mfa": "yes"}},
        headers=root_headers,
    )
    assert bad.status_code == 400


def test_flask_console_grant(
    app: Flask, client: FlaskClient, tenant: TenantHandle, root_headers: dict[str, str]
) -> None:
    alice = make_alice(app, tenant.id)
    runner = app.test_cli_runner()

    result = runner.invoke(args=["console", "grant", "alice@example.com"])
    assert result.exit_code == 0, result.output
    assert f"http://gatehouse.test/console/?tenant={tenant.id}" in result.output
    result = runner.invoke(
        args=["console", "grant", "ALICE@example.com", "--tenant", tenant.id, "--role", "viewer"]
    )
    assert result.exit_code == 0, result.output
    listed = client.get(MEMBERS.format(tenant.id), headers=root_headers).get_json()
    assert [(m["user_id"], m["role"], m["granted_by"]) for m in listed] == [
        (alice, "console:viewer", "cli")
    ]

    unknown = runner.invoke(args=["console", "grant", "nobody@example.com"])
    assert unknown.exit_code != 0 and "No user" in unknown.output
    factories.make_tenant(app, "globex")
    several = runner.invoke(args=["console", "grant", "alice@example.com"])
    assert several.exit_code != 0 and "--tenant" in several.output
