"""Platform surface: tenants and API keys with the root key, health and readiness, docs."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient

from tests.factories import TenantHandle
from tests.oauth_support import audit_events


def test_create_tenant_with_settings(client: FlaskClient, root_headers: dict[str, str]) -> None:
    settings = {
        "allow_user_token_management": True,
        "email_from": "noreply@example.com",
        "postmark_server_token": "pm-secret-token",
        "password_reset_hosts": ["app.example.com", "localhost:3000"],
        "password_min_length": 12,
        "weak_password_hashes": "reset",
        "access_token_ttl": 600,
        "refresh_token_ttl": 86400,
        "signup_enabled": True,
        "password_policy": {"block_common": False},
        "signup_fields": ["name"],
        "mfa_required": True,
        "console_require_mfa": True,
        "branding": {"display_name": "Acme", "primary_color": "#0a5f3c"},
    }
    r = client.post("/tenants", json={"name": "Acme", "settings": settings}, headers=root_headers)
    assert r.status_code == 201
    body = r.get_json()
    assert set(body) == {"id", "name", "settings", "created_at"}
    assert body["name"] == "Acme"
    assert body["settings"] == {
        "allow_user_token_management": True,
        "email_from": "noreply@example.com",
        "postmark_server_token_set": True,
        "password_reset_hosts": ["app.example.com", "localhost:3000"],
        "password_min_length": 12,
        "weak_password_hashes": "reset",
        "access_token_ttl": 600,
        "refresh_token_ttl": 86400,
        "signup_enabled": True,
        "password_policy": {"min_length": 12, "block_common": False},
        "signup_fields": ["name"],
        "mfa_required": True,
        "console_require_mfa": True,
        "branding": {
            "display_name": "Acme",
            "logo_url": None,
            "primary_color": "#0a5f3c",
            "support_url": None,
        },
    }
    assert "pm-secret-token" not in r.get_data(as_text=True)
    again = client.get(f"/tenants/{body['id']}", headers=root_headers)
    assert again.status_code == 200
    assert again.get_json() == body


def test_tenant_defaults(client: FlaskClient, root_headers: dict[str, str]) -> None:
    body = client.post("/tenants", json={"name": "Plain"}, headers=root_headers).get_json()
    assert body["settings"] == {
        "allow_user_token_management": False,
        "email_from": None,
        "postmark_server_token_set": False,
        "password_reset_hosts": [],
        "password_min_length": 8,
        "weak_password_hashes": "accept",
        "access_token_ttl": None,
        "refresh_token_ttl": None,
        "signup_enabled": False,
        "password_policy": {"min_length": 8, "block_common": True},
        "signup_fields": [],
        "mfa_required": False,
        "console_require_mfa": False,
        "branding": {
            "display_name": None,
            "logo_url": None,
            "primary_color": None,
            "support_url": None,
        },
    }


def test_postmark_token_is_stored_encrypted(
    app: Flask, client: FlaskClient, root_headers: dict[str, str]
) -> None:
    from app.core.db import db
    from app.tenants import service as tenant_service
    from app.tenants.models import Tenant

    body = client.post(
        "/tenants",
        json={"name": "Enc", "settings": {"postmark_server_token": "pm-plain-value"}},
        headers=root_headers,
    ).get_json()
    with app.app_context():
        tenant = db.session.get(Tenant, body["id"])
        assert tenant is not None
        assert "pm-plain-value" not in (tenant.postmark_server_token_encrypted or "")
        assert tenant_service.postmark_server_token(tenant) == "pm-plain-value"


def test_patch_tenant_merges_settings(client: FlaskClient, root_headers: dict[str, str]) -> None:
    created = client.post(
        "/tenants",
        json={
            "name": "Old",
            "settings": {"password_min_length": 10, "email_from": "a@example.com"},
        },
        headers=root_headers,
    ).get_json()
    r = client.patch(
        f"/tenants/{created['id']}",
        json={"name": "New", "settings": {"allow_user_token_management": True}},
        headers=root_headers,
    )
    assert r.status_code == 200
    body = r.get_json()
    assert body["name"] == "New"
    assert body["settings"]["allow_user_token_management"] is True
    assert body["settings"]["password_min_length"] == 10
    assert body["settings"]["email_from"] == "a@example.com"
    cleared = client.patch(
        f"/tenants/{created['id']}",
        json={"settings": {"email_from": None}},
        headers=root_headers,
    ).get_json()
    assert cleared["settings"]["email_from"] is None
    assert cleared["settings"]["password_min_length"] == 10


def test_tenant_input_errors(client: FlaskClient, root_headers: dict[str, str]) -> None:
    cases = [
        {},
        {"name": ""},
        {"name": 5},
        {"name": "x" * 256},
        {"name": "ok", "settings": {"unknown_setting": 1}},
        {"name": "ok", "settings": {"password_min_length": "long"}},
        {"name": "ok", "settings": {"password_min_length": 0}},
        {"name": "ok", "settings": {"email_from": "not-an-address"}},
        {"name": "ok", "settings": {"password_reset_hosts": ["https://evil/"]}},
        {"name": "ok", "settings": {"access_token_ttl": 10**9}},
        {"name": "ok", "settings": {"weak_password_hashes": "ignore"}},
        {"name": "ok", "settings": {"weak_password_hashes": None}},
    ]
    for payload in cases:
        r = client.post("/tenants", json=payload, headers=root_headers)
        assert r.status_code == 400, payload
        assert r.get_json()["error"] == "validation_failed"
        assert r.get_json()["fields"]
    # Nothing was created by the rejected requests.
    from app.core.db import db
    from app.tenants.models import Tenant

    with client.application.app_context():
        assert db.session.query(Tenant).count() == 0


def test_unknown_tenant_is_404(client: FlaskClient, root_headers: dict[str, str]) -> None:
    assert client.get("/tenants/nope", headers=root_headers).status_code == 404
    assert (
        client.patch("/tenants/nope", json={"name": "x"}, headers=root_headers).status_code == 404
    )
    r = client.post("/tenants/nope/api-keys", json={}, headers=root_headers)
    assert r.status_code == 404
    assert r.get_json()["error"] == "tenant_not_found"
    assert client.get("/tenants/nope/api-keys", headers=root_headers).status_code == 404


def test_platform_needs_the_root_key(client: FlaskClient, tenant: TenantHandle) -> None:
    assert client.post("/tenants", json={"name": "x"}).status_code == 401
    r = client.post("/tenants", json={"name": "x"}, headers=tenant.headers)
    assert r.status_code == 403
    assert r.get_json()["error"] == "root_key_required"
    assert client.get(f"/tenants/{tenant.id}", headers=tenant.headers).status_code == 403
    assert client.get(f"/tenants/{tenant.id}/api-keys", headers=tenant.headers).status_code == 403
    wrong_root = {"X-APIKEY": "gh_root_not-the-root-key"}
    assert client.post("/tenants", json={"name": "x"}, headers=wrong_root).status_code == 401


def test_api_key_lifecycle(
    client: FlaskClient, root_headers: dict[str, str], tenant: TenantHandle
) -> None:
    r = client.post(
        f"/tenants/{tenant.id}/api-keys",
        json={"name": "backend", "scopes": ["read:users", "create:users"]},
        headers=root_headers,
    )
    assert r.status_code == 201
    issued = r.get_json()
    assert set(issued) == {"id", "key", "name", "scopes", "created_at"}
    assert re.fullmatch(rf"gh_{issued['id']}_[A-Za-z0-9_-]+", issued["key"])
    assert issued["scopes"] == ["create:users", "read:users"]
    headers = {"X-APIKEY": issued["key"], "X-Tenant-ID": tenant.id}
    assert client.get("/auth/user?userId=nobody", headers=headers).status_code == 200

    listed = client.get(f"/tenants/{tenant.id}/api-keys", headers=root_headers).get_json()
    by_id = {k["id"]: k for k in listed}
    assert issued["id"] in by_id and tenant.key_id in by_id
    assert "key" not in by_id[issued["id"]]
    assert issued["key"] not in str(listed)
    # Use is buffered in Redis (no database write per request) until the periodic flush.
    assert by_id[issued["id"]]["last_used_at"] is None
    flushed = client.application.test_cli_runner().invoke(args=["run-periodic", "flush-activity"])
    assert flushed.exit_code == 0, flushed.output
    listed = client.get(f"/tenants/{tenant.id}/api-keys", headers=root_headers).get_json()
    by_id = {k["id"]: k for k in listed}
    assert by_id[issued["id"]]["last_used_at"] is not None
    assert by_id[issued["id"]]["revoked_at"] is None

    assert (
        client.delete(
            f"/tenants/{tenant.id}/api-keys/{issued['id']}", headers=root_headers
        ).status_code
        == 204
    )
    r = client.get("/auth/user?userId=nobody", headers=headers)
    assert r.status_code == 401
    listed = client.get(f"/tenants/{tenant.id}/api-keys", headers=root_headers).get_json()
    assert {k["id"]: k for k in listed}[issued["id"]]["revoked_at"] is not None
    # Revoking again is harmless; an unknown key is 404.
    assert (
        client.delete(
            f"/tenants/{tenant.id}/api-keys/{issued['id']}", headers=root_headers
        ).status_code
        == 204
    )
    assert (
        client.delete(f"/tenants/{tenant.id}/api-keys/unknown", headers=root_headers).status_code
        == 404
    )


def test_api_key_of_other_tenant_cannot_be_revoked_through_this_one(
    client: FlaskClient,
    root_headers: dict[str, str],
    tenant: TenantHandle,
    other_tenant: TenantHandle,
) -> None:
    r = client.delete(f"/tenants/{tenant.id}/api-keys/{other_tenant.key_id}", headers=root_headers)
    assert r.status_code == 404
    still = client.get("/auth/user?userId=x", headers=other_tenant.headers)
    assert still.status_code == 200


def test_api_key_input_errors(
    client: FlaskClient, root_headers: dict[str, str], tenant: TenantHandle
) -> None:
    for payload in (
        {"scopes": []},
        {"scopes": ["not a scope"]},
        {"scopes": "read:users"},
        {"x": 1},
    ):
        r = client.post(f"/tenants/{tenant.id}/api-keys", json=payload, headers=root_headers)
        assert r.status_code == 400, payload


def test_api_key_hash_only_is_stored(app: Flask, tenant: TenantHandle) -> None:
    from app.core.db import db
    from app.core.tenancy import all_tenants
    from app.tenants.models import ApiKey

    with app.app_context(), all_tenants():
        row = db.session.get(ApiKey, tenant.key_id)
        assert row is not None
        assert tenant.key not in row.key_hash
        assert len(row.key_hash) == 64


def test_healthz(client: FlaskClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.get_json() == {"status": "ok"}


def test_readyz_reports_database_broker_and_key_ring(client: FlaskClient) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.get_json() == {
        "status": "ok",
        "checks": {"database": "ok", "broker": "ok", "keyring": "ok"},
    }


def test_readyz_is_503_naming_the_broker_when_it_is_down(
    database_url: str, tmp_path: object
) -> None:
    from pathlib import Path

    from app import create_app
    from tests.conftest import make_config

    app = create_app(
        make_config(database_url, Path(str(tmp_path)), REDIS_URL="redis://127.0.0.1:1/0")
    )
    r = app.test_client().get("/readyz")
    assert r.status_code == 503
    body = r.get_json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"].startswith("down")


def test_readyz_is_503_naming_the_database_when_it_is_down(tmp_path: object) -> None:
    from pathlib import Path

    from app import create_app
    from tests.conftest import make_config

    app = create_app(make_config("postgresql://postgres@127.0.0.1:1/none", Path(str(tmp_path))))
    r = app.test_client().get("/readyz")
    assert r.status_code == 503
    assert r.get_json()["checks"]["database"].startswith("down")


def test_openapi_and_docs_served_without_external_hosts(client: FlaskClient) -> None:
    spec = client.get("/openapi.json")
    assert spec.status_code == 200
    paths = spec.get_json()["paths"]
    assert "/tenants" in paths and "/user/{user_id}" in paths and "/auth/user" in paths
    docs = client.get("/docs")
    assert docs.status_code == 200
    html = docs.get_data(as_text=True)
    assert "SwaggerUIBundle" in html
    referenced = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert referenced, "the page should load its assets"
    for url in referenced:
        assert not re.match(r"^(https?:)?//", url), f"external asset {url}"
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.data) > 1000


def test_api_key_creation_and_revocation_are_audited_once(
    client: FlaskClient, root_headers: dict[str, str], tenant: TenantHandle
) -> None:
    issued = client.post(
        f"/tenants/{tenant.id}/api-keys",
        json={"name": "audited", "scopes": ["read:users"]},
        headers=root_headers,
    ).get_json()
    for _ in range(2):  # the second revocation changes nothing, so records nothing
        revoked = client.delete(
            f"/tenants/{tenant.id}/api-keys/{issued['id']}", headers=root_headers
        )
        assert revoked.status_code == 204
    for action in ("api_key.created", "api_key.revoked"):
        # (the fixture's own key, made by the service with no actor, is "system")
        events = [e for e in audit_events(client, tenant.headers, action) if e["actor"] != "system"]
        assert [(e["target"], e["actor"]) for e in events] == [(issued["id"], "root")], action
        assert events[0]["data"] == {"name": "audited", "scopes": ["read:users"]}
        assert issued["key"] not in str(events)


def test_a_settings_change_through_the_api_is_audited(
    client: FlaskClient, root_headers: dict[str, str], tenant: TenantHandle
) -> None:
    for _ in range(2):  # the second PATCH changes nothing, so records nothing
        r = client.patch(
            f"/tenants/{tenant.id}",
            json={"settings": {"password_min_length": 12}},
            headers=root_headers,
        )
        assert r.status_code == 200
    [event] = audit_events(client, tenant.headers, "tenant.settings_changed")
    assert (event["actor"], event["target"]) == ("root", tenant.id)
    # (password_policy is the view that holds the minimum length too)
    assert "password_min_length" in event["data"]["changed"]
