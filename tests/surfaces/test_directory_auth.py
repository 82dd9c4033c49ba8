"""The directory surface (the directory API), who may call what: `/api/v1/users/me` needs a user's
token; plain users reach only themselves (no probing of other names); admins by group or
key scope; narrow keys; other sessions revoked on a password change; tenancy as 404."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests import factories
from tests.factories import PASSWORD, TenantHandle, assert_directory_error, bearer

NEW_PASSWORD = "newS3cr3tP@sswOrd"
SEED_POLICY = {"resource": "orders_table", "resource_type": "table", "type": "read"}
SEED_BODY = {"username": "johndoe", "password": PASSWORD, "initial_policies": [SEED_POLICY]}
DONE = {"message": "Operation completed successfully"}
OTHER_POLICIES = [{"resource": "payroll", "resource_type": "table", "type": "admin"}]


def sign_in_status(client: FlaskClient, tenant_id: str, username: str, password: str) -> int:
    response = client.post(
        "/oauth/token",
        headers={"X-Tenant-ID": tenant_id},
        data={"grant_type": "password", "username": username, "password": password},
    )
    return response.status_code


def token_for(client: FlaskClient, tenant_id: str, username: str, password: str) -> str:
    return factories.sign_in(client, tenant_id, username, password)["access_token"]


@pytest.fixture()
def key_headers(tenant: TenantHandle) -> dict[str, str]:
    return bearer(tenant.key)


@pytest.fixture()
def johndoe(client: FlaskClient, key_headers: dict[str, str]) -> None:
    """johndoe as the seed creates it, plus janedoe (another user of the tenant)."""
    for name in ("johndoe", "janedoe"):
        response = client.post(f"/api/v1/users/{name}", headers=key_headers, json=SEED_BODY)
        assert response.status_code == 201, response.get_data(as_text=True)


@pytest.fixture()
def john_token(client: FlaskClient, tenant: TenantHandle, johndoe: None) -> dict[str, str]:
    return bearer(token_for(client, tenant.id, "johndoe", PASSWORD))


# --- /api/v1/users/me --------------------------------------------------------------------


def test_me_with_a_users_token(client: FlaskClient, john_token: dict[str, str]) -> None:
    response = client.get("/api/v1/users/me", headers=john_token)
    assert response.status_code == 200
    assert response.get_json() == {"username": "johndoe", "permissions": [SEED_POLICY]}


@pytest.mark.parametrize("style", ["bearer", "x-apikey"])
def test_me_with_an_api_key_is_403(client: FlaskClient, tenant: TenantHandle, style: str) -> None:
    headers = bearer(tenant.key) if style == "bearer" else {"X-APIKEY": tenant.key}
    assert_directory_error(
        client.get("/api/v1/users/me", headers=headers), 403, "USER_TOKEN_REQUIRED"
    )


def test_me_without_credential_is_401(client: FlaskClient) -> None:
    response = client.get("/api/v1/users/me")
    assert_directory_error(response, 401, "MISSING_CREDENTIALS")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("Bearer not-a-token", "INVALID_TOKEN"),
        ("Bearer gh_not-a-key", "INVALID_API_KEY"),
        ("Basic eDp5", "MISSING_CREDENTIALS"),
    ],
)
def test_me_with_a_bad_credential_is_401(client: FlaskClient, value: str, code: str) -> None:
    response = client.get("/api/v1/users/me", headers={"Authorization": value})
    assert_directory_error(response, 401, code)


def test_me_for_a_user_without_username(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    factories.make_user(app, tenant.id, email="nameless@example.com", password=PASSWORD)
    token = token_for(client, tenant.id, "nameless@example.com", PASSWORD)
    response = client.get("/api/v1/users/me", headers=bearer(token))
    assert response.status_code == 200
    assert response.get_json() == {"username": None, "permissions": []}


# --- a plain user ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/api/v1/users", None),
        ("post", "/api/v1/users/x", {"password": PASSWORD}),
        ("delete", "/api/v1/users/janedoe", None),
        ("delete", "/api/v1/users/johndoe", None),
        ("get", "/api/v1/users/janedoe/policies", None),
        ("get", "/api/v1/users/johndoe/policies", None),
        ("put", "/api/v1/users/janedoe/policies", OTHER_POLICIES),
        ("put", "/api/v1/users/johndoe/policies", OTHER_POLICIES),
    ],
)
def test_admin_calls_are_403_for_a_plain_user(
    app: Flask,
    client: FlaskClient,
    tenant: TenantHandle,
    key_headers: dict[str, str],
    john_token: dict[str, str],
    method: str,
    path: str,
    body: Any,
) -> None:
    response = getattr(client, method)(path, headers=john_token, json=body)
    assert_directory_error(response, 403, "INSUFFICIENT_SCOPE")
    assert factories.count_users(app, tenant.id) == 2
    for name in ("johndoe", "janedoe"):
        policies = client.get(f"/api/v1/users/{name}/policies", headers=key_headers)
        assert policies.get_json() == [SEED_POLICY]


def test_a_user_reads_itself(client: FlaskClient, john_token: dict[str, str]) -> None:
    response = client.get("/api/v1/users/johndoe", headers=john_token)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"username", "password_hash"}
    assert body["username"] == "johndoe"


def test_other_and_missing_names_are_the_same_403(
    client: FlaskClient, john_token: dict[str, str]
) -> None:
    other = assert_directory_error(
        client.get("/api/v1/users/janedoe", headers=john_token), 403, "INSUFFICIENT_SCOPE"
    )
    missing = assert_directory_error(
        client.get("/api/v1/users/nobody", headers=john_token), 403, "INSUFFICIENT_SCOPE"
    )
    assert (other["error"], other["code"]) == (missing["error"], missing["code"])


@pytest.mark.parametrize("name", ["janedoe", "nobody"])
def test_a_user_cannot_change_another_password(
    client: FlaskClient,
    tenant: TenantHandle,
    john_token: dict[str, str],
    name: str,
) -> None:
    response = client.put(
        f"/api/v1/users/{name}/password", headers=john_token, json={"new_password": NEW_PASSWORD}
    )
    assert_directory_error(response, 403, "INSUFFICIENT_SCOPE")
    assert sign_in_status(client, tenant.id, "janedoe", PASSWORD) == 200
    assert sign_in_status(client, tenant.id, "janedoe", NEW_PASSWORD) == 401


def test_own_password_change_revokes_the_other_sessions(
    client: FlaskClient, tenant: TenantHandle, johndoe: None
) -> None:
    first = factories.sign_in(client, tenant.id, "johndoe", PASSWORD)
    second = factories.sign_in(client, tenant.id, "johndoe", PASSWORD)
    acting = bearer(first["access_token"])

    response = client.put(
        "/api/v1/users/johndoe/password", headers=acting, json={"new_password": NEW_PASSWORD}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == DONE

    refused = client.get("/api/v1/users/me", headers=bearer(second["access_token"]))
    assert_directory_error(refused, 401, "INVALID_TOKEN")
    stale_refresh = client.post(
        "/oauth/token",
        headers={"X-Tenant-ID": tenant.id},
        data={"grant_type": "refresh_token", "refresh_token": second["refresh_token"]},
    )
    assert stale_refresh.status_code == 401
    kept = client.get("/api/v1/users/me", headers=acting)
    assert kept.status_code == 200
    assert kept.get_json()["username"] == "johndoe"
    assert sign_in_status(client, tenant.id, "johndoe", PASSWORD) == 401
    assert sign_in_status(client, tenant.id, "johndoe", NEW_PASSWORD) == 200


def test_own_password_change_applies_the_policy(
    client: FlaskClient, tenant: TenantHandle, john_token: dict[str, str]
) -> None:
    response = client.put(
        "/api/v1/users/johndoe/password", headers=john_token, json={"new_password": "short"}
    )
    assert_directory_error(response, 400, "PASSWORD_TOO_SHORT")
    assert sign_in_status(client, tenant.id, "johndoe", PASSWORD) == 200
    assert client.get("/api/v1/users/me", headers=john_token).status_code == 200


# --- admins: by group, by key scope ------------------------------------------------------


def test_an_admin_group_user_may_do_every_admin_call(
    app: Flask, client: FlaskClient, tenant: TenantHandle, johndoe: None
) -> None:
    factories.make_user(
        app, tenant.id, username="boss", password="boss-password-1", permissions_group="admin"
    )
    headers = bearer(token_for(client, tenant.id, "boss", "boss-password-1"))

    listed = client.get("/api/v1/users", headers=headers)
    assert [item["username"] for item in listed.get_json()] == ["johndoe", "janedoe", "boss"]
    created = client.post("/api/v1/users/newbie", headers=headers, json={"password": PASSWORD})
    assert created.status_code == 201
    assert client.get("/api/v1/users/janedoe", headers=headers).status_code == 200
    changed = client.put(
        "/api/v1/users/janedoe/password", headers=headers, json={"new_password": NEW_PASSWORD}
    )
    assert changed.get_json() == DONE
    assert sign_in_status(client, tenant.id, "janedoe", NEW_PASSWORD) == 200
    put = client.put("/api/v1/users/janedoe/policies", headers=headers, json=OTHER_POLICIES)
    assert put.status_code == 200
    assert client.get("/api/v1/users/janedoe/policies", headers=headers).get_json() == (
        OTHER_POLICIES
    )
    deleted = client.delete("/api/v1/users/janedoe", headers=headers)
    assert deleted.get_json() == DONE
    assert_directory_error(
        client.get("/api/v1/users/janedoe", headers=headers), 404, "USER_NOT_FOUND"
    )


def test_a_read_only_key_may_list_but_not_write(
    app: Flask, client: FlaskClient, tenant: TenantHandle, johndoe: None
) -> None:
    headers = bearer(factories.make_key(app, tenant.id, ["read:users"]))
    listed = client.get("/api/v1/users", headers=headers)
    assert listed.status_code == 200
    assert listed.get_json() == [{"username": "johndoe"}, {"username": "janedoe"}]
    assert client.get("/api/v1/users/johndoe", headers=headers).status_code == 200

    created = client.post("/api/v1/users/newbie", headers=headers, json={"password": PASSWORD})
    assert_directory_error(created, 403, "INSUFFICIENT_SCOPE")
    assert factories.count_users(app, tenant.id) == 2
    assert_directory_error(
        client.delete("/api/v1/users/johndoe", headers=headers), 403, "INSUFFICIENT_SCOPE"
    )
    changed = client.put(
        "/api/v1/users/johndoe/password", headers=headers, json={"new_password": NEW_PASSWORD}
    )
    assert_directory_error(changed, 403, "INSUFFICIENT_SCOPE")
    put = client.put("/api/v1/users/johndoe/policies", headers=headers, json=OTHER_POLICIES)
    assert_directory_error(put, 403, "INSUFFICIENT_SCOPE")
    assert_directory_error(
        client.get("/api/v1/users/me", headers=headers), 403, "USER_TOKEN_REQUIRED"
    )
    assert sign_in_status(client, tenant.id, "johndoe", PASSWORD) == 200


def test_the_root_key_names_the_tenant(
    client: FlaskClient, tenant: TenantHandle, root_headers: dict[str, str], johndoe: None
) -> None:
    with_tenant = client.get("/api/v1/users", headers={**root_headers, "X-Tenant-ID": tenant.id})
    assert with_tenant.get_json() == [{"username": "johndoe"}, {"username": "janedoe"}]
    assert_directory_error(
        client.get("/api/v1/users", headers=root_headers), 400, "TENANT_REQUIRED"
    )


def test_a_tenant_header_that_does_not_match_is_403(
    client: FlaskClient,
    tenant: TenantHandle,
    other_tenant: TenantHandle,
    john_token: dict[str, str],
) -> None:
    wrong = {"X-Tenant-ID": other_tenant.id}
    key = client.get("/api/v1/users", headers={**bearer(tenant.key), **wrong})
    assert_directory_error(key, 403, "TENANT_MISMATCH")
    token = client.get("/api/v1/users/me", headers={**john_token, **wrong})
    assert_directory_error(token, 403, "TENANT_MISMATCH")


# --- tenancy -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/api/v1/users/johndoe", None),
        ("delete", "/api/v1/users/johndoe", None),
        ("put", "/api/v1/users/johndoe/password", {"new_password": NEW_PASSWORD}),
        ("get", "/api/v1/users/johndoe/policies", None),
        ("put", "/api/v1/users/johndoe/policies", OTHER_POLICIES),
    ],
)
def test_another_tenants_admin_gets_404(
    client: FlaskClient,
    tenant: TenantHandle,
    other_tenant: TenantHandle,
    key_headers: dict[str, str],
    johndoe: None,
    method: str,
    path: str,
    body: Any,
) -> None:
    response = getattr(client, method)(path, headers=bearer(other_tenant.key), json=body)
    assert_directory_error(response, 404, "USER_NOT_FOUND")
    assert sign_in_status(client, tenant.id, "johndoe", PASSWORD) == 200
    policies = client.get("/api/v1/users/johndoe/policies", headers=key_headers)
    assert policies.get_json() == [SEED_POLICY]


def test_lists_and_names_are_per_tenant(
    client: FlaskClient,
    tenant: TenantHandle,
    other_tenant: TenantHandle,
    key_headers: dict[str, str],
    johndoe: None,
) -> None:
    other = bearer(other_tenant.key)
    assert client.get("/api/v1/users", headers=other).get_json() == []
    created = client.post("/api/v1/users/johndoe", headers=other, json={"password": NEW_PASSWORD})
    assert created.status_code == 201, created.get_data(as_text=True)
    assert client.get("/api/v1/users", headers=other).get_json() == [{"username": "johndoe"}]
    assert client.get("/api/v1/users/johndoe/policies", headers=other).get_json() == []
    assert sign_in_status(client, tenant.id, "johndoe", PASSWORD) == 200
    assert sign_in_status(client, other_tenant.id, "johndoe", NEW_PASSWORD) == 200
    assert sign_in_status(client, other_tenant.id, "johndoe", PASSWORD) == 401
    assert client.get("/api/v1/users", headers=key_headers).get_json() == [
        {"username": "johndoe"},
        {"username": "janedoe"},
    ]
