"""The token endpoint over HTTP: password grant, bad requests, client credentials and the
sign-in rate limits."""

from __future__ import annotations

import base64
from pathlib import Path

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.core.scopes import ADMIN_SCOPES, CURRENT_USER_SCOPES
from tests import factories
from tests.factories import TenantHandle
from tests.oauth_support import (
    ISSUER,
    PASSWORD,
    assert_invalid_token,
    assert_oauth_error,
    audit_events,
    bearer,
    claims,
    count_verifications,
    rate_limited_app,
    sign_in,
    token_request,
    verified,
)

LOGINS = {
    "username": {"username": "alice"},
    "email": {"email": "alice@example.com"},
    "username holding an email": {"username": "alice@example.com"},
}


def _alice(app: Flask, tenant: TenantHandle, **fields: object) -> str:
    return factories.make_user(
        app,
        tenant.id,
        user_id="alice-1",
        username="alice",
        email="alice@example.com",
        password=PASSWORD,
        **fields,
    )


@pytest.mark.parametrize("as_json", [False, True], ids=["form", "json"])
@pytest.mark.parametrize("login", list(LOGINS))
def test_password_grant_issues_access_id_and_refresh_tokens(
    app: Flask, client: FlaskClient, tenant: TenantHandle, as_json: bool, login: str
) -> None:
    user_id = _alice(
        app,
        tenant,
        email_verified=True,
        display_name="Alice Liddell",
        photo_url="https://img.example.com/alice.png",
    )
    response = token_request(
        client,
        tenant.id,
        as_json=as_json,
        grant_type="password",
        password=PASSWORD,
        client_id="some-mobile-app",  # standard clients send these; the grant ignores them
        scope="openid profile",
        **LOGINS[login],
    )

    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["refresh_token"] and body["id_token"] and body["access_token"]

    header = jwt.get_unverified_header(body["access_token"])
    assert header["alg"] == "RS256" and header["kid"]
    access = verified(client, body["access_token"], audience=tenant.id)
    assert access == claims(body["access_token"])
    assert access["iss"] == ISSUER
    assert access["sub"] == user_id
    assert access["aud"] == access["tid"] == tenant.id
    assert access["scope"] == body["scope"]
    assert set(access["scope"].split()) == set(CURRENT_USER_SCOPES)
    assert access["exp"] - access["iat"] == pytest.approx(900, abs=1)
    assert access["jti"] and access["sid"]

    id_token = verified(client, body["id_token"], audience=tenant.id)
    assert jwt.get_unverified_header(body["id_token"])["alg"] == "RS256"
    assert id_token["sub"] == user_id
    assert id_token["email"] == "alice@example.com"
    assert id_token["email_verified"] is True
    assert id_token["aud"] == tenant.id
    assert id_token["name"] == "Alice Liddell"
    assert id_token["picture"] == "https://img.example.com/alice.png"
    assert abs(id_token["auth_time"] - access["iat"]) <= 1


def test_sign_in_is_visible_in_the_very_next_read(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    user_id = _alice(app, tenant)
    before = client.get(f"/user/{user_id}/profile", headers=tenant.headers).get_json()
    assert before["logins_count"] == 0 and before["last_login_at"] is None

    sign_in(client, tenant.id, "alice")

    account = client.get(f"/users/{user_id}", headers=tenant.headers)
    assert account.status_code == 200
    assert account.get_json()["metadata"]["lastSignInTime"]
    profile = client.get(f"/user/{user_id}/profile", headers=tenant.headers).get_json()
    assert profile["logins_count"] == 1
    assert profile["last_login_at"]
    signed_in = audit_events(client, tenant.headers, "user.signed_in")
    assert [e["user_id"] for e in signed_in] == [user_id]


def test_admin_and_custom_scopes_are_in_the_token_and_take_effect(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    _alice(app, tenant, permissions_group="admin", custom_scopes=["read:reports"])
    factories.make_user(app, tenant.id, user_id="bob-1", username="bob", password=PASSWORD)
    admin = sign_in(client, tenant.id, "alice")
    plain = sign_in(client, tenant.id, "bob")

    scopes = set(claims(admin["access_token"])["scope"].split())
    assert scopes == set(CURRENT_USER_SCOPES) | set(ADMIN_SCOPES) | {"read:reports"}
    assert "read:users" not in claims(plain["access_token"])["scope"].split()
    assert client.get("/user/bob-1", headers=bearer(admin["access_token"])).status_code == 200
    assert client.get("/user/alice-1", headers=bearer(plain["access_token"])).status_code == 403


@pytest.fixture()
def verify_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    return count_verifications(monkeypatch)


def test_wrong_password_and_unknown_user_answer_alike_and_both_verify_a_hash(
    app: Flask, client: FlaskClient, tenant: TenantHandle, verify_calls: list[str]
) -> None:
    user_id = _alice(app, tenant)
    wrong = token_request(
        client, tenant.id, grant_type="password", username="alice", password="wrong password"
    )
    assert len(verify_calls) == 1
    unknown = token_request(
        client, tenant.id, grant_type="password", username="nobody", password=PASSWORD
    )
    assert len(verify_calls) == 2

    first = assert_oauth_error(wrong, 401, "invalid_grant")
    second = assert_oauth_error(unknown, 401, "invalid_grant")
    assert first == second
    failed = audit_events(client, tenant.headers, "user.signin_failed")
    assert {e["target"] for e in failed} == {"alice", "nobody"}
    assert user_id in {e["user_id"] for e in failed}
    assert all(PASSWORD not in str(e) and "wrong password" not in str(e) for e in failed)
    assert audit_events(client, tenant.headers, "user.signed_in") == []


def test_a_blocked_user_cannot_sign_in(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    user_id = _alice(app, tenant, blocked=True)
    response = token_request(
        client, tenant.id, grant_type="password", username="alice", password=PASSWORD
    )
    assert_oauth_error(response, 401, "invalid_grant")
    assert [e["user_id"] for e in audit_events(client, tenant.headers, "user.signin_failed")] == [
        user_id
    ]
    profile = client.get(f"/user/{user_id}/profile", headers=tenant.headers).get_json()
    assert profile["logins_count"] == 0


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"username": "alice", "password": PASSWORD}, "invalid_request"),
        ({"grant_type": "urn:ietf:params:oauth:grant-type:device_code"}, "unsupported_grant_type"),
        ({"grant_type": "password", "username": "alice"}, "invalid_request"),
    ],
    ids=["no grant_type", "unknown grant_type", "no password"],
)
@pytest.mark.parametrize("as_json", [False, True], ids=["form", "json"])
def test_malformed_token_requests_are_400(
    client: FlaskClient, tenant: TenantHandle, fields: dict, error: str, as_json: bool
) -> None:
    assert_oauth_error(token_request(client, tenant.id, as_json=as_json, **fields), 400, error)


def test_password_grant_needs_the_tenant_header(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    _alice(app, tenant)
    response = token_request(
        client, None, grant_type="password", username="alice", password=PASSWORD
    )
    assert_oauth_error(response, 400, "invalid_request")


def test_a_body_that_is_not_a_json_object_or_a_form_is_refused(
    client: FlaskClient, tenant: TenantHandle
) -> None:
    headers = {"X-Tenant-ID": tenant.id}
    listed = client.post("/oauth/token", json=["grant_type", "password"], headers=headers)
    assert_oauth_error(listed, 400, "invalid_request")
    broken = client.post(
        "/oauth/token", data="{grant_type", content_type="application/json", headers=headers
    )
    assert_oauth_error(broken, 400, "invalid_request")
    wrong_type = client.post("/oauth/token", json={"grant_type": 5}, headers=headers)
    assert_oauth_error(wrong_type, 400, "invalid_request")
    text = client.post(
        "/oauth/token",
        data="grant_type=password&username=a&password=b",
        content_type="text/plain",
        headers=headers,
    )
    assert text.status_code == 415
    assert text.is_json and text.get_json()["error"]


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_client_credentials_in_the_body_or_basic_give_an_api_key_token(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    factories.make_user(app, tenant.id, user_id="u-1", email="u1@example.com")
    in_body = client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": tenant.key_id,
            "client_secret": tenant.key,
        },
    )
    basic = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=_basic(tenant.key_id, tenant.key),
    )
    for response in (in_body, basic):
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.headers["Cache-Control"] == "no-store"
        body = response.get_json()
        assert body["token_type"] == "Bearer" and body["expires_in"] > 0
        assert "refresh_token" not in body and "id_token" not in body
        token_claims = verified(client, body["access_token"], audience=tenant.id)
        assert token_claims["scope"] == body["scope"] == "*"
        found = client.get(
            "/auth/user", query_string={"userId": "u-1"}, headers=bearer(body["access_token"])
        )
        assert found.status_code == 200, found.get_data(as_text=True)
        assert [a["uid"] for a in found.get_json()] == ["u-1"]


def test_client_credentials_refuse_a_wrong_client(
    client: FlaskClient, tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    wrong_id = client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": other_tenant.key_id,
            "client_secret": tenant.key,
        },
    )
    assert_oauth_error(wrong_id, 401, "invalid_client")
    wrong_secret = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=_basic(tenant.key_id, tenant.key[:-4] + "AAAA"),
    )
    assert_oauth_error(wrong_secret, 401, "invalid_client")
    no_secret = client.post(
        "/oauth/token", data={"grant_type": "client_credentials", "client_id": tenant.key_id}
    )
    assert_oauth_error(no_secret, 401, "invalid_client")


def test_a_failed_basic_client_authentication_challenges_with_basic(
    client: FlaskClient, tenant: TenantHandle
) -> None:
    # RFC 6749 §5.2: invalid_client after Authorization-header client authentication is a
    # 401 whose WWW-Authenticate names the scheme the client used.
    response = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=_basic(tenant.key_id, "not-the-key"),
    )
    assert_oauth_error(response, 401, "invalid_client")
    assert response.headers.get("WWW-Authenticate", "").startswith("Basic")


@pytest.mark.parametrize(
    "credentials",
    [b"a\x00:b", b"a%00:b", b"a:b\x00", b"a:%00b"],
    ids=["raw", "%00", "secret", "secret %00"],
)
@pytest.mark.parametrize("grant", ["client_credentials", "password", "refresh_token"])
def test_a_nul_inside_basic_credentials_is_invalid_client(
    client: FlaskClient, tenant: TenantHandle, credentials: bytes, grant: str
) -> None:
    """Issue 22: `curl -u 'a%00:b' .../oauth/token` answered 500 (the NUL reached the
    database)."""
    header = {"Authorization": "Basic " + base64.b64encode(credentials).decode()}
    body = {"grant_type": grant, "username": "a", "password": "b", "refresh_token": "rt_x_y"}

    response = client.post("/oauth/token", data=body, headers={**header, "X-Tenant-ID": tenant.id})

    assert_oauth_error(response, 401, "invalid_client")
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_client_credentials_token_carries_the_keys_scopes_and_dies_with_the_key(
    app: Flask, client: FlaskClient, tenant: TenantHandle, root_headers: dict[str, str]
) -> None:
    narrow = factories.make_key(app, tenant.id, ["read:users"])
    key_id = narrow.split("_")[1]
    response = client.post(
        "/oauth/token", data={"grant_type": "client_credentials", "client_secret": narrow}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    token = response.get_json()["access_token"]
    assert claims(token)["scope"] == "read:users"

    read = client.get("/auth/user", query_string={"userId": "x"}, headers=bearer(token))
    assert read.status_code == 200 and read.get_json() == []
    create = client.post("/auth/user", json={"uid": "new-1"}, headers=bearer(token))
    assert create.status_code == 403
    missing = client.get("/auth/user", query_string={"userId": "new-1"}, headers=tenant.headers)
    assert missing.get_json() == []

    revoked = client.delete(f"/tenants/{tenant.id}/api-keys/{key_id}", headers=root_headers)
    assert revoked.status_code == 204
    assert_invalid_token(
        client.get("/auth/user", query_string={"userId": "x"}, headers=bearer(token))
    )
    again = client.post(
        "/oauth/token", data={"grant_type": "client_credentials", "client_secret": narrow}
    )
    assert_oauth_error(again, 401, "invalid_client")


def test_sign_in_is_rate_limited_per_account(
    app: Flask, tenant: TenantHandle, database_url: str, tmp_path: Path
) -> None:
    _alice(app, tenant)
    with rate_limited_app(
        app, database_url, tmp_path, RATELIMIT_SIGNIN_PER_ACCOUNT="2 per minute"
    ) as limited:
        client = limited.test_client()
        attempts = [
            token_request(
                client, tenant.id, grant_type="password", username="alice", password=password
            )
            for password in ("wrong password", PASSWORD, PASSWORD)
        ]
        assert [r.status_code for r in attempts] == [401, 200, 429]
        same_account = token_request(
            client, tenant.id, grant_type="password", username="ALICE", password=PASSWORD
        )
        assert same_account.status_code == 429
        limited_response = attempts[2]
        body = limited_response.get_json()
        assert isinstance(body["error"], str) and body["error"]
        assert isinstance(body["error_description"], str)
        retry_after = limited_response.headers["Retry-After"]
        assert retry_after.isdigit() and 0 < int(retry_after) <= 60
        assert limited_response.headers["x-ratelimit-limit"] == "2"
        assert limited_response.headers["x-ratelimit-remaining"] == "0"
        assert int(limited_response.headers["x-ratelimit-reset"]) > 0

        other = token_request(
            client, tenant.id, grant_type="password", username="bob", password=PASSWORD
        )
        assert_oauth_error(other, 401, "invalid_grant")


def test_a_hash_made_with_older_parameters_is_upgraded_at_sign_in(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    from argon2 import PasswordHasher, Type
    from sqlalchemy import update

    from app.core.db import db
    from app.core.tenancy import tenant_scope
    from app.users.models import User

    factories.make_user(app, tenant.id, user_id="old-hash", username="oldhash", password=PASSWORD)
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1, type=Type.ID)
    with app.app_context(), tenant_scope(tenant.id):
        db.session.execute(
            update(User).where(User.id == "old-hash").values(password_hash=weak.hash(PASSWORD))
        )
        db.session.commit()

    sign_in(client, tenant.id, "oldhash")

    with app.app_context(), tenant_scope(tenant.id):
        stored = db.session.get(User, (tenant.id, "old-hash")).password_hash
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert PasswordHasher().verify(stored, PASSWORD)
    sign_in(client, tenant.id, "oldhash")  # the new hash works
