"""Rotating a confidential application's client secret on the platform surface: the new
secret is shown once and works at /oauth/token, the old one is refused from then on; a
public app has none (409); audited; another tenant's app answers 404."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from tests import factories
from tests.factories import TenantHandle, assert_error
from tests.oauth_support import app_password_grant, assert_oauth_error, audit_events, make_alice


def _rotate(tenant_id: str, client_id: str) -> str:
    return f"/tenants/{tenant_id}/applications/{client_id}/rotate-secret"


def test_the_new_secret_works_and_the_old_one_is_refused(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    make_alice(app, tenant.id)
    backend = factories.make_application(app, tenant.id, type="confidential")
    old = backend.secret or ""
    assert app_password_grant(client, backend.client_id, old).status_code == 200

    rotated = client.post(_rotate(tenant.id, backend.client_id), headers=tenant.headers)

    assert rotated.status_code == 200, rotated.get_data(as_text=True)
    body = rotated.get_json()
    new = body["client_secret"]
    assert isinstance(new, str) and len(new) >= 40 and new != old
    assert body["client_id"] == backend.client_id and body["type"] == "confidential"
    assert_oauth_error(app_password_grant(client, backend.client_id, old), 401, "invalid_client")
    assert app_password_grant(client, backend.client_id, new).status_code == 200
    read = client.get(
        f"/tenants/{tenant.id}/applications/{backend.client_id}", headers=tenant.headers
    )
    assert new not in read.get_data(as_text=True) and "client_secret" not in read.get_json()

    (event,) = audit_events(client, tenant.headers, "application.secret_rotated")
    assert event["target"] == backend.client_id
    assert event["data"] == {
        "client_id": backend.client_id,
        "name": "Web app",
        "type": "confidential",
    }
    assert new not in str(event) and old not in str(event)


def test_a_public_app_has_no_secret_to_rotate(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    spa = factories.make_application(app, tenant.id)
    answer = client.post(_rotate(tenant.id, spa.client_id), headers=tenant.headers)
    assert_error(answer, 409, "application_has_no_secret")
    assert audit_events(client, tenant.headers, "application.secret_rotated") == []


def test_who_may_rotate(
    app: Flask,
    client: FlaskClient,
    root_headers: dict,
    tenant: TenantHandle,
    other_tenant: TenantHandle,
) -> None:
    backend = factories.make_application(app, tenant.id, type="confidential")
    path = _rotate(tenant.id, backend.client_id)
    narrow = {"X-APIKEY": factories.make_key(app, tenant.id, ["read:users"])}
    assert_error(client.post(path, headers=narrow), 403, "insufficient_scope")
    assert_error(client.post(path, headers=other_tenant.headers), 404, "tenant_not_found")
    # Another tenant's app through that tenant's own path: unknown there.
    elsewhere = _rotate(other_tenant.id, backend.client_id)
    assert_error(client.post(elsewhere, headers=other_tenant.headers), 404, "application_not_found")
    unknown = _rotate(tenant.id, "0" * 32)
    assert_error(client.post(unknown, headers=tenant.headers), 404, "application_not_found")
    manager = {"X-APIKEY": factories.make_key(app, tenant.id, ["manage:applications"])}
    assert client.post(path, headers=manager).status_code == 200
    assert client.post(path, headers=root_headers).status_code == 200
