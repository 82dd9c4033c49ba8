"""A user's sign-in sessions on the management surface (Auth0's "Get/Delete sessions for
user"): listed with their apps, device and sign-in method; deleting them ends every access
and refresh token of the user at the next request, audited; scopes; another tenant's user
and an unknown one are 404."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests import factories
from tests.account_support import CHROME_LINUX, app_refresh, app_tokens, browser_client
from tests.factories import AppHandle, TenantHandle, assert_surface_error, bearer
from tests.oauth_support import assert_oauth_error, audit_events, make_alice, refresh, sign_in

REDIRECT = "http://127.0.0.1:8765/callback"


def _path(user_id: str) -> str:
    return f"/api/v2/users/{user_id}/sessions"


def _key(tenant: TenantHandle) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant.key}"}


@pytest.fixture()
def web(app: Flask, tenant: TenantHandle) -> AppHandle:
    return factories.make_application(app, tenant.id, name="Acme Notes", redirect_uris=[REDIRECT])


@pytest.fixture()
def alice(app: Flask, tenant: TenantHandle) -> str:
    return make_alice(app, tenant.id)


def test_the_sessions_are_listed_with_their_apps(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle, alice: str
) -> None:
    app_tokens(browser_client(app), web)  # a browser sign-in session, and the app's under it
    sign_in(client, tenant.id, "alice")  # an API sign-in (password grant)

    answer = client.get(_path(alice), headers=_key(tenant))

    assert answer.status_code == 200, answer.get_data(as_text=True)
    sessions = answer.get_json()["sessions"]
    assert len(sessions) == 2
    by_clients = {len(s["clients"]): s for s in sessions}
    browser, api = by_clients[1], by_clients[0]
    assert browser["clients"] == [{"client_id": web.client_id}]
    assert browser["device"]["initial_user_agent"] == CHROME_LINUX
    assert browser["authentication"]["methods"][0]["name"] == "pwd"
    for session in sessions:
        assert session["user_id"] == alice
        assert session["created_at"].endswith("Z") and session["expires_at"] > session["created_at"]
        assert session["authenticated_at"] and session["last_interacted_at"]
    assert api["id"] != browser["id"]


def test_deleting_the_sessions_ends_every_token_at_the_next_request(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle, alice: str
) -> None:
    tokens = sign_in(client, tenant.id, "alice")
    their_app = app_tokens(browser_client(app), web)
    me = client.get(f"/api/v2/users/{alice}", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200

    assert client.delete(_path(alice), headers=_key(tenant)).status_code == 204

    refused = client.get(f"/api/v2/users/{alice}", headers=bearer(tokens["access_token"]))
    assert_surface_error(refused, 401, "management", "invalid_token")
    assert client.get("/userinfo", headers=bearer(their_app["access_token"])).status_code == 401
    assert_oauth_error(refresh(client, tokens["refresh_token"], tenant.id), 401, "invalid_grant")
    assert_oauth_error(app_refresh(client, web, their_app), 401, "invalid_grant")
    assert client.get(_path(alice), headers=_key(tenant)).get_json() == {"sessions": []}
    (event,) = [
        e for e in audit_events(client, tenant.headers, "session.revoked") if e["target"] == "all"
    ]
    assert event["user_id"] == alice and event["data"] == {"sessions_ended": 3}
    # A sign-in afterwards works: the user is signed out, not locked out.
    again = sign_in(client, tenant.id, "alice")
    assert (
        client.get(f"/api/v2/users/{alice}", headers=bearer(again["access_token"])).status_code
        == 200
    )


def test_scopes(app: Flask, client: FlaskClient, tenant: TenantHandle, alice: str) -> None:
    reader = {"Authorization": f"Bearer {factories.make_key(app, tenant.id, ['read:sessions'])}"}
    users = {"Authorization": f"Bearer {factories.make_key(app, tenant.id, ['read:users'])}"}
    killer = {"Authorization": f"Bearer {factories.make_key(app, tenant.id, ['delete:sessions'])}"}
    updater = {"Authorization": f"Bearer {factories.make_key(app, tenant.id, ['update:users'])}"}
    assert client.get(_path(alice), headers=reader).status_code == 200
    assert client.get(_path(alice), headers=users).status_code == 200
    assert_surface_error(
        client.delete(_path(alice), headers=reader), 403, "management", "insufficient_scope"
    )
    assert_surface_error(
        client.get(_path(alice), headers=killer), 403, "management", "insufficient_scope"
    )
    assert client.delete(_path(alice), headers=killer).status_code == 204
    assert client.delete(_path(alice), headers=updater).status_code == 204
    # A user's own token holds no admin scope: not even its own sessions.
    own = sign_in(client, tenant.id, "alice")["access_token"]
    assert_surface_error(
        client.delete(_path(alice), headers=bearer(own)), 403, "management", "insufficient_scope"
    )


def test_another_tenants_user_is_not_found(
    app: Flask, client: FlaskClient, tenant: TenantHandle, other_tenant: TenantHandle, alice: str
) -> None:
    tokens = sign_in(client, tenant.id, "alice")
    for method in ("get", "delete"):
        for user_id in (alice, "nobody"):
            answer = getattr(client, method)(_path(user_id), headers=_key(other_tenant))
            assert_surface_error(answer, 404, "management", "inexistent_user")
    assert client.get("/userinfo", headers=bearer(tokens["access_token"])).status_code == 200
