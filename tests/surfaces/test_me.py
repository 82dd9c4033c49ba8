"""The me surface (the RUAL user API): `GET/PUT/PATCH /users/me`, `PUT /users/me/settings`, with a
user's bearer token, the RUAL user API's error keys, ETags and the password change."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests import factories
from tests.factories import PASSWORD, TenantHandle, assert_me_error, bearer

NEW_PASSWORD = "new staple 2024 horse"
DOCUMENT_KEYS = {
    "custom_scopes",
    "username",
    "firstname",
    "lastname",
    "email",
    "permissions_group",
    "settings",
    "require_twofactor_auth",
    "last_activity_date",
    "device_token",
    "device_type",
    "last_activity",
    "_meta",
    "websocket_id",
}
META_KEYS = {
    "guid",
    "expiry",
    "entity",
    "removed",
    "created",
    "updated",
    "ums",
    "cms",
    "update_hash",
}


@pytest.fixture()
def joe(app: Flask, tenant: TenantHandle) -> str:
    return factories.make_user(
        app,
        tenant.id,
        user_id="u-joe",
        username="joe",
        email="joe@example.com",
        password=PASSWORD,
        permissions_group="developer",
        custom_scopes=["app:beta"],
        first_name="Joe",
        last_name="Do",
    )


@pytest.fixture()
def token(client: FlaskClient, tenant: TenantHandle, joe: str) -> str:
    return factories.sign_in(client, tenant.id, "joe", PASSWORD)["access_token"]


def get_me(client: FlaskClient, access_token: str) -> dict[str, Any]:
    response = client.get("/users/me", headers=bearer(access_token))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def names(client: FlaskClient, tenant: TenantHandle) -> tuple[str, str]:
    """The stored names, read with the tenant's API key (not through the me surface)."""
    body = client.get("/user/u-joe", headers=tenant.headers).get_json()
    return body["first_name"], body["last_name"]


def oauth_status(client: FlaskClient, tenant: TenantHandle, password: str) -> int:
    data = {"grant_type": "password", "username": "joe", "password": password}
    return client.post("/oauth/token", headers={"X-Tenant-ID": tenant.id}, data=data).status_code


# --- GET /users/me -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/users/me", "/users/me/"])
def test_get_me_returns_the_user_document(client, token, path):
    response = client.get(path, headers=bearer(token))
    assert response.status_code == 200, response.get_data(as_text=True)
    doc = response.get_json()
    assert set(doc) == DOCUMENT_KEYS
    assert doc["custom_scopes"] == ["app:beta"]
    assert (doc["username"], doc["firstname"], doc["lastname"]) == ("joe", "Joe", "Do")
    assert doc["email"] == "joe@example.com"
    assert doc["permissions_group"] == "developer"
    assert doc["settings"] == []
    assert doc["require_twofactor_auth"] is False
    assert doc["device_token"] is None and doc["device_type"] is None
    assert doc["websocket_id"] is None
    for key in ("last_activity_date", "last_activity"):
        assert doc[key] is None or isinstance(doc[key], int)
    meta = doc["_meta"]
    assert set(meta) == META_KEYS
    assert meta["guid"] == "u-joe"
    assert meta["expiry"] == -1
    assert meta["removed"] == 0
    assert isinstance(meta["entity"], int)
    assert all(isinstance(meta[k], int) for k in ("created", "updated", "ums", "cms"))
    assert abs(meta["created"] - time.time()) < 120  # seconds, not milliseconds
    assert meta["ums"] // 1000 == meta["updated"]
    assert meta["cms"] // 1000 == meta["created"]
    assert meta["created"] <= meta["updated"]
    assert response.headers["ETag"] == f'"{meta["update_hash"]}"'


def test_api_key_on_me_is_403_in_the_me_shape(client, tenant, joe):
    assert_me_error(client.get("/users/me", headers=tenant.headers), 403, "USER_TOKEN_REQUIRED")


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH"])
def test_no_credential_is_401_in_the_me_shape(client, tenant, joe, method):
    response = client.open("/users/me", method=method, json={"firstname": "X"})
    assert_me_error(response, 401, "MISSING_CREDENTIALS")
    assert "Bearer" in response.headers["WWW-Authenticate"]


# --- PUT / PATCH /users/me ---------------------------------------------------------------


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_update_names(app, client, tenant, token, method):
    before = client.get("/users/me", headers=bearer(token)).headers["ETag"]
    body = {"firstname": "Jane", "lastname": "Roe"}
    response = client.open("/users/me", method=method, json=body, headers=bearer(token))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {
        "username": "joe",
        "firstname": "Jane",
        "lastname": "Roe",
        "_meta": {"guid": "u-joe"},
    }
    doc = get_me(client, token)
    assert (doc["firstname"], doc["lastname"]) == ("Jane", "Roe")
    assert names(client, tenant) == ("Jane", "Roe")
    assert client.get("/users/me", headers=bearer(token)).headers["ETag"] != before


@pytest.mark.parametrize("content_type", [None, "application/json"])
def test_no_body_is_no_body_given(app, client, tenant, token, content_type):
    headers = bearer(token)
    if content_type:
        headers["Content-Type"] = content_type
    response = client.put("/users/me", headers=headers)
    assert_me_error(response, 400, "NO_BODY_GIVEN")
    assert names(client, tenant) == ("Joe", "Do")


@pytest.mark.parametrize("body", [{}, {"nickname": "Jo", "age": 3}])
def test_a_body_without_fields_is_no_mutations_given(app, client, tenant, token, body):
    response = client.patch("/users/me", json=body, headers=bearer(token))
    assert_me_error(response, 400, "NO_MUTATIONS_GIVEN")
    assert names(client, tenant) == ("Joe", "Do")


@pytest.mark.parametrize(
    "raw",
    ['{"firstname": "Jane"', '[{"firstname": "Jane"}]', '{"firstname": 5}', '"Jane"'],
)
def test_a_malformed_body_is_invalid_body(app, client, tenant, token, raw):
    headers = bearer(token, **{"Content-Type": "application/json"})
    response = client.patch("/users/me", data=raw, headers=headers)
    assert_me_error(response, 400, "INVALID_BODY")
    assert names(client, tenant) == ("Joe", "Do")


def test_if_match_guards_the_update(app, client, tenant, token):
    stale = client.get("/users/me", headers=bearer(token)).headers["ETag"]
    first = client.patch("/users/me", json={"firstname": "Jane"}, headers=bearer(token))
    assert first.status_code == 200
    response = client.patch(
        "/users/me", json={"firstname": "Late"}, headers=bearer(token, **{"If-Match": stale})
    )
    assert_me_error(response, 412, "ETAG_MISMATCH")
    assert names(client, tenant) == ("Jane", "Do")
    current = client.get("/users/me", headers=bearer(token)).headers["ETag"]
    assert current != stale
    response = client.patch(
        "/users/me", json={"firstname": "Fresh"}, headers=bearer(token, **{"If-Match": current})
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert names(client, tenant) == ("Fresh", "Do")


# --- password change ---------------------------------------------------------------------


def test_a_too_short_password_is_refused(client, tenant, token):
    response = client.patch("/users/me", json={"password": "short"}, headers=bearer(token))
    assert_me_error(response, 400, "INVALID_BODY")
    assert oauth_status(client, tenant, PASSWORD) == 200
    assert get_me(client, token)["_meta"]["guid"] == "u-joe"  # the session still works


def test_the_password_policy_is_the_tenants(app, client):
    strict = factories.make_tenant(app, "strict", password_min_length=14)
    factories.make_user(app, strict.id, user_id="s1", username="sam", password="a" * 14)
    access = factories.sign_in(client, strict.id, "sam", "a" * 14)["access_token"]
    response = client.put("/users/me", json={"password": "b" * 13}, headers=bearer(access))
    assert_me_error(response, 400, "INVALID_BODY")
    assert factories.password_matches(app, strict.id, "s1", "a" * 14)
    response = client.put("/users/me", json={"password": "b" * 14}, headers=bearer(access))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert factories.password_matches(app, strict.id, "s1", "b" * 14)


def test_a_password_change_revokes_the_other_sessions(client, tenant, joe):
    other = factories.sign_in(client, tenant.id, "joe", PASSWORD)
    mine = factories.sign_in(client, tenant.id, "joe", PASSWORD)
    assert get_me(client, other["access_token"])["username"] == "joe"
    response = client.patch(
        "/users/me", json={"password": NEW_PASSWORD}, headers=bearer(mine["access_token"])
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["_meta"] == {"guid": "u-joe"}
    assert "password" not in response.get_json()

    assert oauth_status(client, tenant, PASSWORD) == 401
    assert oauth_status(client, tenant, NEW_PASSWORD) == 200
    assert_me_error(
        client.get("/users/me", headers=bearer(other["access_token"])), 401, "INVALID_TOKEN"
    )
    refresh = {"grant_type": "refresh_token"}
    revoked = client.post("/oauth/token", data={**refresh, "refresh_token": other["refresh_token"]})
    assert revoked.status_code == 401

    renewed = client.post("/oauth/token", data={**refresh, "refresh_token": mine["refresh_token"]})
    assert renewed.status_code == 200, renewed.get_data(as_text=True)
    assert get_me(client, renewed.get_json()["access_token"])["username"] == "joe"

    audit = client.get("/audit-events?action=user.password_changed", headers=tenant.headers)
    events = audit.get_json()["items"]
    assert [e["user_id"] for e in events] == ["u-joe"]
    assert PASSWORD not in json.dumps(events) and NEW_PASSWORD not in json.dumps(events)


# --- PUT /users/me/settings --------------------------------------------------------------


def test_put_settings_replaces_the_list(client, token):
    settings = [
        {"key": "theme", "value": "dark"},
        {"key": "setting_edit_blueprints", "value": "on"},
    ]
    response = client.put("/users/me/settings", json=settings, headers=bearer(token))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == settings
    assert get_me(client, token)["settings"] == settings
    response = client.put("/users/me/settings", json=settings[:1], headers=bearer(token))
    assert response.get_json() == settings[:1]
    assert get_me(client, token)["settings"] == settings[:1]


@pytest.mark.parametrize(
    "body",
    [{"key": "theme", "value": "dark"}, [{"value": "on"}], ["theme"], "theme", [{"key": ""}]],
)
def test_put_settings_rejects_a_bad_body(client, token, body):
    response = client.put("/users/me/settings", json=body, headers=bearer(token))
    assert_me_error(response, 400, "INVALID_BODY")
    assert get_me(client, token)["settings"] == []
