"""Blocked users, end to end: blocking through the Auth0 SDK refuses every sign-in grant
and every live token at once; unblocking restores sign-in and the sessions that were live
before the block."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import factories
from tests.factories import PASSWORD, auth0_client, bearer
from tests.oauth_support import (
    assert_invalid_token,
    assert_oauth_error,
    audit_events,
    refresh,
    token_request,
)


@pytest.fixture(scope="module")
def base_url(app) -> Iterator[str]:
    with factories.serve(app) as url:
        yield url


def signin(client, tenant_id: str):
    return token_request(
        client, tenant_id, grant_type="password", username="bea", password=PASSWORD
    )


def test_block_refuses_every_grant_and_live_tokens_and_unblock_restores(app, client, base_url):
    tenant = factories.make_tenant(app, "blockers", allow_user_token_management=True)
    factories.make_user(app, tenant.id, user_id="bea", username="bea", password=PASSWORD)
    before = signin(client, tenant.id).get_json()
    access, refresh_token = before["access_token"], before["refresh_token"]
    custom = client.post("/token/generate", json={"userId": "bea"}, headers=tenant.m2_headers)
    assert custom.status_code == 200
    assert client.get("/user/profile", headers=bearer(access)).status_code == 200

    sdk = auth0_client(base_url, tenant.key)
    assert sdk.users.update("bea", blocked=True).blocked is True

    # Live tokens stop at once, on every surface.
    assert_invalid_token(client.get("/user/profile", headers=bearer(access)))
    assert_invalid_token(client.get("/users/me", headers=bearer(access)))
    raw = client.get("/api/v2/users/bea", headers=bearer(access))
    assert raw.status_code == 401 and raw.get_json()["errorCode"] == "invalid_token"
    # Every grant refuses the user.
    assert_oauth_error(signin(client, tenant.id), 401, "invalid_grant")
    assert_oauth_error(refresh(client, refresh_token), 401, "invalid_grant")
    signed = client.post(
        "/token/signin", json={"token": custom.get_json()["token"]}, headers=tenant.m2_headers
    )
    assert signed.status_code == 401
    via_refresh = client.post(
        "/token/refresh", json={"refreshToken": refresh_token}, headers=tenant.m2_headers
    )
    assert via_refresh.status_code == 401
    assert sdk.users.get("bea").blocked is True

    sdk.users.update("bea", blocked=False)
    # Nothing was revoked: the session that was live before the block works again.
    assert client.get("/user/profile", headers=bearer(access)).status_code == 200
    assert refresh(client, refresh_token).status_code == 200
    assert signin(client, tenant.id).status_code == 200

    events = audit_events(client, tenant.headers, "user.blocked")
    assert [e["data"]["blocked"] for e in events] == [False, True]  # newest first
    assert all(e["user_id"] == "bea" and e["actor"].startswith("api_key:") for e in events)


def test_user_created_blocked_cannot_sign_in(app, client, base_url, tenant):
    sdk = auth0_client(base_url, tenant.key, tenant.id)
    created = sdk.users.create(
        connection="Username-Password-Authentication",
        user_id="bea",
        username="bea",
        password=PASSWORD,
        blocked=True,
    )
    assert created.blocked is True
    assert_oauth_error(signin(client, tenant.id), 401, "invalid_grant")
    assert len(audit_events(client, tenant.headers, "user.blocked")) == 1


def test_user_cannot_unblock_itself(app, client, base_url, tenant):
    factories.make_user(app, tenant.id, user_id="bea", username="bea", password=PASSWORD)
    token = signin(client, tenant.id).get_json()["access_token"]
    response = client.patch("/api/v2/users/bea", json={"blocked": True}, headers=bearer(token))
    assert response.status_code == 403
    assert response.get_json()["errorCode"] == "insufficient_scope"
    assert auth0_client(base_url, tenant.key).users.get("bea").blocked is False
