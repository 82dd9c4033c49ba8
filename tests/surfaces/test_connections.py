"""Auth0's Connections API for real connections (issue 27): the official auth0-python SDK
creating, listing, reading, changing and deleting them over HTTP; each strategy's option
rules; the client secret stored encrypted, re-encrypted by key rotation and never answered;
bad input, scopes, tenant isolation, and the database connection that cannot be changed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from auth0.management.core.api_error import ApiError
from sqlalchemy import text

from app.connections import secrets as connection_secrets
from app.connections import service as connection_service
from app.core.db import db
from app.core.tenancy import tenant_scope
from tests import factories
from tests.oauth_support import audit_events

CONNECTIONS = "/api/v2/connections"
DATABASE = "Username-Password-Authentication"
SECRET = "s3cr3t-upstream-client-secret-0123456789"
OIDC = {
    "discovery_url": "https://idp.example.com/.well-known/openid-configuration",
    "client_id": "gatehouse-rp",
    "client_secret": SECRET,
}
OIDC_SECRETLESS = {"client_id": "gh", "client_secret": SECRET}
OAUTH2 = {
    "client_id": "rp",
    "client_secret": SECRET,
    "scope": "profile",
    "authorizationURL": "https://oauth.example.com/authorize",
    "tokenURL": "https://oauth.example.com/token",
    "userinfoURL": "https://oauth.example.com/me",
    "profile_map": {"user_id": "id", "email": "contact.email", "email_verified": "verified"},
}


@pytest.fixture(scope="module")
def base_url(app) -> Iterator[str]:
    with factories.serve(app) as url:
        yield url


def auth(tenant: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant.key}"}


def create(client: Any, tenant: Any, **body: Any) -> Any:
    body.setdefault("name", "corp")
    body.setdefault("strategy", "oidc")
    body.setdefault("options", dict(OIDC))
    return client.post(CONNECTIONS, json=body, headers=auth(tenant))


def created(client: Any, tenant: Any, **body: Any) -> dict[str, Any]:
    response = create(client, tenant, **body)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def management_error(response: Any, status: int, code: str) -> dict:
    return factories.assert_surface_error(response, status, "management", code)


def stored_secret(app: Any, tenant_id: str, connection_id: str) -> tuple[str, str | None]:
    """The raw column and the decrypted secret of a stored connection."""
    with app.app_context(), tenant_scope(tenant_id):
        raw = db.session.execute(
            text("SELECT client_secret_encrypted FROM connection WHERE id = :id"),
            {"id": connection_id},
        ).scalar_one()
        connection = connection_service.get_connection(connection_id)
        return raw, connection_secrets.client_secret(connection)


# --- the SDK, over real HTTP


def test_sdk_creates_lists_gets_updates_and_deletes(app, base_url, tenant):
    web = factories.make_application(app, tenant.id)
    sdk = factories.auth0_client(base_url, tenant.key)
    made = sdk.connections.create(
        name="corp-sso",
        strategy="oidc",
        display_name="Corp SSO",
        options={**OIDC, "scopes": "openid email"},
        enabled_clients=[web.client_id],
    )
    assert made.id.startswith("con_") and len(made.id) == 20
    assert (made.name, made.strategy, made.display_name) == ("corp-sso", "oidc", "Corp SSO")
    assert made.enabled_clients == [web.client_id] and made.realms == ["corp-sso"]
    assert made.is_domain_connection is False
    options = made.options
    assert options["scopes"] == "openid email" and options["type"] == "back_channel"
    assert "client_secret" not in options

    listed = list(sdk.connections.list())
    assert [(c.name, c.strategy) for c in listed] == [(DATABASE, "auth0"), ("corp-sso", "oidc")]
    assert [c.name for c in sdk.connections.list(strategy="oidc")] == ["corp-sso"]
    assert [c.name for c in sdk.connections.list(name="corp-sso")] == ["corp-sso"]
    got = sdk.connections.get(made.id)
    assert (got.id, got.display_name, got.enabled_clients) == (made.id, "Corp SSO", [web.client_id])

    changed = sdk.connections.update(made.id, display_name="Corporate", enabled_clients=[])
    assert (changed.display_name, changed.enabled_clients) == ("Corporate", [])
    # Options are replaced as a whole; the stored secret stays when they carry none.
    moved = {"issuer": "https://login.corp.example", "client_id": "rp-2"}
    changed = sdk.connections.update(made.id, options=moved)
    options = changed.options
    assert options["issuer"] == "https://login.corp.example" and "discovery_url" not in options
    assert stored_secret(app, tenant.id, made.id)[1] == SECRET

    sdk.connections.delete(made.id)
    with pytest.raises(ApiError) as caught:
        sdk.connections.get(made.id)
    assert caught.value.status_code == 404 and caught.value.body["errorCode"] == (
        "inexistent_connection"
    )
    assert [c.name for c in sdk.connections.list()] == [DATABASE]


def test_sdk_checkpoint_paging_follows_next(app, base_url, tenant):
    sdk = factories.auth0_client(base_url, tenant.key)
    for number in range(3):
        sdk.connections.create(name=f"idp-{number}", strategy="github", options=OIDC_SECRETLESS)
    names = [c.name for c in sdk.connections.list(take=2)]
    assert names == [DATABASE, "idp-0", "idp-1", "idp-2"]


# --- the secret


def test_the_secret_is_never_answered_and_is_stored_encrypted(app, client, tenant):
    body = created(client, tenant)
    answers = [
        create(client, tenant, name="second"),
        client.get(CONNECTIONS, headers=auth(tenant)),
        client.get(f"{CONNECTIONS}?include_totals=true", headers=auth(tenant)),
        client.get(f"{CONNECTIONS}?from={body['id']}&take=5", headers=auth(tenant)),
        client.get(f"{CONNECTIONS}/{body['id']}", headers=auth(tenant)),
        client.patch(
            f"{CONNECTIONS}/{body['id']}",
            json={"options": {**OIDC, "client_secret": SECRET + "-2"}},
            headers=auth(tenant),
        ),
    ]
    for response in answers:
        assert response.status_code in (200, 201), response.get_data(as_text=True)
        assert SECRET not in response.get_data(as_text=True)
        assert "client_secret" not in response.get_data(as_text=True)
    raw, secret = stored_secret(app, tenant.id, body["id"])
    assert secret == SECRET + "-2" and SECRET not in raw


def test_key_rotation_re_encrypts_the_secret(deployment):
    old_key, new_key = factories.new_encryption_key(), factories.new_encryption_key()
    old = deployment(ENCRYPTION_KEYS=old_key)
    tenant = factories.make_tenant(old, "rotating")
    body = created(old.test_client(), tenant)
    old_raw, _ = stored_secret(old, tenant.id, body["id"])

    both = deployment(ENCRYPTION_KEYS=f"{new_key},{old_key}")
    rotated = both.test_cli_runner().invoke(args=["keys", "rotate-encryption"])
    assert rotated.exit_code == 0, rotated.output
    assert "connection client secrets 1" in rotated.output

    new_only = deployment(ENCRYPTION_KEYS=new_key)
    raw, secret = stored_secret(new_only, tenant.id, body["id"])
    assert secret == SECRET and raw != old_raw and SECRET not in raw


# --- each strategy's options


def test_presets_need_only_the_client_and_take_an_override(client, tenant):
    issuers = {
        "google-oauth2": "https://accounts.google.com",
        "windowslive": "https://login.microsoftonline.com/common/v2.0",
        "apple": "https://appleid.apple.com",
    }
    for strategy, issuer in issuers.items():
        body = created(client, tenant, name=strategy, strategy=strategy, options=OIDC_SECRETLESS)
        assert body["options"] == {
            "client_id": "gh",
            "issuer": issuer,
            "scopes": "openid profile email",
            "type": "back_channel",
        }
    local = "http://127.0.0.1:9/.well-known/openid-configuration"
    body = created(
        client,
        tenant,
        name="local-google",
        strategy="google-oauth2",
        options={**OIDC_SECRETLESS, "discovery_url": local},
    )
    assert body["options"]["discovery_url"] == local and "issuer" not in body["options"]


def test_github_defaults_and_overrides(client, tenant):
    body = created(client, tenant, name="gh", strategy="github", options=OIDC_SECRETLESS)
    assert body["options"] == {
        "client_id": "gh",
        "scope": "read:user user:email",
        "authorizationURL": "https://github.com/login/oauth/authorize",
        "tokenURL": "https://github.com/login/oauth/access_token",
        "userinfoURL": "https://api.github.com/user",
    }
    local = {**OIDC_SECRETLESS, "userinfoURL": "http://127.0.0.1:9/api/user"}
    body = created(client, tenant, name="gh-local", strategy="github", options=local)
    assert body["options"]["userinfoURL"] == "http://127.0.0.1:9/api/user"
    assert body["options"]["tokenURL"] == "https://github.com/login/oauth/access_token"


def test_oauth2_keeps_its_declarative_profile_map(client, tenant):
    body = created(client, tenant, name="generic", strategy="oauth2", options=OAUTH2)
    assert body["options"]["profile_map"] == OAUTH2["profile_map"]
    assert body["options"]["userinfoURL"] == "https://oauth.example.com/me"


def _without(options: dict[str, Any], key: str) -> dict[str, Any]:
    return {name: value for name, value in options.items() if name != key}


BAD_OPTIONS = [
    ("oidc", _without(OIDC, "discovery_url"), "discovery_url"),
    ("oidc", _without(OIDC, "client_id"), "client_id"),
    ("oidc", _without(OIDC, "client_secret"), "client_secret"),
    ("oidc", {**OIDC, "scopes": "profile email"}, "scopes"),
    ("oidc", {**OIDC, "scopes": "openid  email"}, "scopes"),
    ("oidc", {**OIDC, "type": "front_channel"}, "type"),
    ("oidc", {**OIDC, "discovery_url": "ftp://idp.example.com/x"}, "discovery_url"),
    ("oidc", {**OIDC, "discovery_url": "https://u:p@idp.example.com/x"}, "discovery_url"),
    ("oidc", {**OIDC, "issuer": "not a url"}, "issuer"),
    ("oidc", {**OIDC, "profile_map": {"user_id": "sub"}}, "profile_map"),
    ("google-oauth2", {**OIDC_SECRETLESS, "tokenURL": "https://x.example"}, "tokenURL"),
    ("apple", {"client_id": "x"}, "client_secret"),
    ("oauth2", _without(OAUTH2, "userinfoURL"), "userinfoURL"),
    ("oauth2", _without(OAUTH2, "tokenURL"), "tokenURL"),
    ("oauth2", _without(OAUTH2, "profile_map"), "profile_map"),
    ("oauth2", {**OAUTH2, "profile_map": {"email": "email"}}, "profile_map"),
    ("oauth2", {**OAUTH2, "profile_map": {"user_id": "id", "role": "r"}}, "profile_map.role"),
    ("oauth2", {**OAUTH2, "profile_map": {"user_id": "a b"}}, "profile_map.user_id"),
    ("oauth2", {**OAUTH2, "scopes": "openid"}, "scopes"),
    ("github", {**OIDC_SECRETLESS, "profile_map": {"user_id": "id"}}, "profile_map"),
    ("github", {**OIDC_SECRETLESS, "scope": 'read:user "x"'}, "scope"),
    ("github", {**OIDC_SECRETLESS, "authorizationURL": "javascript:x"}, "authorizationURL"),
]


@pytest.mark.parametrize(("strategy", "options", "field"), BAD_OPTIONS)
def test_each_strategy_refuses_bad_options(client, tenant, strategy, options, field):
    response = create(client, tenant, strategy=strategy, options=options)
    body = management_error(response, 400, "invalid_body")
    assert f"'options.{field}'" in body["message"]
    assert client.get(CONNECTIONS, headers=auth(tenant)).get_json()[1:] == []


def test_https_only_unless_federation_allows_http(app, client, tenant, monkeypatch):
    local = {**OIDC, "discovery_url": "http://127.0.0.1:9/.well-known/openid-configuration"}
    monkeypatch.setitem(app.config, "FEDERATION_ALLOW_HTTP", False)
    refused = create(client, tenant, options=local)
    assert (
        "must be an absolute https URL" in management_error(refused, 400, "invalid_body")["message"]
    )
    assert create(client, tenant, options=OIDC).status_code == 201
    monkeypatch.setitem(app.config, "FEDERATION_ALLOW_HTTP", True)
    assert create(client, tenant, name="local", options=local).status_code == 201


# --- names, clients, bad input


@pytest.mark.parametrize("name", [DATABASE, "", "a b", "x" * 129, "caf\u00e9", "a/b"])
def test_bad_or_reserved_names_are_refused(client, tenant, name):
    management_error(create(client, tenant, name=name), 400, "invalid_body")


def test_a_taken_name_is_409_but_another_tenant_may_use_it(client, tenant, other_tenant):
    created(client, tenant, name="Corp_SSO-1")
    management_error(create(client, tenant, name="Corp_SSO-1"), 409, "connection_conflict")
    assert create(client, other_tenant, name="Corp_SSO-1").status_code == 201


def test_enabled_clients_must_be_the_tenants_applications(app, client, tenant, other_tenant):
    mine = factories.make_application(app, tenant.id)
    theirs = factories.make_application(app, other_tenant.id)
    for clients in ([theirs.client_id], ["nope"]):
        refused = create(client, tenant, enabled_clients=clients)
        assert "'enabled_clients'" in management_error(refused, 400, "invalid_body")["message"]
    body = created(client, tenant, enabled_clients=[mine.client_id, mine.client_id])
    assert body["enabled_clients"] == [mine.client_id]
    patched = client.patch(
        f"{CONNECTIONS}/{body['id']}", json={"enabled_clients": ["nope"]}, headers=auth(tenant)
    )
    management_error(patched, 400, "invalid_body")


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "strategy": "oidc", "options": OIDC, "extra": 1},
        {"name": "x", "strategy": "oidc", "options": {**OIDC, "script": "return 1"}},
        {"name": "x", "strategy": "auth0", "options": OIDC},
        {"name": "x", "strategy": "samlp", "options": OIDC},
        {"name": 5, "strategy": "oidc", "options": OIDC},
        {"name": "x", "strategy": "oidc", "options": "discovery"},
        {"name": "x", "strategy": "oidc", "options": {**OIDC, "client_id": ["a"]}},
        {"name": "x", "strategy": "oidc", "options": OIDC, "enabled_clients": "app"},
        {"name": "x", "strategy": "oidc", "options": OIDC, "is_domain_connection": True},
        {"name": "x", "strategy": "oidc", "options": {**OIDC, "client_id": "a\x00b"}},
        {"name": "x", "strategy": "oidc", "options": {**OIDC, "client_secret": "s" * 5000}},
        {"name": "x", "strategy": "oidc", "options": {**OIDC, "scopes": "openid " * 200}},
        {"name": "x", "strategy": "oidc"},
        {"strategy": "oidc", "options": OIDC},
    ],
)
def test_bad_bodies_are_400(client, tenant, body):
    response = client.post(CONNECTIONS, json=body, headers=auth(tenant))
    management_error(response, 400, "invalid_body")
    assert client.get(CONNECTIONS, headers=auth(tenant)).get_json()[1:] == []


def test_patch_refuses_name_strategy_and_unknown_fields(client, tenant):
    connection = created(client, tenant)
    for body in ({"name": "other"}, {"strategy": "github"}, {"options": {"x": 1}}, []):
        response = client.patch(
            f"{CONNECTIONS}/{connection['id']}", json=body, headers=auth(tenant)
        )
        management_error(response, 400, "invalid_body")
    got = client.get(f"{CONNECTIONS}/{connection['id']}", headers=auth(tenant)).get_json()
    assert got == connection


# --- the database connection, scopes, tenants


def test_the_database_connection_is_listed_first_and_cannot_change(client, tenant):
    created(client, tenant)
    listed = client.get(CONNECTIONS, headers=auth(tenant)).get_json()
    assert [c["name"] for c in listed] == [DATABASE, "corp"]
    database = listed[0]
    got = client.get(f"{CONNECTIONS}/{database['id']}", headers=auth(tenant))
    assert got.status_code == 200 and got.get_json()["strategy"] == "auth0"
    url = f"{CONNECTIONS}/{database['id']}"
    for response in (
        client.patch(url, json={"display_name": "Passwords"}, headers=auth(tenant)),
        client.delete(url, headers=auth(tenant)),
    ):
        management_error(response, 400, "operation_not_supported")
    assert client.get(url, headers=auth(tenant)).get_json() == database


def test_list_paging_and_fields(client, tenant):
    ids = [created(client, tenant, name=f"c{n}")["id"] for n in range(3)]
    headers = auth(tenant)
    totals = client.get(f"{CONNECTIONS}?include_totals=true&per_page=2&page=1", headers=headers)
    page = totals.get_json()
    assert (page["start"], page["limit"], page["length"], page["total"]) == (2, 2, 2, 4)
    assert [c["id"] for c in page["connections"]] == ids[1:]
    first = client.get(f"{CONNECTIONS}?take=2&fields=id", headers=headers).get_json()
    assert first["next"] == ids[1] and all(set(c) == {"id"} for c in first["connections"])
    rest = client.get(f"{CONNECTIONS}?take=2&from={first['next']}", headers=headers).get_json()
    assert [c["id"] for c in rest["connections"]] == ids[1:] and "next" not in rest
    social = client.get(f"{CONNECTIONS}?strategy=github,auth0", headers=headers).get_json()
    assert [c["name"] for c in social] == [DATABASE]


def test_scopes_and_the_root_key(app, client, tenant, root_headers):
    reader = factories.make_key(app, tenant.id, ["read:connections"])
    refused = client.post(
        CONNECTIONS,
        json={"name": "x", "strategy": "oidc", "options": OIDC},
        headers={"Authorization": f"Bearer {reader}"},
    )
    management_error(refused, 403, "insufficient_scope")
    writer = factories.make_key(app, tenant.id, ["create:connections"])
    made = create(client, type("Key", (), {"key": writer})())
    assert made.status_code == 201
    url = f"{CONNECTIONS}/{made.get_json()['id']}"
    for method, scope in (("patch", "update:connections"), ("delete", "delete:connections")):
        call = getattr(client, method)
        kwargs = {"json": {"display_name": "X"}} if method == "patch" else {}
        denied = call(url, headers={"Authorization": f"Bearer {reader}"}, **kwargs)
        management_error(denied, 403, "insufficient_scope")
        holder = factories.make_key(app, tenant.id, [scope])
        allowed = call(url, headers={"Authorization": f"Bearer {holder}"}, **kwargs)
        assert allowed.status_code in (200, 204), allowed.get_data(as_text=True)
    root = {**root_headers, "X-Tenant-ID": tenant.id}
    by_root = client.post(
        CONNECTIONS, json={"name": "r", "strategy": "oidc", "options": OIDC}, headers=root
    )
    assert by_root.status_code == 201
    assert [c["name"] for c in client.get(CONNECTIONS, headers=auth(tenant)).get_json()] == [
        DATABASE,
        "r",
    ]


def test_another_tenants_connection_is_404(client, tenant, other_tenant):
    theirs = created(client, other_tenant)
    url = f"{CONNECTIONS}/{theirs['id']}"
    for response in (
        client.get(url, headers=auth(tenant)),
        client.patch(url, json={"display_name": "mine"}, headers=auth(tenant)),
        client.delete(url, headers=auth(tenant)),
    ):
        management_error(response, 404, "inexistent_connection")
    assert [c["name"] for c in client.get(CONNECTIONS, headers=auth(tenant)).get_json()] == [
        DATABASE
    ]
    assert client.get(url, headers=auth(other_tenant)).get_json() == theirs


def test_connection_changes_are_audited_without_the_secret(client, tenant):
    connection_id = created(client, tenant, name="audited-sso")["id"]
    changed = client.patch(
        f"{CONNECTIONS}/{connection_id}",
        json={"display_name": "Audited"},
        headers=auth(tenant),
    )
    assert changed.status_code == 200
    assert client.delete(f"{CONNECTIONS}/{connection_id}", headers=auth(tenant)).status_code == 204
    seen = []
    for action in ("connection.created", "connection.updated", "connection.deleted"):
        events = audit_events(client, tenant.headers, action)
        assert [e["target"] for e in events] == [connection_id], action
        assert events[0]["data"]["name"] == "audited-sso"
        assert events[0]["actor"].startswith("api_key:")
        seen.extend(events)
    assert seen[1]["data"]["changed"] == ["display_name"]
    assert SECRET not in str(seen)
