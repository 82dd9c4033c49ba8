"""Registered applications on the platform surface: who may manage them (root key, or a
tenant key with `manage:applications`), what they may register (redirect URIs, exact
origins), the secret shown once, and another tenant's ids answering 404."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.applications.models import Application
from app.core import security
from app.core.db import db
from app.core.tenancy import tenant_scope
from tests import factories
from tests.factories import TenantHandle, assert_error
from tests.oauth_support import PASSWORD, bearer, sign_in

BODY = {
    "name": "Acme Web",
    "type": "public",
    "redirect_uris": ["https://app.example.com/callback", "http://localhost:3000/cb"],
    "allowed_origins": ["https://App.Example.com:443", "http://localhost:3000"],
    "post_logout_redirect_uris": ["https://app.example.com/"],
}


def _path(tenant_id: str, client_id: str | None = None) -> str:
    base = f"/tenants/{tenant_id}/applications"
    return f"{base}/{client_id}" if client_id else base


def test_root_registers_reads_updates_and_deletes_an_application(
    client: FlaskClient, root_headers: dict, tenant: TenantHandle
) -> None:
    created = client.post(_path(tenant.id), json=BODY, headers=root_headers)

    assert created.status_code == 201, created.get_data(as_text=True)
    app_doc = created.get_json()
    client_id = app_doc["client_id"]
    assert app_doc["client_secret"] is None
    assert app_doc["allowed_origins"] == ["https://app.example.com", "http://localhost:3000"]
    assert app_doc["redirect_uris"] == BODY["redirect_uris"]
    assert app_doc["created_at"].endswith("Z")

    listed = client.get(_path(tenant.id), headers=root_headers).get_json()
    assert [a["client_id"] for a in listed] == [client_id]
    assert "client_secret" not in listed[0]

    patched = client.patch(
        _path(tenant.id, client_id),
        json={"name": "Acme", "allowed_origins": ["https://new.example.com"]},
        headers=root_headers,
    )
    assert patched.status_code == 200
    assert patched.get_json()["name"] == "Acme"
    assert patched.get_json()["allowed_origins"] == ["https://new.example.com"]
    assert patched.get_json()["redirect_uris"] == BODY["redirect_uris"]

    assert client.delete(_path(tenant.id, client_id), headers=root_headers).status_code == 204
    gone = client.get(_path(tenant.id, client_id), headers=root_headers)
    assert assert_error(gone, 404, "application_not_found")["error"] == "application_not_found"


def test_a_confidential_apps_secret_is_shown_once_and_stored_hashed(
    app: Flask, client: FlaskClient, root_headers: dict, tenant: TenantHandle
) -> None:
    created = client.post(
        _path(tenant.id), json={**BODY, "type": "confidential"}, headers=root_headers
    )

    secret = created.get_json()["client_secret"]
    assert isinstance(secret, str) and len(secret) >= 40
    read = client.get(_path(tenant.id, created.get_json()["client_id"]), headers=root_headers)
    assert secret not in read.get_data(as_text=True)
    with app.app_context(), tenant_scope(tenant.id):
        row = db.session.scalar(select(Application))
        assert row.secret_hash == security.sha256_hex(secret)
        assert secret not in repr(vars(row))


def test_a_tenant_key_with_manage_applications_may_manage_its_own_only(
    app: Flask, client: FlaskClient, tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    manager = {"X-APIKEY": factories.make_key(app, tenant.id, ["manage:applications"])}
    created = client.post(_path(tenant.id), json=BODY, headers=manager)
    assert created.status_code == 201

    # Another tenant's key: the tenant is not its to see.
    elsewhere = client.get(_path(tenant.id), headers=other_tenant.headers)
    assert assert_error(elsewhere, 404, "tenant_not_found")["error"] == "tenant_not_found"
    # Its own tenant, without the scope.
    narrow = {"X-APIKEY": factories.make_key(app, tenant.id, ["read:users"])}
    refused = client.post(_path(tenant.id), json=BODY, headers=narrow)
    assert assert_error(refused, 403, "insufficient_scope")["error"] == "insufficient_scope"
    # The default key holds `*`.
    assert client.get(_path(tenant.id), headers=tenant.headers).status_code == 200


def test_a_users_token_may_not_manage_applications(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    factories.make_user(
        app, tenant.id, username="admin", password=PASSWORD, permissions_group="admin"
    )
    token = sign_in(client, tenant.id, "admin")["access_token"]
    answer = client.get(_path(tenant.id), headers=bearer(token))
    assert assert_error(answer, 403, "api_key_required")["error"] == "api_key_required"
    assert (
        assert_error(client.get(_path(tenant.id)), 401, "missing_credentials")["error"]
        == "missing_credentials"
    )


def test_another_tenants_application_is_not_found(
    app: Flask, client: FlaskClient, root_headers: dict, tenant: TenantHandle, other_tenant
) -> None:
    theirs = factories.make_application(app, other_tenant.id)
    for method, body in (("get", None), ("patch", {"name": "x"}), ("delete", None)):
        answer = getattr(client, method)(
            _path(tenant.id, theirs.client_id), json=body, headers=tenant.headers
        )
        assert (
            assert_error(answer, 404, "application_not_found")["error"] == "application_not_found"
        )
    mine = client.get(_path(other_tenant.id, theirs.client_id), headers=root_headers)
    assert mine.status_code == 200 and mine.get_json()["name"] == "Web app"


def test_an_unknown_tenant_is_not_found(client: FlaskClient, root_headers: dict) -> None:
    answer = client.post(_path("0" * 32), json=BODY, headers=root_headers)
    assert assert_error(answer, 404, "tenant_not_found")["error"] == "tenant_not_found"


BAD_BODIES = {
    "no name": {"type": "public"},
    "unknown type": {**BODY, "type": "spa"},
    "unknown field": {**BODY, "client_secret": "mine"},
    "http redirect": {**BODY, "redirect_uris": ["http://app.example.com/cb"]},
    "fragment": {**BODY, "redirect_uris": ["https://app.example.com/cb#x"]},
    "empty fragment": {**BODY, "redirect_uris": ["http://127.0.0.1/cb#"]},
    "empty userinfo": {**BODY, "redirect_uris": ["http://@127.0.0.1/cb"]},
    "userinfo": {**BODY, "redirect_uris": ["https://user@app.example.com/cb"]},
    "port zero": {**BODY, "redirect_uris": ["http://127.0.0.1:0/cb"]},
    "zero-padded port": {**BODY, "redirect_uris": ["http://127.0.0.1:080/cb"]},
    "empty port": {**BODY, "redirect_uris": ["https://app.example.com:/cb"]},
    "relative": {**BODY, "redirect_uris": ["/callback"]},
    "scheme without dot": {**BODY, "redirect_uris": ["myapp:/callback"]},
    "wildcard origin": {**BODY, "allowed_origins": ["*"]},
    "wildcard subdomain": {**BODY, "allowed_origins": ["https://*.example.com"]},
    "origin with path": {**BODY, "allowed_origins": ["https://app.example.com/x"]},
    "null origin": {**BODY, "allowed_origins": ["null"]},
    "logout over http": {**BODY, "post_logout_redirect_uris": ["http://app.example.com/"]},
    "too many": {**BODY, "redirect_uris": [f"https://a.example.com/{i}" for i in range(21)]},
    "huge uri": {**BODY, "redirect_uris": ["https://a.example.com/" + "x" * 2100]},
    "not a list": {**BODY, "allowed_origins": "https://app.example.com"},
}


# Refused by the schema (shape, size) rather than by the service's URI and origin rules.
SCHEMA_REFUSALS = {"no name", "unknown type", "unknown field", "too many", "huge uri", "not a list"}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (body, "validation_failed" if name in SCHEMA_REFUSALS else "invalid_application")
        for name, body in BAD_BODIES.items()
    ],
    ids=BAD_BODIES.keys(),
)
def test_bad_registrations_are_400_and_store_nothing(
    app: Flask, client: FlaskClient, root_headers: dict, tenant: TenantHandle, body: dict, code: str
) -> None:
    answer = client.post(_path(tenant.id), json=body, headers=root_headers)

    error = assert_error(answer, 400, code)
    assert error["fields"], error
    assert client.get(_path(tenant.id), headers=root_headers).get_json() == []


def test_the_type_cannot_change(
    app: Flask, client: FlaskClient, root_headers: dict, tenant: TenantHandle
) -> None:
    handle = factories.make_application(app, tenant.id)
    answer = client.patch(
        _path(tenant.id, handle.client_id), json={"type": "confidential"}, headers=root_headers
    )
    assert assert_error(answer, 400, "validation_failed")["fields"] == {"type": ["Unknown field."]}
