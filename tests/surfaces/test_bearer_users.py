"""User bearer tokens on the user and accounts surfaces: a user acts on itself, an admin
or a holder of `read:users` on anyone, and the tenant header must match the token."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.core.db import db
from app.core.tenancy import tenant_scope
from app.users import service as user_service
from tests import factories
from tests.factories import PASSWORD, TenantHandle, assert_error, bearer


@pytest.fixture()
def users(app: Flask, tenant: TenantHandle) -> None:
    """alice and bob (normal), ada (admin group), rita (custom scope read:users)."""
    people = [
        ("alice", {"email": "alice@example.com"}),
        ("bob", {"email": "bob@example.com", "email_verified": True}),
        ("ada", {"permissions_group": "admin"}),
        ("rita", {"custom_scopes": ["read:users"]}),
    ]
    for name, extra in people:
        factories.make_user(
            app, tenant.id, user_id=f"id-{name}", username=name, password=PASSWORD, **extra
        )


def token_of(client: FlaskClient, tenant: TenantHandle, name: str) -> str:
    return factories.sign_in(client, tenant.id, name, PASSWORD)["access_token"]


def account(client: FlaskClient, tenant: TenantHandle, user_id: str) -> dict:
    """The account as the tenant's API key (read:users) sees it."""
    response = client.get(f"/users/{user_id}", headers=tenant.m2_headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


@pytest.mark.parametrize(
    ("path", "id_key"),
    [
        ("/user/id-alice", "id"),
        ("/user/id-alice/profile", "id"),
        ("/user/profile", "id"),
        ("/users/id-alice", "uid"),
        ("/users/id-alice/", "uid"),
        ("/users/current", "uid"),
        ("/users/current/", "uid"),
    ],
)
def test_a_user_reads_its_own_records(client, tenant, users, path, id_key):
    response = client.get(path, headers=bearer(token_of(client, tenant, "alice")))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()[id_key] == "id-alice"


@pytest.mark.parametrize("path", ["/user/id-bob", "/user/id-bob/profile", "/users/id-bob"])
def test_a_user_may_not_read_another_user(client, tenant, users, path):
    body = assert_error(
        client.get(path, headers=bearer(token_of(client, tenant, "alice"))),
        403,
        "insufficient_scope",
    )
    assert "bob" not in str(body)


def test_a_user_changes_its_email_which_becomes_unverified(app, client, tenant, users):
    access = token_of(client, tenant, "bob")
    response = client.patch(
        "/users/id-bob", json={"email": "robert@example.com"}, headers=bearer(access)
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["uid"] == "id-bob"
    assert response.get_json()["emailVerified"] is False
    stored = account(client, tenant, "id-bob")
    assert (stored["email"], stored["emailVerified"]) == ("robert@example.com", False)


@pytest.mark.parametrize(
    "body", [{"emailVerified": True}, {"email": "alice2@example.com", "emailVerified": True}]
)
def test_a_user_may_not_set_email_verified(client, tenant, users, body):
    access = token_of(client, tenant, "alice")
    assert_error(
        client.patch("/users/id-alice", json=body, headers=bearer(access)), 403, "forbidden_field"
    )
    stored = account(client, tenant, "id-alice")
    assert (stored["email"], stored["emailVerified"]) == ("alice@example.com", False)


def test_a_user_may_not_patch_another_user(client, tenant, users):
    access = token_of(client, tenant, "alice")
    body = {"email": "taken@example.com"}
    assert_error(
        client.patch("/users/id-bob", json=body, headers=bearer(access)), 403, "insufficient_scope"
    )
    assert account(client, tenant, "id-bob")["email"] == "bob@example.com"


@pytest.mark.parametrize("path", ["/users/id-alice", "/users/current"])
def test_an_unverified_email_is_hidden_from_the_user(client, tenant, users, path):
    own = client.get(path, headers=bearer(token_of(client, tenant, "alice")))
    assert own.status_code == 200
    assert "email" not in own.get_json()
    assert own.get_json()["emailVerified"] is False
    assert account(client, tenant, "id-alice")["email"] == "alice@example.com"


def test_a_verified_email_is_shown_to_the_user(client, tenant, users):
    own = client.get("/users/id-bob", headers=bearer(token_of(client, tenant, "bob")))
    assert own.status_code == 200
    assert own.get_json()["email"] == "bob@example.com"


def test_an_admin_reads_any_user_and_creates_accounts(client, tenant, users):
    access = token_of(client, tenant, "ada")
    for path in ("/user/id-alice", "/user/id-alice/profile", "/users/id-alice"):
        response = client.get(path, headers=bearer(access))
        assert response.status_code == 200, (path, response.get_data(as_text=True))
    assert client.get("/users/id-alice", headers=bearer(access)).get_json()["email"] == (
        "alice@example.com"
    )
    created = client.post("/auth/user", json={"uid": "by-admin"}, headers=bearer(access))
    assert created.status_code == 200, created.get_data(as_text=True)
    assert created.get_json()["uid"] == "by-admin"
    assert account(client, tenant, "by-admin")["uid"] == "by-admin"


def test_a_normal_user_may_not_create_accounts(app, client, tenant, users):
    access = token_of(client, tenant, "alice")
    response = client.post("/auth/user", json={"uid": "by-alice"}, headers=bearer(access))
    assert_error(response, 403, "insufficient_scope")
    assert client.get("/users/by-alice", headers=tenant.m2_headers).status_code == 404
    assert factories.count_users(app, tenant.id) == 4


def test_a_read_users_custom_scope_reads_others_but_does_not_write(client, tenant, users):
    access = token_of(client, tenant, "rita")
    assert client.get("/users/id-alice", headers=bearer(access)).status_code == 200
    profile = client.get("/user/id-bob/profile", headers=bearer(access))
    assert profile.status_code == 200
    assert profile.get_json()["id"] == "id-bob"
    body = {"email": "x@example.com"}
    assert_error(
        client.patch("/users/id-bob", json=body, headers=bearer(access)), 403, "insufficient_scope"
    )
    assert account(client, tenant, "id-bob")["email"] == "bob@example.com"


@pytest.mark.parametrize("header", ["X-Tenant-ID", "x-m2-organization-id"])
def test_the_tenant_header_must_match_the_token(client, tenant, other_tenant, users, header):
    access = token_of(client, tenant, "alice")
    same = client.get("/users/current", headers=bearer(access, **{header: tenant.id}))
    assert same.status_code == 200
    assert same.get_json()["uid"] == "id-alice"
    other = client.get("/users/current", headers=bearer(access, **{header: other_tenant.id}))
    assert_error(other, 403, "tenant_mismatch")


def test_a_blocked_users_token_stops_working(app, client, tenant, users):
    access = token_of(client, tenant, "alice")
    assert client.get("/user/profile", headers=bearer(access)).status_code == 200
    with app.app_context(), tenant_scope(tenant.id):
        user = user_service.get_user("id-alice")
        user_service.update_user(user=user, changes={"blocked": True}, actor="test")
        db.session.commit()
    assert_error(client.get("/user/profile", headers=bearer(access)), 401, "invalid_token")
    assert_error(client.get("/users/current", headers=bearer(access)), 401, "invalid_token")


def test_a_user_token_may_not_exchange_custom_tokens(app, client):
    enabled = factories.make_tenant(app, "initech", allow_user_token_management=True)
    factories.make_user(app, enabled.id, user_id="id-eve", username="eve", password=PASSWORD)
    access = token_of(client, enabled, "eve")
    generated = client.post(
        "/token/generate", json={"userId": "id-eve"}, headers=enabled.m2_headers
    )
    custom = generated.get_json()["token"]
    response = client.post("/token/signin", json={"token": custom}, headers=bearer(access))
    assert_error(response, 403, "api_key_required")
    exchanged = client.post("/token/signin", json={"token": custom}, headers=enabled.m2_headers)
    assert exchanged.status_code == 200  # the refused attempt did not use the token up
    assert exchanged.get_json()["userId"] == "id-eve"


@pytest.mark.parametrize(
    ("path", "code"),
    [("/token/generate", "insufficient_scope"), ("/token/refresh", "api_key_required")],
)
def test_a_user_token_may_not_mint_or_refresh_custom_sessions(
    app, client, tenant, users, path, code
):
    access = token_of(client, tenant, "alice")
    body = {"userId": "id-alice"} if path.endswith("generate") else {"refreshToken": "rt_x_y"}
    assert_error(client.post(path, json=body, headers=bearer(access)), 403, code)


def test_a_user_token_may_not_read_the_audit_log(client, tenant, users):
    access = token_of(client, tenant, "alice")
    assert_error(client.get("/audit-events", headers=bearer(access)), 403, "insufficient_scope")
    listing = client.get("/audit-events?action=user.signed_in", headers=tenant.headers)
    assert [e["user_id"] for e in listing.get_json()["items"]] == ["id-alice"]
