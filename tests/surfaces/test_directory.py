"""The directory surface (the directory API): `/api/v1/users...` as the seed document calls it, with
`Authorization: Bearer <API key>` and with an admin user's access token; bad input, paging
by `Link` header, and policies that become access-token scopes.

Who may call what, `/users/me` and tenancy are in test_directory_auth.py."""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import urlsplit

import jwt
import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient

from tests import factories
from tests.factories import PASSWORD, TenantHandle, assert_directory_error, bearer

NEW_PASSWORD = "newS3cr3tP@sswOrd"
SEED_POLICY = {"resource": "orders_table", "resource_type": "table", "type": "read"}
SEED_BODY = {"username": "johndoe", "password": PASSWORD, "initial_policies": [SEED_POLICY]}
DONE = {"message": "Operation completed successfully"}
LINK = re.compile(r'^<([^>]+)>;\s*rel="next"$')


def create(client: FlaskClient, headers: dict[str, str], name: str, **body: Any) -> Any:
    return client.post(f"/api/v1/users/{name}", headers=headers, json=body or SEED_BODY)


def usernames(client: FlaskClient, headers: dict[str, str]) -> list[str]:
    response = client.get("/api/v1/users?limit=100", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return [item["username"] for item in response.get_json()]


def sign_in_status(client: FlaskClient, tenant_id: str, username: str, password: str) -> int:
    response = client.post(
        "/oauth/token",
        headers={"X-Tenant-ID": tenant_id},
        data={"grant_type": "password", "username": username, "password": password},
    )
    return response.status_code


@pytest.fixture()
def key_headers(tenant: TenantHandle) -> dict[str, str]:
    """The seed's `Authorization: Bearer YOUR_API_KEY` with the tenant's API key."""
    return bearer(tenant.key)


@pytest.fixture(params=["api_key", "admin_token"])
def admin(
    request: pytest.FixtureRequest, app: Flask, client: FlaskClient, tenant: TenantHandle
) -> tuple[dict[str, str], list[str]]:
    """Admin credentials as the seed sends them, and the usernames that exist beforehand."""
    if request.param == "api_key":
        return bearer(tenant.key), []
    factories.make_user(
        app, tenant.id, username="boss", password="boss-password-1", permissions_group="admin"
    )
    token = factories.sign_in(client, tenant.id, "boss", "boss-password-1")["access_token"]
    return bearer(token), ["boss"]


# --- every call of the seed document, as written ---------------------------------------


def test_seed_calls_end_to_end(
    client: FlaskClient, tenant: TenantHandle, admin: tuple[dict[str, str], list[str]]
) -> None:
    headers, existing = admin

    created = create(client, headers, "johndoe")
    assert created.status_code == 201, created.get_data(as_text=True)
    body = created.get_json()
    assert set(body) == {"username", "password_hash"}
    assert body["username"] == "johndoe"
    encoded = base64.b64decode(body["password_hash"], validate=True).decode()
    assert encoded.startswith("$argon2id$")
    assert PasswordHasher().verify(encoded, PASSWORD)

    details = client.get("/api/v1/users/johndoe", headers=headers)
    assert details.status_code == 200
    assert details.get_json() == body

    assert client.get("/api/v1/users", headers=headers).get_json() == [
        {"username": name} for name in [*existing, "johndoe"]
    ]

    token = factories.sign_in(client, tenant.id, "johndoe", PASSWORD)["access_token"]
    me = client.get("/api/v1/users/me", headers=bearer(token))
    assert me.status_code == 200
    assert me.get_json() == {"username": "johndoe", "permissions": [SEED_POLICY]}

    changed = client.put(
        "/api/v1/users/johndoe/password", headers=headers, json={"new_password": NEW_PASSWORD}
    )
    assert changed.status_code == 200, changed.get_data(as_text=True)
    assert changed.get_json() == DONE
    assert sign_in_status(client, tenant.id, "johndoe", PASSWORD) == 401
    assert sign_in_status(client, tenant.id, "johndoe", NEW_PASSWORD) == 200
    new_hash = client.get("/api/v1/users/johndoe", headers=headers).get_json()["password_hash"]
    assert PasswordHasher().verify(base64.b64decode(new_hash).decode(), NEW_PASSWORD)
    # An admin's change revokes every session the user had.
    assert_directory_error(
        client.get("/api/v1/users/me", headers=bearer(token)), 401, "INVALID_TOKEN"
    )

    deleted = client.delete("/api/v1/users/johndoe", headers=headers)
    assert deleted.status_code == 200, deleted.get_data(as_text=True)
    assert deleted.get_json() == DONE
    assert_directory_error(
        client.get("/api/v1/users/johndoe", headers=headers), 404, "USER_NOT_FOUND"
    )
    assert usernames(client, headers) == existing
    assert sign_in_status(client, tenant.id, "johndoe", NEW_PASSWORD) == 401


def test_path_name_wins_over_body_username(
    client: FlaskClient, tenant: TenantHandle, key_headers: dict[str, str]
) -> None:
    created = create(client, key_headers, "janedoe")
    assert created.status_code == 201, created.get_data(as_text=True)
    assert created.get_json()["username"] == "janedoe"
    assert usernames(client, key_headers) == ["janedoe"]
    assert_directory_error(
        client.get("/api/v1/users/johndoe", headers=key_headers), 404, "USER_NOT_FOUND"
    )
    assert sign_in_status(client, tenant.id, "janedoe", PASSWORD) == 200
    assert sign_in_status(client, tenant.id, "johndoe", PASSWORD) == 401


def test_body_username_is_optional(client: FlaskClient, key_headers: dict[str, str]) -> None:
    created = client.post("/api/v1/users/solo", headers=key_headers, json={"password": PASSWORD})
    assert created.status_code == 201, created.get_data(as_text=True)
    assert created.get_json()["username"] == "solo"
    policies = client.get("/api/v1/users/solo/policies", headers=key_headers)
    assert policies.get_json() == []


def test_lookup_by_name_is_case_insensitive(
    client: FlaskClient, key_headers: dict[str, str]
) -> None:
    assert create(client, key_headers, "johndoe").status_code == 201
    response = client.get("/api/v1/users/JOHNDOE", headers=key_headers)
    assert response.status_code == 200
    assert response.get_json()["username"] == "johndoe"


def test_unknown_user_is_404(client: FlaskClient, key_headers: dict[str, str]) -> None:
    for method, path, body in [
        ("get", "/api/v1/users/nobody", None),
        ("delete", "/api/v1/users/nobody", None),
        ("put", "/api/v1/users/nobody/password", {"new_password": NEW_PASSWORD}),
        ("get", "/api/v1/users/nobody/policies", None),
        ("put", "/api/v1/users/nobody/policies", [SEED_POLICY]),
    ]:
        response = getattr(client, method)(path, headers=key_headers, json=body)
        assert_directory_error(response, 404, "USER_NOT_FOUND")


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"username": "johndoe"},
        {"username": "johndoe", "password": PASSWORD, "email": "j@example.com"},
        {"password": 12345678901},
        {"password": PASSWORD, "initial_policies": "read"},
        {"password": PASSWORD, "initial_policies": [{**SEED_POLICY, "type": "delete"}]},
        {"password": PASSWORD, "initial_policies": [{**SEED_POLICY, "resource": ""}]},
        {"password": PASSWORD, "initial_policies": [SEED_POLICY] * 101},
        {"password": "short"},
    ],
    ids=[
        "missing-password",
        "unknown-field",
        "password-not-a-string",
        "policies-not-a-list",
        "bad-policy-type",
        "empty-resource",
        "too-many-policies",
        "password-too-short",
    ],
)
def test_create_rejects_bad_bodies(
    app: Flask,
    client: FlaskClient,
    tenant: TenantHandle,
    key_headers: dict[str, str],
    body: dict[str, Any],
) -> None:
    response = client.post("/api/v1/users/johndoe", headers=key_headers, json=body)
    short = body.get("password") == "short"
    assert_directory_error(response, 400, "PASSWORD_TOO_SHORT" if short else "VALIDATION_FAILED")
    assert factories.count_users(app, tenant.id) == 0


def test_password_policy_is_the_tenants(app: Flask, client: FlaskClient) -> None:
    strict = factories.make_tenant(app, "strict", password_min_length=20)
    headers = bearer(strict.key)
    fourteen = "s3cr3tP@sswOrd"
    assert_directory_error(
        create(client, headers, "johndoe", password=fourteen), 400, "PASSWORD_TOO_SHORT"
    )
    assert factories.count_users(app, strict.id) == 0
    long_enough = "s3cr3tP@sswOrd-long!"
    created = create(client, headers, "johndoe", password=long_enough)
    assert created.status_code == 201, created.get_data(as_text=True)
    too_short = client.put(
        "/api/v1/users/johndoe/password", headers=headers, json={"new_password": NEW_PASSWORD}
    )
    assert_directory_error(too_short, 400, "PASSWORD_TOO_SHORT")
    assert sign_in_status(client, strict.id, "johndoe", long_enough) == 200


@pytest.mark.parametrize("body", [{}, {"new_password": ""}, {"new_password": 5}, {"x": "y"}])
def test_password_change_rejects_bad_bodies(
    client: FlaskClient, tenant: TenantHandle, key_headers: dict[str, str], body: dict[str, Any]
) -> None:
    assert create(client, key_headers, "johndoe").status_code == 201
    response = client.put("/api/v1/users/johndoe/password", headers=key_headers, json=body)
    empty = body == {"new_password": ""}
    assert_directory_error(response, 400, "PASSWORD_TOO_SHORT" if empty else "VALIDATION_FAILED")
    assert sign_in_status(client, tenant.id, "johndoe", PASSWORD) == 200


def test_duplicate_name_is_409_case_insensitively(
    app: Flask, client: FlaskClient, tenant: TenantHandle, key_headers: dict[str, str]
) -> None:
    assert create(client, key_headers, "johndoe").status_code == 201
    for name in ("johndoe", "JohnDoe"):
        assert_directory_error(create(client, key_headers, name), 409, "USERNAME_EXISTS")
    assert factories.count_users(app, tenant.id) == 1
    assert usernames(client, key_headers) == ["johndoe"]


@pytest.mark.parametrize("name", ["me", "current", "profile", "Current", "PROFILE"])
def test_reserved_names_are_400(
    app: Flask, client: FlaskClient, tenant: TenantHandle, key_headers: dict[str, str], name: str
) -> None:
    assert_directory_error(create(client, key_headers, name), 400, "RESERVED_USERNAME")
    assert factories.count_users(app, tenant.id) == 0


@pytest.mark.parametrize(
    "name", ["bad!name", "john%20doe", "j%C3%B6hn", "a%2Bb", "semi;colon", "x" * 129]
)
def test_names_outside_the_alphabet_are_400(
    app: Flask, client: FlaskClient, tenant: TenantHandle, key_headers: dict[str, str], name: str
) -> None:
    assert_directory_error(create(client, key_headers, name), 400, "INVALID_USERNAME")
    assert factories.count_users(app, tenant.id) == 0


def test_names_using_the_whole_alphabet_are_accepted(
    client: FlaskClient, key_headers: dict[str, str]
) -> None:
    name = "A.z_0@x|y:w-9"
    created = create(client, key_headers, name)
    assert created.status_code == 201, created.get_data(as_text=True)
    assert client.get(f"/api/v1/users/{name}", headers=key_headers).status_code == 200


def test_non_json_body_is_415(
    app: Flask, client: FlaskClient, tenant: TenantHandle, key_headers: dict[str, str]
) -> None:
    response = client.post(
        "/api/v1/users/johndoe",
        headers=key_headers,
        data=json.dumps(SEED_BODY),
        content_type="text/plain",
    )
    assert_directory_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert factories.count_users(app, tenant.id) == 0


def test_malformed_json_is_400(
    app: Flask, client: FlaskClient, tenant: TenantHandle, key_headers: dict[str, str]
) -> None:
    response = client.post(
        "/api/v1/users/johndoe",
        headers=key_headers,
        data='{"password": "s3cr3tP@sswOrd",',
        content_type="application/json",
    )
    assert_directory_error(response, 400, "INVALID_JSON")
    assert factories.count_users(app, tenant.id) == 0


# --- paging ------------------------------------------------------------------------------


def test_list_pages_follow_the_link_header(
    client: FlaskClient, key_headers: dict[str, str]
) -> None:
    names = [f"user{i}" for i in range(5)]
    for name in names:
        assert create(client, key_headers, name).status_code == 201

    seen: list[str] = []
    pages = 0
    response = client.get("/api/v1/users?limit=2", headers=key_headers)
    while True:
        assert response.status_code == 200, response.get_data(as_text=True)
        items = response.get_json()
        assert all(set(item) == {"username"} for item in items)
        assert 1 <= len(items) <= 2
        seen += [item["username"] for item in items]
        pages += 1
        link = response.headers.get("Link")
        if link is None:
            break
        match = LINK.match(link)
        assert match, link
        url = urlsplit(match.group(1))
        assert "cursor=" in url.query
        response = client.get(f"{url.path}?{url.query}", headers=key_headers)
        assert pages < 10, "the Link header never ends"

    assert seen == names
    assert pages == 3


def test_a_page_that_holds_everything_has_no_link(
    client: FlaskClient, key_headers: dict[str, str]
) -> None:
    for name in ("a1", "a2"):
        assert create(client, key_headers, name).status_code == 201
    response = client.get("/api/v1/users?limit=2", headers=key_headers)
    assert [item["username"] for item in response.get_json()] == ["a1", "a2"]
    assert "Link" not in response.headers
    assert client.get("/api/v1/users", headers=key_headers).get_json() == [
        {"username": "a1"},
        {"username": "a2"},
    ]


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=101",
        "limit=abc",
        "cursor=not-a-cursor",
        "cursor=%25%25%25",
        f"cursor={base64.urlsafe_b64encode(b'{}').decode()}",
        f"cursor={base64.urlsafe_b64encode(b'[1]').decode()}",
    ],
)
def test_bad_paging_parameters_are_400(
    client: FlaskClient, key_headers: dict[str, str], query: str
) -> None:
    assert create(client, key_headers, "johndoe").status_code == 201
    expected = "INVALID_CURSOR" if "cursor" in query else "VALIDATION_FAILED"
    assert_directory_error(client.get(f"/api/v1/users?{query}", headers=key_headers), 400, expected)


# --- policies ----------------------------------------------------------------------------

NEW_POLICIES = [
    {"resource": "orders_table", "resource_type": "table", "type": "admin"},
    {"resource": "reports", "resource_type": "bucket", "type": "write"},
]


def token_scopes(access_token: str) -> set[str]:
    claims = jwt.decode(access_token, options={"verify_signature": False})
    return set(claims["scope"].split())


def test_policies_read_and_replace(
    client: FlaskClient, tenant: TenantHandle, admin: tuple[dict[str, str], list[str]]
) -> None:
    headers, _ = admin
    assert create(client, headers, "johndoe").status_code == 201
    old_token = factories.sign_in(client, tenant.id, "johndoe", PASSWORD)["access_token"]
    assert "read:table:orders_table" in token_scopes(old_token)

    current = client.get("/api/v1/users/johndoe/policies", headers=headers)
    assert current.status_code == 200
    assert current.get_json() == [SEED_POLICY]

    replaced = client.put("/api/v1/users/johndoe/policies", headers=headers, json=NEW_POLICIES)
    assert replaced.status_code == 200, replaced.get_data(as_text=True)
    assert replaced.get_json() == NEW_POLICIES
    assert client.get("/api/v1/users/johndoe/policies", headers=headers).get_json() == NEW_POLICIES

    signed_in = factories.sign_in(client, tenant.id, "johndoe", PASSWORD)
    scopes = token_scopes(signed_in["access_token"])
    assert {"admin:table:orders_table", "write:bucket:reports"} <= scopes
    assert "read:table:orders_table" not in scopes
    assert set(signed_in["scope"].split()) == scopes
    me = client.get("/api/v1/users/me", headers=bearer(signed_in["access_token"]))
    assert me.get_json() == {"username": "johndoe", "permissions": NEW_POLICIES}


def test_policies_can_be_emptied(client: FlaskClient, key_headers: dict[str, str]) -> None:
    assert create(client, key_headers, "johndoe").status_code == 201
    response = client.put("/api/v1/users/johndoe/policies", headers=key_headers, json=[])
    assert response.status_code == 200
    assert response.get_json() == []
    assert client.get("/api/v1/users/johndoe/policies", headers=key_headers).get_json() == []


def test_one_hundred_policies_are_allowed(client: FlaskClient, key_headers: dict[str, str]) -> None:
    assert create(client, key_headers, "johndoe").status_code == 201
    many = [{"resource": f"t{i}", "resource_type": "table", "type": "read"} for i in range(100)]
    response = client.put("/api/v1/users/johndoe/policies", headers=key_headers, json=many)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert client.get("/api/v1/users/johndoe/policies", headers=key_headers).get_json() == many


@pytest.mark.parametrize(
    "body",
    [
        [{**SEED_POLICY, "type": "delete"}],
        [{**SEED_POLICY, "type": "READ"}],
        [{"resource": "orders_table", "resource_type": "table"}],
        [{**SEED_POLICY, "resource": ""}],
        [{**SEED_POLICY, "resource_type": ""}],
        [{**SEED_POLICY, "resource": "orders table"}],
        [{**SEED_POLICY, "extra": 1}],
        [NEW_POLICIES[0], "read"],
        SEED_POLICY,
        "read",
        [{"resource": f"t{i}", "resource_type": "table", "type": "read"} for i in range(101)],
    ],
    ids=[
        "unknown-type",
        "upper-case-type",
        "missing-type",
        "empty-resource",
        "empty-resource-type",
        "space-in-resource",
        "unknown-field",
        "non-object-item",
        "object-not-list",
        "string-not-list",
        "over-100",
    ],
)
def test_bad_policies_are_400_and_change_nothing(
    client: FlaskClient, key_headers: dict[str, str], body: Any
) -> None:
    assert create(client, key_headers, "johndoe").status_code == 201
    response = client.put("/api/v1/users/johndoe/policies", headers=key_headers, json=body)
    too_many = isinstance(body, list) and len(body) > 100
    assert_directory_error(response, 400, "TOO_MANY_POLICIES" if too_many else "VALIDATION_FAILED")
    after = client.get("/api/v1/users/johndoe/policies", headers=key_headers)
    assert after.get_json() == [SEED_POLICY]
