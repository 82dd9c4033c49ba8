"""The console's Applications and API keys pages over HTTP: an admin registers, edits,
rotates and deletes an application (the secret shown once, on a no-store page; the old
secret refused at /oauth/token, the new one taken), creates a key with chosen scopes and
revokes it; refused input shows the form again with the field's message; a viewer sees
the lists without actions and the server refuses its forms; another tenant's ids are
404 pages."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from tests import factories
from tests.console_support import csrf_of, post_form, shown_secret, signed_in_admin
from tests.factories import AppHandle, TenantHandle, assert_error, assert_surface_error
from tests.oauth_support import (
    PASSWORD,
    app_password_grant,
    assert_oauth_error,
    audit_events,
)


def test_an_admin_registers_edits_rotates_and_deletes_an_application(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    alice = signed_in_admin(app, client, tenant.id)
    listed = client.get("/console/applications")
    assert listed.status_code == 200 and "Gatehouse console" in listed.get_data(as_text=True)

    refused = post_form(
        client,
        "/console/applications",
        {
            "name": "Backend",
            "type": "confidential",
            "redirect_uris": "https://app.example.com/cb\nhttp://evil.example.com/cb",
            "allowed_origins": "https://app.example.com",
        },
    )
    html = refused.get_data(as_text=True)
    assert refused.status_code == 400
    # Shown again, nothing lost, the message tied to its field.
    assert 'value="Backend"' in html and "http://evil.example.com/cb" in html
    assert 'aria-describedby="redirect_uris-hint redirect_uris-error"' in html
    assert 'id="redirect_uris-error"' in html and "must use https" in html

    made = post_form(
        client,
        "/console/applications",
        {
            "name": "Backend",
            "type": "confidential",
            "redirect_uris": "https://app.example.com/cb\n\n",
            "allowed_origins": "https://app.example.com",
        },
    )
    assert made.status_code == 200 and made.headers["Cache-Control"] == "no-store"
    secret = shown_secret(made.get_data(as_text=True))
    (backend,) = [
        a
        for a in client.get(f"/tenants/{tenant.id}/applications", headers=tenant.headers).get_json()
        if a["name"] == "Backend"
    ]
    assert backend["redirect_uris"] == ["https://app.example.com/cb"]
    assert backend["allowed_origins"] == ["https://app.example.com"]
    client_id = backend["client_id"]
    assert app_password_grant(client, client_id, secret).status_code == 200
    page = client.get(f"/console/applications/{client_id}").get_data(as_text=True)
    assert secret not in page and "Rotate the client secret" in page

    saved = post_form(
        client,
        f"/console/applications/{client_id}",
        {
            "redirect_uris": "https://app.example.com/cb\nhttps://app.example.com/cb2",
            "allowed_origins": "",
        },
    )
    assert saved.status_code == 303
    assert "was saved" in client.get(saved.headers["Location"]).get_data(as_text=True)
    read = client.get(f"/tenants/{tenant.id}/applications/{client_id}", headers=tenant.headers)
    assert read.get_json()["redirect_uris"] == [
        "https://app.example.com/cb",
        "https://app.example.com/cb2",
    ]
    assert read.get_json()["allowed_origins"] == []

    confirm = client.get(f"/console/applications/{client_id}/rotate-secret")
    assert confirm.status_code == 200 and "stops working" in confirm.get_data(as_text=True)
    rotated = post_form(client, f"/console/applications/{client_id}/rotate-secret", {})
    new = shown_secret(rotated.get_data(as_text=True))
    assert new != secret and rotated.headers["Cache-Control"] == "no-store"
    assert_oauth_error(app_password_grant(client, client_id, secret), 401, "invalid_client")
    assert app_password_grant(client, client_id, new).status_code == 200
    (event,) = audit_events(client, tenant.headers, "application.secret_rotated")
    assert event["actor"] == f"user:{alice}" and event["target"] == client_id
    (created,) = [
        e
        for e in audit_events(client, tenant.headers, "application.created")
        if e["target"] == client_id
    ]
    assert created["actor"] == f"user:{alice}"

    deleted = post_form(
        client,
        f"/console/applications/{client_id}/delete",
        {},
        page=f"/console/applications/{client_id}/delete",
    )
    assert deleted.status_code == 303
    assert "was deleted" in client.get(deleted.headers["Location"]).get_data(as_text=True)
    gone = client.get(f"/tenants/{tenant.id}/applications/{client_id}", headers=tenant.headers)
    assert_error(gone, 404, "application_not_found")


def test_a_public_application_has_no_secret_to_rotate(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    signed_in_admin(app, client, tenant.id)
    spa = factories.make_application(app, tenant.id)
    page = client.get(f"/console/applications/{spa.client_id}").get_data(as_text=True)
    assert "Rotate the client secret" not in page
    answer = post_form(
        client,
        f"/console/applications/{spa.client_id}/rotate-secret",
        {},
        page="/console/applications",
    )
    assert answer.status_code == 409 and "no client secret" in answer.get_data(as_text=True)


def test_an_admin_creates_a_key_with_chosen_scopes_and_revokes_it(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    signed_in_admin(app, client, tenant.id)
    form = client.get("/console/api-keys").get_data(as_text=True)
    assert 'value="read:users"' in form and "read any user of the tenant" in form
    assert 'value="manage:webhooks"' in form and 'value="*"' in form

    none_picked = post_form(client, "/console/api-keys", {"name": "reporting"})
    html = none_picked.get_data(as_text=True)
    assert none_picked.status_code == 400 and "Pick at least one scope." in html
    assert 'id="scopes-error"' in html and 'value="reporting"' in html
    unknown = post_form(client, "/console/api-keys", {"name": "x", "scopes": ["read:everything"]})
    assert unknown.status_code == 400

    made = client.post(
        "/console/api-keys",
        data={
            "csrf_token": csrf_of(form),
            "name": "reporting",
            "scopes": ["read:users", "read:audit"],
        },
    )
    assert made.status_code == 201 and made.headers["Cache-Control"] == "no-store"
    key = shown_secret(made.get_data(as_text=True))
    headers = {"X-APIKEY": key, "X-Tenant-ID": tenant.id}
    assert client.get("/api/v2/users", headers=headers).status_code == 200
    needs_other = client.post(
        "/api/v2/users",
        json={
            "connection": "Username-Password-Authentication",
            "email": "c@example.com",
            "password": PASSWORD,
        },
        headers=headers,
    )
    assert_surface_error(needs_other, 403, "management", "insufficient_scope")

    listed = client.get("/console/api-keys").get_data(as_text=True)
    assert key not in listed and "reporting" in listed and "read:audit" in listed
    key_id = key.split("_")[1]
    confirm = client.get(f"/console/api-keys/{key_id}/revoke")
    assert confirm.status_code == 200 and "reporting" in confirm.get_data(as_text=True)
    revoked = client.post(
        f"/console/api-keys/{key_id}/revoke",
        data={"csrf_token": csrf_of(confirm.get_data(as_text=True))},
    )
    assert revoked.status_code == 303
    assert "Revoked" in client.get("/console/api-keys").get_data(as_text=True)
    refused = client.get("/api/v2/users", headers=headers)
    assert refused.status_code == 401 and refused.get_json()["statusCode"] == 401


def test_a_viewer_sees_apps_and_keys_without_actions_and_is_refused(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    signed_in_admin(app, client, tenant.id, "console:viewer")
    backend = factories.make_application(app, tenant.id, type="confidential", name="Backend")
    apps = client.get("/console/applications").get_data(as_text=True)
    assert "Backend" in apps and "Register an application" not in apps
    page = client.get(f"/console/applications/{backend.client_id}").get_data(as_text=True)
    assert (
        "Rotate" not in page
        and "Delete" not in page
        and '<form method="post" action="/console/app' not in page
    )
    keys = client.get("/console/api-keys").get_data(as_text=True)
    assert "Create an API key" not in keys and "/revoke" not in keys
    csrf = csrf_of(keys)

    refused = {
        "/console/applications": {"name": "X", "type": "public"},
        f"/console/applications/{backend.client_id}": {"redirect_uris": "https://x.example.com/cb"},
        f"/console/applications/{backend.client_id}/rotate-secret": {},
        f"/console/applications/{backend.client_id}/delete": {},
        "/console/api-keys": {"name": "x", "scopes": "*"},
        f"/console/api-keys/{tenant.key_id}/revoke": {},
    }
    for path, data in refused.items():
        answer = client.post(path, data={"csrf_token": csrf, **data})
        assert answer.status_code == 403, path
        assert "does not allow" in answer.get_data(as_text=True)
    for path in (
        f"/console/applications/{backend.client_id}/rotate-secret",
        f"/console/applications/{backend.client_id}/delete",
        f"/console/api-keys/{tenant.key_id}/revoke",
    ):
        assert client.get(path).status_code == 403, path
    assert _still_works(client, tenant, backend)


def _still_works(client: FlaskClient, tenant: TenantHandle, backend: AppHandle) -> bool:
    read = client.get(
        f"/tenants/{tenant.id}/applications/{backend.client_id}", headers=tenant.headers
    )
    return (
        read.status_code == 200
        and client.get("/api/v2/users", headers=tenant.headers).status_code == 200
    )


def test_another_tenants_applications_and_keys_are_404_pages(
    app: Flask, client: FlaskClient, tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    signed_in_admin(app, client, tenant.id)
    theirs = factories.make_application(app, other_tenant.id, type="confidential")
    csrf = csrf_of(client.get("/console/applications").get_data(as_text=True))
    for path in (
        f"/console/applications/{theirs.client_id}",
        f"/console/applications/{theirs.client_id}/rotate-secret",
        f"/console/applications/{theirs.client_id}/delete",
        f"/console/api-keys/{other_tenant.key_id}/revoke",
    ):
        assert client.get(path).status_code == 404, path
        answer = client.post(path, data={"csrf_token": csrf, "redirect_uris": ""})
        assert answer.status_code == 404, path
        assert "not found" in answer.get_data(as_text=True)
    assert client.get("/api/v2/users", headers=other_tenant.headers).status_code == 200
    read = client.get(
        f"/tenants/{other_tenant.id}/applications/{theirs.client_id}", headers=other_tenant.headers
    )
    assert read.status_code == 200
