"""Custom tokens (the M2 Accounts API): `/token/generate`, `/token/signin`, `/token/refresh`,
and the audit event the real worker writes for every issued token."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.core import security
from app.core.db import db
from tests import factories
from tests.conftest import make_config
from tests.factories import TenantHandle, assert_error, bearer

SESSION_KEYS = {"idToken", "refreshToken", "expiresIn", "accessToken", "userId", "isNewUser"}
WORKER_TIMEOUT = 10.0


@pytest.fixture()
def enabled(app: Flask) -> TenantHandle:
    """A tenant that allows user-token management (the default tenant does not)."""
    return factories.make_tenant(app, "initech", allow_user_token_management=True)


def generate(
    client: FlaskClient, tenant: TenantHandle, user_id: Any, path: str = "/token/generate"
):
    return client.post(path, json={"userId": user_id}, headers=tenant.m2_headers)


def new_token(client: FlaskClient, tenant: TenantHandle, user_id: str) -> str:
    response = generate(client, tenant, user_id)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["token"]


def signin(client: FlaskClient, tenant: TenantHandle, token: str, path: str = "/token/signin"):
    return client.post(path, json={"token": token}, headers=tenant.m2_headers)


def audit_events(client: FlaskClient, tenant: TenantHandle, action: str) -> list[dict[str, Any]]:
    response = client.get(f"/audit-events?action={action}", headers=tenant.headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["items"]


def wait_for_events(
    client: FlaskClient, tenant: TenantHandle, action: str, count: int
) -> list[dict[str, Any]]:
    """Poll the audit log until `count` events of `action` are there (written by the worker)."""

    def enough() -> list[dict[str, Any]] | None:
        events = audit_events(client, tenant, action)
        return events if len(events) >= count else None

    return factories.wait_until(enough, WORKER_TIMEOUT) or audit_events(client, tenant, action)


def logins_count(client: FlaskClient, tenant: TenantHandle, user_id: str) -> int:
    response = client.get(f"/user/{user_id}/profile", headers=tenant.headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["logins_count"]


# --- POST /token/generate ----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/token/generate", "/token/generate/"])
def test_generate_returns_a_token_and_its_lifetime(client, enabled, path):
    response = generate(client, enabled, "gen-1", path)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"token", "expiresIn"}
    assert isinstance(body["token"], str) and len(body["token"]) > 20
    assert body["expiresIn"] == 3600  # the default, and at most one hour
    assert signin(client, enabled, body["token"]).status_code == 200


def test_generate_is_refused_when_the_tenant_disallows_it(client, tenant):
    body = assert_error(generate(client, tenant, "gen-1"), 403, "user_token_management_disabled")
    assert body["error"] == "user_token_management_disabled"
    assert "allow_user_token_management" in body["message"]


def test_generate_needs_the_create_user_tokens_scope(app, client, enabled):
    narrow = factories.make_key(app, enabled.id, ["read:users", "create:users"])
    headers = {"x-api-key": narrow, "x-m2-organization-id": enabled.id}
    response = client.post("/token/generate", json={"userId": "gen-1"}, headers=headers)
    body = assert_error(response, 403, "insufficient_scope")
    assert "create:user_tokens" in body["message"]


@pytest.mark.parametrize(
    "body",
    [{}, {"userId": ""}, {"userId": "has space"}, {"userId": 42}, {"userId": None},
     {"userId": "x" * 129}, {"userId": "ok", "extra": 1}],
)  # fmt: skip
def test_generate_rejects_a_missing_or_invalid_user_id(client, enabled, body):
    assert_error(
        client.post("/token/generate", json=body, headers=enabled.m2_headers),
        400,
        "validation_failed",
    )


def test_generate_without_a_key_is_401(client, enabled):
    headers = {"x-m2-organization-id": enabled.id}
    response = client.post("/token/generate", json={"userId": "gen-1"}, headers=headers)
    assert_error(response, 401, "missing_credentials")
    assert "Bearer" in response.headers["WWW-Authenticate"]


# --- POST /token/signin ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/token/signin", "/token/signin/"])
def test_signin_with_a_new_id_signs_the_user_up(client, enabled, path):
    assert client.get("/users/fresh-1", headers=enabled.m2_headers).status_code == 404
    response = signin(client, enabled, new_token(client, enabled, "fresh-1"), path)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == SESSION_KEYS
    assert body["userId"] == "fresh-1"
    assert body["isNewUser"] is True
    assert body["expiresIn"] > 0
    account = client.get("/users/fresh-1", headers=enabled.m2_headers)
    assert account.status_code == 200
    assert account.get_json()["uid"] == "fresh-1"
    claims = jwt.decode(body["accessToken"], options={"verify_signature": False})
    assert (claims["sub"], claims["aud"], claims["tid"]) == ("fresh-1", enabled.id, enabled.id)
    id_claims = jwt.decode(body["idToken"], options={"verify_signature": False})
    assert (id_claims["sub"], id_claims["aud"]) == ("fresh-1", enabled.id)


def test_signin_of_an_existing_user_is_not_new(app, client, enabled):
    factories.make_user(app, enabled.id, user_id="known-1", email="known@example.com")
    body = signin(client, enabled, new_token(client, enabled, "known-1")).get_json()
    assert body["userId"] == "known-1"
    assert body["isNewUser"] is False
    assert factories.count_users(app, enabled.id) == 1
    assert logins_count(client, enabled, "known-1") == 1


def test_signin_audits_synchronously(client, enabled):
    body = signin(client, enabled, new_token(client, enabled, "audited-1")).get_json()
    assert body["isNewUser"] is True
    created = audit_events(client, enabled, "user.created")
    signed_in = audit_events(client, enabled, "user.signed_in")
    assert [e["user_id"] for e in created] == ["audited-1"]
    assert [e["user_id"] for e in signed_in] == ["audited-1"]
    assert signed_in[0]["actor"] == f"api_key:{enabled.key_id}"


def test_access_token_works_as_a_bearer(client, enabled):
    body = signin(client, enabled, new_token(client, enabled, "bearer-1")).get_json()
    current = client.get("/users/current", headers=bearer(body["accessToken"]))
    assert current.status_code == 200, current.get_data(as_text=True)
    assert current.get_json()["uid"] == "bearer-1"
    profile = client.get("/user/profile", headers=bearer(body["accessToken"]))
    assert profile.status_code == 200, profile.get_data(as_text=True)
    assert profile.get_json()["id"] == "bearer-1"
    assert profile.get_json()["logins_count"] == 1


def test_a_token_is_single_use(client, enabled):
    token = new_token(client, enabled, "once-1")
    assert signin(client, enabled, token).status_code == 200
    assert_error(signin(client, enabled, token), 401, "invalid_custom_token")
    assert logins_count(client, enabled, "once-1") == 1
    assert len(audit_events(client, enabled, "user.signed_in")) == 1
    assert len(audit_events(client, enabled, "user.created")) == 1


def test_forged_or_garbage_tokens_are_401(app, client, enabled):
    real = new_token(client, enabled, "forged-1")
    payload = {"tid": enabled.id, "uid": "forged-1", "jti": "0" * 32}
    forged = [
        "garbage",
        real[:-3] + ("AAA" if not real.endswith("AAA") else "BBB"),  # tampered signature
        security.signed_dumps("not-the-secret-key", "custom-token", payload),
        security.signed_dumps(app.config["SECRET_KEY"], "password-reset", payload),
    ]
    for token in forged:
        assert_error(signin(client, enabled, token), 401, "invalid_custom_token")
    assert client.get("/users/forged-1", headers=enabled.m2_headers).status_code == 404
    assert signin(client, enabled, real).status_code == 200  # the real one is still unused


def test_a_token_of_another_tenant_is_401(app, client, enabled):
    other_tenant = factories.make_tenant(app, "umbrella", allow_user_token_management=True)
    token = new_token(client, enabled, "cross-1")
    assert_error(signin(client, other_tenant, token), 401, "invalid_custom_token")
    assert factories.count_users(app, other_tenant.id) == 0
    assert factories.count_users(app, enabled.id) == 0
    assert signin(client, enabled, token).status_code == 200  # the failed try did not use it


def test_an_expired_token_is_401(app, database_url, tmp_path: Path, enabled):
    config = make_config(
        database_url,
        tmp_path,
        CUSTOM_TOKEN_TTL="1",
        SECRET_KEY=app.config["SECRET_KEY"],
        ENCRYPTION_KEYS=",".join(app.config["ENCRYPTION_KEYS"]),
    )
    short = create_app(config)
    try:
        client = short.test_client()
        fresh = generate(client, enabled, "fresh-exp")
        stale = generate(client, enabled, "stale-exp")
        assert fresh.get_json()["expiresIn"] == 1
        assert signin(client, enabled, fresh.get_json()["token"]).status_code == 200
        time.sleep(2)  # the token's age must exceed its one-second lifetime
        assert_error(
            signin(client, enabled, stale.get_json()["token"]), 401, "invalid_custom_token"
        )
        assert client.get("/users/stale-exp", headers=enabled.m2_headers).status_code == 404
    finally:
        with short.app_context():
            db.engine.dispose()


def test_a_blocked_user_cannot_sign_in(app, client, enabled):
    factories.make_user(app, enabled.id, user_id="blocked-1", blocked=True)
    assert_error(
        signin(client, enabled, new_token(client, enabled, "blocked-1")), 401, "user_blocked"
    )
    assert logins_count(client, enabled, "blocked-1") == 0
    assert audit_events(client, enabled, "user.signed_in") == []


# --- POST /token/refresh -----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/token/refresh", "/token/refresh/"])
def test_refresh_returns_new_tokens_for_the_same_user(client, enabled, path):
    first = signin(client, enabled, new_token(client, enabled, "refresh-1")).get_json()
    response = client.post(
        path, json={"refreshToken": first["refreshToken"]}, headers=enabled.m2_headers
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == SESSION_KEYS
    assert body["userId"] == "refresh-1"
    assert body["isNewUser"] is False
    assert body["refreshToken"] != first["refreshToken"]
    current = client.get("/users/current", headers=bearer(body["accessToken"]))
    assert current.status_code == 200
    assert current.get_json()["uid"] == "refresh-1"


@pytest.mark.parametrize("token", ["garbage", "rt_nope_nope", "rt_"])
def test_refresh_with_a_garbage_token_is_401(client, enabled, token):
    response = client.post(
        "/token/refresh", json={"refreshToken": token}, headers=enabled.m2_headers
    )
    assert_error(response, 401, "invalid_grant")


def test_refresh_with_another_tenants_key_is_401(app, client, enabled):
    other_tenant = factories.make_tenant(app, "umbrella", allow_user_token_management=True)
    first = signin(client, enabled, new_token(client, enabled, "refresh-2")).get_json()
    body = {"refreshToken": first["refreshToken"]}
    assert_error(
        client.post("/token/refresh", json=body, headers=other_tenant.m2_headers),
        401,
        "invalid_grant",
    )
    again = client.post("/token/refresh", json=body, headers=enabled.m2_headers)
    assert again.status_code == 200
    assert again.get_json()["userId"] == "refresh-2"


# --- audit by the worker -----------------------------------------------------------------


def test_issuance_is_audited_by_the_worker(client, enabled, celery_worker):
    token = new_token(client, enabled, "worker-1")
    events = wait_for_events(client, enabled, "token.custom_issued", 1)
    assert len(events) == 1, events
    event = events[0]
    assert event["user_id"] == "worker-1"
    assert event["actor"] == f"api_key:{enabled.key_id}"
    assert token not in json.dumps(event)


def test_two_tokens_give_two_events(client, enabled, celery_worker):
    new_token(client, enabled, "worker-2")
    new_token(client, enabled, "worker-2")
    events = wait_for_events(client, enabled, "token.custom_issued", 2)
    assert len(events) == 2, events
    assert {e["user_id"] for e in events} == {"worker-2"}
    assert events[0]["id"] != events[1]["id"]
