"""The console's Webhooks and Connections pages over HTTP: an admin registers an endpoint
(its secret shown once), disables and enables it, rotates its secret, reads its
deliveries by status and page, replays one and deletes the endpoint; adds, changes and
deletes a connection whose client secret is never shown; refused input shows the form
again; a viewer is refused every action; another tenant's ids are 404 pages."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from app.core.tenancy import tenant_scope
from app.webhooks import service as webhook_service
from tests.console_support import csrf_of, post_form, shown_secret, signed_in_admin
from tests.factories import TenantHandle, make_application
from tests.webhooks.support import ROOT, quiet_message, register

RECEIVER = "http://127.0.0.1:9/hook"  # never contacted: registering does not call it
SECRET = "s3cret-never-shown"


def _endpoint(app: Flask, tenant_id: str, endpoint_id: str) -> dict:
    with app.app_context(), tenant_scope(tenant_id):
        endpoint = webhook_service.get_endpoint(endpoint_id)
        return {"enabled": endpoint.enabled, "url": endpoint.url}


def test_an_admin_manages_an_endpoint_and_reads_its_deliveries(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    signed_in_admin(app, client, tenant.id)
    bad = post_form(client, "/console/webhooks", {"url": "ftp://x", "event_types": "user.created"})
    html = bad.get_data(as_text=True)
    assert bad.status_code == 400 and 'id="url-error"' in html and 'value="ftp://x"' in html
    assert 'value="user.created" checked' in html

    made = post_form(
        client,
        "/console/webhooks",
        {"url": RECEIVER, "event_types": ["user.created", "user.deleted"]},
    )
    assert made.status_code == 200 and made.headers["Cache-Control"] == "no-store"
    secret = shown_secret(made.get_data(as_text=True))
    assert secret.startswith("whsec_")
    listed = client.get(f"/tenants/{tenant.id}/webhooks", headers=ROOT).get_json()
    (endpoint,) = listed
    assert endpoint["event_types"] == ["user.created", "user.deleted"]
    page_path = f"/console/webhooks/{endpoint['id']}"
    assert secret not in client.get(page_path).get_data(as_text=True)

    disabled = post_form(client, f"{page_path}/enabled", {"enabled": "false"}, page=page_path)
    assert disabled.status_code == 303
    assert _endpoint(app, tenant.id, endpoint["id"])["enabled"] is False
    assert "Enable the endpoint" in client.get(page_path).get_data(as_text=True)
    post_form(client, f"{page_path}/enabled", {"enabled": "true"}, page=page_path)
    assert _endpoint(app, tenant.id, endpoint["id"])["enabled"] is True

    rotated = post_form(client, f"{page_path}/rotate-secret", {}, page=f"{page_path}/rotate-secret")
    assert rotated.status_code == 200 and shown_secret(rotated.get_data(as_text=True)) != secret

    # 26 deliveries: a page of 25, newest first, then the oldest one on the next page.
    ids = [quiet_message(app, tenant.id, endpoint["id"]) for _ in range(26)]
    first = client.get(page_path).get_data(as_text=True)
    assert ids[-1] in first and ids[0] not in first and "Older deliveries" in first
    older_path = [part for part in first.split('"') if "cursor=" in part][0].replace("&amp;", "&")
    second = client.get(older_path).get_data(as_text=True)
    assert ids[0] in second and ids[-1] not in second and "Newest deliveries" in second
    failed = client.get(page_path, query_string={"status": "failed"}).get_data(as_text=True)
    assert "No delivery with this status" in failed
    pending = client.get(page_path, query_string={"status": "pending"}).get_data(as_text=True)
    assert ids[-1] in pending

    replayed = post_form(client, f"{page_path}/messages/{ids[0]}/replay", {}, page=page_path)
    assert replayed.status_code == 303
    assert "queued again" in client.get(replayed.headers["Location"]).get_data(as_text=True)

    deleted = post_form(client, f"{page_path}/delete", {}, page=f"{page_path}/delete")
    assert deleted.status_code == 303
    assert client.get(f"/tenants/{tenant.id}/webhooks", headers=ROOT).get_json() == []
    assert client.get(page_path).status_code == 404


def test_an_admin_adds_changes_and_deletes_a_connection_whose_secret_stays_hidden(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    signed_in_admin(app, client, tenant.id)
    web = make_application(app, tenant.id, name="Web")
    listed = client.get("/console/connections").get_data(as_text=True)
    assert "Username-Password-Authentication" in listed

    missing = post_form(
        client,
        "/console/connections",
        {"name": "corp", "strategy": "oidc", "options.client_id": "rp-1", "options.issuer": ""},
        page="/console/connections/new",
    )
    html = missing.get_data(as_text=True)
    assert missing.status_code == 400 and 'id="options-client_secret-error"' in html
    assert 'value="corp"' in html and 'value="rp-1"' in html

    made = post_form(
        client,
        "/console/connections",
        {
            "name": "corp",
            "strategy": "oidc",
            "display_name": "Corp SSO",
            "options.client_id": "rp-1",
            "options.client_secret": SECRET,
            "options.issuer": "https://login.corp.example",
            "enabled_clients": web.client_id,
        },
        page="/console/connections/new",
    )
    assert made.status_code == 303, made.get_data(as_text=True)
    path = made.headers["Location"].split("?")[0]
    page = client.get(path).get_data(as_text=True)
    assert SECRET not in page and "Stored (encrypted; never shown)" in page
    assert "https://login.corp.example" in page and "checked" in page

    saved = post_form(
        client,
        path,
        {
            "display_name": "Corp",
            "options.client_id": "rp-2",
            "options.issuer": "https://login.corp.example",
        },
    )
    assert saved.status_code == 303
    connection_id = path.rsplit("/", 1)[1]
    read = client.get(f"/api/v2/connections/{connection_id}", headers=tenant.headers).get_json()
    assert read["display_name"] == "Corp" and read["options"]["client_id"] == "rp-2"
    assert read["enabled_clients"] == []
    assert SECRET not in client.get(path).get_data(as_text=True)

    bad = post_form(client, path, {"options.client_id": "rp-2", "options.issuer": "not a url"})
    assert bad.status_code == 400 and 'id="options-issuer-error"' in bad.get_data(as_text=True)

    deleted = post_form(client, f"{path}/delete", {}, page=f"{path}/delete")
    assert deleted.status_code == 303
    assert client.get(path).status_code == 404


def test_the_database_connection_is_shown_but_not_changed(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    signed_in_admin(app, client, tenant.id)
    listed = client.get("/console/connections").get_data(as_text=True)
    path = [part for part in listed.split('"') if part.startswith("/console/connections/con_")][0]
    page = client.get(path).get_data(as_text=True)
    assert "password database" in page and 'name="options.client_id"' not in page
    answer = post_form(client, f"{path}/delete", {}, page="/console/connections")
    assert answer.status_code == 400


def test_a_viewer_is_refused_every_webhook_and_connection_action(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    signed_in_admin(app, client, tenant.id, "console:viewer")
    endpoint = register(client, tenant.id, RECEIVER)
    message = quiet_message(app, tenant.id, endpoint["id"])
    hooks = client.get("/console/webhooks").get_data(as_text=True)
    assert RECEIVER in hooks and "Register an endpoint" not in hooks
    page = client.get(f"/console/webhooks/{endpoint['id']}").get_data(as_text=True)
    assert message in page and "Replay" not in page and "Disable" not in page
    connections = client.get("/console/connections").get_data(as_text=True)
    assert "Add a connection" not in connections
    csrf = csrf_from(client)

    base = f"/console/webhooks/{endpoint['id']}"
    for path in (
        "/console/webhooks",
        f"{base}/enabled",
        f"{base}/test",
        f"{base}/rotate-secret",
        f"{base}/delete",
        f"{base}/messages/{message}/replay",
        "/console/connections",
    ):
        answer = client.post(path, data={"csrf_token": csrf, "url": RECEIVER, "enabled": "false"})
        assert answer.status_code == 403, path
    for path in (f"{base}/rotate-secret", f"{base}/delete", "/console/connections/new"):
        assert client.get(path).status_code == 403, path
    assert _endpoint(app, tenant.id, endpoint["id"])["enabled"] is True


def csrf_from(client: FlaskClient) -> str:
    return csrf_of(client.get("/console").get_data(as_text=True))


def test_another_tenants_endpoints_and_connections_are_404_pages(
    app: Flask, client: FlaskClient, tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    signed_in_admin(app, client, tenant.id)
    theirs = register(client, other_tenant.id, RECEIVER)
    message = quiet_message(app, other_tenant.id, theirs["id"])
    made = client.post(
        "/api/v2/connections",
        json={
            "name": "corp",
            "strategy": "oidc",
            "options": {
                "client_id": "x",
                "client_secret": "y",
                "issuer": "https://login.corp.example",
            },
        },
        headers=other_tenant.headers,
    )
    assert made.status_code == 201, made.get_data(as_text=True)
    connection = f"/console/connections/{made.get_json()['id']}"
    base = f"/console/webhooks/{theirs['id']}"
    csrf = csrf_from(client)
    for path in (
        base,
        f"{base}/rotate-secret",
        f"{base}/delete",
        connection,
        f"{connection}/delete",
    ):
        assert client.get(path).status_code == 404, path
    for path in (
        f"{base}/enabled",
        f"{base}/test",
        f"{base}/rotate-secret",
        f"{base}/delete",
        f"{base}/messages/{message}/replay",
        connection,
        f"{connection}/delete",
    ):
        answer = client.post(
            path, data={"csrf_token": csrf, "enabled": "false", "options.client_id": "z"}
        )
        assert answer.status_code == 404, path
    assert client.get(
        f"/tenants/{other_tenant.id}/webhooks/{theirs['id']}", headers=ROOT
    ).get_json()["enabled"]
