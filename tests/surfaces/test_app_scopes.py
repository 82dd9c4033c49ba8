"""What a registered application's tokens may do (issue 22, item 3): the scopes it asked
for, intersected with what the user holds and what the application is allowed
(`allowed_scopes`, default the OIDC and current-user scopes); a refresh token only with
`offline_access`; refreshes keep the session's grant and never widen it. A password grant
naming no application keeps its old behaviour: everything the user holds, and a refresh
token."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.core.scopes import ADMIN_SCOPES, APP_SCOPES, CURRENT_USER_SCOPES, DEFAULT_APP_SCOPES
from tests import factories
from tests.factories import AppHandle, TenantHandle, assert_error
from tests.oauth_support import (
    PASSWORD,
    assert_oauth_error,
    bearer,
    claims,
    code_for,
    exchange,
    login_page,
    make_alice,
    query_of,
    sign_in,
    token_request,
)


@pytest.fixture()
def admin(app: Flask, tenant: TenantHandle) -> str:
    """alice, in the admin group: her own tokens hold every any-user scope."""
    return make_alice(app, tenant.id, permissions_group="admin")


@pytest.fixture()
def spa(app: Flask, tenant: TenantHandle) -> AppHandle:
    return factories.make_application(app, tenant.id, name="SPA")


def _password_grant(client: FlaskClient, handle: AppHandle, scope: str | None, **extra: str) -> Any:
    fields = {"scope": scope} if scope is not None else {}
    return token_request(
        client,
        None,
        grant_type="password",
        username=extra.pop("username", "alice"),
        password=PASSWORD,
        client_id=handle.client_id,
        **fields,
        **extra,
    )


def _refresh(client: FlaskClient, handle: AppHandle, refresh_token: str, **extra: str) -> Any:
    return token_request(
        client,
        None,
        grant_type="refresh_token",
        refresh_token=refresh_token,
        client_id=handle.client_id,
        **extra,
    )


def _scopes(body: dict[str, Any]) -> list[str]:
    assert claims(body["access_token"])["scope"] == body["scope"]
    return body["scope"].split()


def test_an_app_asking_for_openid_gets_openid_and_no_refresh_token(
    client: FlaskClient, tenant: TenantHandle, spa: AppHandle, admin: str
) -> None:
    # Before: delete:users, read:secrets, read:audit … and a refresh token.
    code, verifier = code_for(client, spa, scope="openid")
    answer = exchange(client, spa, code, verifier)

    assert answer.status_code == 200, answer.get_data(as_text=True)
    body = answer.get_json()
    assert _scopes(body) == ["openid"]
    assert "refresh_token" not in body
    assert claims(body["access_token"])["azp"] == spa.client_id
    # It learns who signed in (OIDC userinfo: `sub`, no claim it did not ask for), and
    # may read nothing else.
    info = client.get("/userinfo", headers=bearer(body["access_token"]))
    assert info.status_code == 200 and info.get_json() == {"sub": admin}
    assert "email" not in claims(body["id_token"]) and "name" not in claims(body["id_token"])
    for path in ("/user/profile", f"/user/{admin}/secrets", "/audit-events"):
        refused = client.get(path, headers=bearer(body["access_token"]))
        assert_error(refused, 403, "insufficient_scope")


def test_admin_scopes_reach_an_app_only_when_it_is_allowed_them(
    app: Flask,
    client: FlaskClient,
    root_headers: dict,
    tenant: TenantHandle,
    spa: AppHandle,
    admin: str,
) -> None:
    factories.make_user(app, tenant.id, user_id="bob-1", username="bob", password=PASSWORD)
    asked = "openid read:users delete:users read:current_user read:audit"

    by_default = _password_grant(client, spa, asked)
    assert by_default.status_code == 200, by_default.get_data(as_text=True)
    assert _scopes(by_default.get_json()) == ["openid", "read:current_user"]

    allowed = client.patch(
        f"/tenants/{tenant.id}/applications/{spa.client_id}",
        json={"allowed_scopes": [*DEFAULT_APP_SCOPES, "read:users"]},
        headers=root_headers,
    )
    assert allowed.status_code == 200, allowed.get_data(as_text=True)
    trusted = _password_grant(client, spa, asked).get_json()
    assert _scopes(trusted) == ["openid", "read:users", "read:current_user"]
    assert client.get("/user/bob-1", headers=bearer(trusted["access_token"])).status_code == 200
    # The app's allowance gives no one a scope they do not hold.
    plain = _password_grant(client, spa, asked, username="bob").get_json()
    assert _scopes(plain) == ["openid", "read:current_user"]

    # A password grant naming no application: everything alice holds, as before.
    legacy = sign_in(client, tenant.id, "alice")
    assert set(_scopes(legacy)) == set(CURRENT_USER_SCOPES) | set(ADMIN_SCOPES)
    assert legacy["refresh_token"]


def test_the_claims_follow_the_profile_and_email_scopes(
    client: FlaskClient, spa: AppHandle, admin: str
) -> None:
    """OIDC Core §5.4: `email` asks for the email claims, `profile` for the others."""
    body = _password_grant(client, spa, "openid email").get_json()
    info = client.get("/userinfo", headers=bearer(body["access_token"])).get_json()
    assert info == {"sub": admin, "email": "alice@example.com", "email_verified": True}
    id_token = claims(body["id_token"])
    assert id_token["email"] == "alice@example.com" and "preferred_username" not in id_token
    profile = _password_grant(client, spa, "openid profile").get_json()
    info = client.get("/userinfo", headers=bearer(profile["access_token"])).get_json()
    assert info["preferred_username"] == "alice" and "email" not in info


def test_an_app_that_names_no_scope_gets_openid(
    client: FlaskClient, spa: AppHandle, admin: str
) -> None:
    body = _password_grant(client, spa, None).get_json()
    assert _scopes(body) == ["openid"] and "refresh_token" not in body


def test_an_unknown_scope_is_invalid_scope_naming_the_closest(
    client: FlaskClient, spa: AppHandle, admin: str
) -> None:
    for scope in ("openid read:user", "openid manage:applications"):
        refused = assert_oauth_error(_password_grant(client, spa, scope), 400, "invalid_scope")
        assert "Unknown scope" in refused["error_description"]
    refused = assert_oauth_error(_password_grant(client, spa, "read:user"), 400, "invalid_scope")
    assert "did you mean 'read:users'" in refused["error_description"]


def test_refresh_keeps_the_grant_narrows_on_request_and_never_widens(
    client: FlaskClient, root_headers: dict, tenant: TenantHandle, spa: AppHandle, admin: str
) -> None:
    asked = "openid offline_access read:current_user read:current_user_secrets"
    first = _password_grant(client, spa, asked).get_json()
    assert _scopes(first) == asked.split() and first["refresh_token"]

    again = _refresh(client, spa, first["refresh_token"])
    assert again.status_code == 200, again.get_data(as_text=True)
    assert _scopes(again.get_json()) == asked.split()

    wider = _refresh(client, spa, again.get_json()["refresh_token"], scope="openid read:users")
    assert_oauth_error(wider, 400, "invalid_scope")
    # A narrower access token for this refresh (RFC 6749 §6); the session keeps its grant.
    narrow = _refresh(client, spa, again.get_json()["refresh_token"], scope="openid").get_json()
    assert _scopes(narrow) == ["openid"] and narrow["refresh_token"]
    whole = _refresh(client, spa, narrow["refresh_token"]).get_json()
    assert _scopes(whole) == asked.split()

    # The app loses scopes: its sessions lose them at their next refresh, for good.
    path = f"/tenants/{tenant.id}/applications/{spa.client_id}"
    client.patch(path, json={"allowed_scopes": ["openid", "offline_access"]}, headers=root_headers)
    cut = _refresh(client, spa, whole["refresh_token"]).get_json()
    assert _scopes(cut) == ["openid", "offline_access"]
    client.patch(path, json={"allowed_scopes": list(DEFAULT_APP_SCOPES)}, headers=root_headers)
    after = _refresh(client, spa, cut["refresh_token"]).get_json()
    assert _scopes(after) == ["openid", "offline_access"]

    # Without offline_access any more, the refresh answers no refresh token.
    client.patch(path, json={"allowed_scopes": ["openid"]}, headers=root_headers)
    last = _refresh(client, spa, after["refresh_token"]).get_json()
    assert _scopes(last) == ["openid"] and "refresh_token" not in last


def test_allowed_scopes_through_the_platform_api(
    client: FlaskClient, root_headers: dict, tenant: TenantHandle
) -> None:
    path = f"/tenants/{tenant.id}/applications"
    body = {"name": "Admin console", "type": "public", "redirect_uris": ["https://a.test/cb"]}

    plain = client.post(path, json=body, headers=root_headers)
    assert plain.status_code == 201, plain.get_data(as_text=True)
    assert plain.get_json()["allowed_scopes"] == list(DEFAULT_APP_SCOPES)
    console = client.post(
        path, json={**body, "allowed_scopes": ["openid", "read:users"]}, headers=root_headers
    )
    client_id = console.get_json()["client_id"]
    read = client.get(f"{path}/{client_id}", headers=root_headers).get_json()
    assert read["allowed_scopes"] == ["openid", "read:users"]
    patched = client.patch(
        f"{path}/{client_id}", json={"allowed_scopes": ["openid"]}, headers=root_headers
    )
    assert patched.get_json()["allowed_scopes"] == ["openid"]

    for bad in (["read:user"], ["manage:applications"], ["*"], ["read:table:orders"]):
        refused = client.post(path, json={**body, "allowed_scopes": bad}, headers=root_headers)
        error = assert_error(refused, 400, "validation_failed")
        [message] = error["fields"]["allowed_scopes"]["0"]
        assert "Unknown scope" in message
    typo = client.patch(
        f"{path}/{client_id}", json={"allowed_scopes": ["read:user"]}, headers=root_headers
    )
    assert "did you mean 'read:users'" in str(
        assert_error(typo, 400, "validation_failed")["fields"]
    )
    assert len(client.get(path, headers=root_headers).get_json()) == 2


def test_discovery_lists_what_an_application_may_ask_for(client: FlaskClient) -> None:
    document = client.get("/.well-known/openid-configuration").get_json()
    assert document["scopes_supported"] == list(APP_SCOPES)
    assert "read:users" in document["scopes_supported"]
    assert "manage:applications" not in document["scopes_supported"]


def test_an_authorization_request_with_a_typo_names_the_scope_meant(
    client: FlaskClient, spa: AppHandle
) -> None:
    answer = login_page(client, spa, scope="openid read:user", state="s")
    assert answer.status_code == 302
    params = query_of(answer.headers["Location"])
    assert params["error"] == "invalid_scope"
    assert "did you mean 'read:users'" in params["error_description"]
