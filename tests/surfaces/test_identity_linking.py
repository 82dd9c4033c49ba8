"""Identity linking through the Auth0 SDK: by API key (`provider` + `user_id`) and by the
secondary's ID token (`link_with`); the secondary stops existing and its tokens stop
working; unlinking splits it back."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from auth0.management.core.api_error import ApiError
from sqlalchemy import update

from app.core.db import db
from app.core.tenancy import tenant_scope
from app.tokens import signing
from app.users.models import Identity
from tests import factories
from tests.factories import PASSWORD, auth0_client, bearer, sign_in
from tests.oauth_support import ISSUER, assert_invalid_token, assert_oauth_error, refresh


@pytest.fixture(scope="module")
def base_url(app) -> Iterator[str]:
    with factories.serve(app) as url:
        yield url


@pytest.fixture()
def pair(app, client, tenant) -> dict[str, dict]:
    """A primary and a secondary user, each signed in."""
    factories.make_user(
        app, tenant.id, user_id="prim", username="prim", email="p@example.com", password=PASSWORD
    )
    factories.make_user(
        app,
        tenant.id,
        user_id="sec",
        username="sec",
        email="s@example.com",
        display_name="Second",
        password=PASSWORD,
    )
    return {
        "prim": sign_in(client, tenant.id, "prim", PASSWORD),
        "sec": sign_in(client, tenant.id, "sec", PASSWORD),
    }


def error_of(call, *args, **kwargs) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call(*args, **kwargs)
    return caught.value


def test_link_by_key_moves_the_identity_and_ends_the_secondary(app, client, base_url, tenant, pair):
    sdk = auth0_client(base_url, tenant.key, tenant.id)
    identities = sdk.users.identities.link("prim", provider="gatehouse", user_id="sec")
    assert [(i.provider, i.user_id) for i in identities] == [
        ("gatehouse", "prim"),
        ("gatehouse", "sec"),
    ]
    assert identities[1].connection == "Username-Password-Authentication"
    assert identities[1].profile_data.email == "s@example.com"
    assert identities[1].profile_data.name == "Second"
    assert [i.user_id for i in sdk.users.get("prim").identities] == ["prim", "sec"]

    missing = error_of(sdk.users.get, "sec")
    assert missing.status_code == 404 and missing.body["errorCode"] == "inexistent_user"
    assert_invalid_token(client.get("/user/profile", headers=bearer(pair["sec"]["access_token"])))
    assert_oauth_error(refresh(client, pair["sec"]["refresh_token"]), 401, "invalid_grant")
    # The primary's session is untouched.
    assert (
        client.get("/user/profile", headers=bearer(pair["prim"]["access_token"])).status_code == 200
    )

    events = client.get("/audit-events?action=identity.linked", headers=tenant.headers)
    [event] = events.get_json()["items"]
    assert event["user_id"] == "prim" and event["target"] == "gatehouse|sec"


def test_link_with_the_secondarys_id_token(app, client, base_url, tenant, pair):
    sdk = auth0_client(base_url, pair["prim"]["access_token"])
    identities = sdk.users.identities.link("prim", link_with=pair["sec"]["id_token"])
    assert [i.user_id for i in identities] == ["prim", "sec"]
    assert client.get("/api/v2/users/sec", headers=tenant.headers).status_code == 404


def test_link_with_refuses_tokens_that_prove_nothing(
    app, client, base_url, tenant, other_tenant, pair
):
    factories.make_user(app, other_tenant.id, user_id="far", username="far", password=PASSWORD)
    foreign = sign_in(client, other_tenant.id, "far", PASSWORD)["id_token"]
    with app.app_context():
        now = int(time.time())
        expired = signing.sign(
            {
                "iss": ISSUER,
                "sub": "sec",
                "aud": tenant.id,
                "tid": tenant.id,
                "iat": now - 120,
                "exp": now - 60,
            }
        )
    forged = pair["sec"]["id_token"][:-4] + "AAAA"
    sdk = auth0_client(base_url, pair["prim"]["access_token"])
    for token in (foreign, expired, forged, pair["sec"]["access_token"], "not-a-jwt"):
        error = error_of(sdk.users.identities.link, "prim", link_with=token)
        assert error.status_code == 400 and error.body["errorCode"] == "invalid_body", token
    assert client.get("/api/v2/users/sec", headers=tenant.headers).status_code == 200


def test_link_errors(base_url, tenant, pair):
    sdk = auth0_client(base_url, tenant.key)
    assert (
        error_of(sdk.users.identities.link, "prim", provider="gatehouse", user_id="prim").body[
            "errorCode"
        ]
        == "invalid_body"
    )
    for provider, user_id in (("gatehouse", "ghost"), ("google-oauth2", "sec")):
        error = error_of(sdk.users.identities.link, "prim", provider=provider, user_id=user_id)
        assert error.status_code == 404 and error.body["errorCode"] == "inexistent_user"
    error = error_of(sdk.users.identities.link, "ghost", provider="gatehouse", user_id="sec")
    assert error.status_code == 404 and error.body["errorCode"] == "inexistent_user"
    both = error_of(
        sdk.users.identities.link, "prim", provider="gatehouse", user_id="sec", link_with="x"
    )
    assert both.status_code == 400 and "'link_with'" in both.body["message"]
    assert error_of(sdk.users.identities.link, "prim").status_code == 400


def test_unlink_splits_the_identity_back(app, client, base_url, tenant, pair):
    factories.make_user(app, tenant.id, user_id="third", email="t@example.com")
    sdk = auth0_client(base_url, tenant.key)
    sdk.users.identities.link("sec", provider="gatehouse", user_id="third")
    # Folding sec into prim brings sec's own linked identities along.
    linked = sdk.users.identities.link("prim", provider="auth0", user_id="sec")
    assert [i.user_id for i in linked] == ["prim", "sec", "third"]

    remaining = sdk.users.identities.delete("prim", "gatehouse", "sec")
    assert [(i.provider, i.user_id) for i in remaining] == [
        ("gatehouse", "prim"),
        ("gatehouse", "third"),
    ]
    restored = sdk.users.get("sec")
    assert restored.email == "s@example.com" and restored.username == "sec"
    assert restored.name == "Second" and [i.user_id for i in restored.identities] == ["sec"]

    primary = error_of(sdk.users.identities.delete, "prim", "gatehouse", "prim")
    assert primary.status_code == 400 and primary.body["errorCode"] == "invalid_uri"
    gone = error_of(sdk.users.identities.delete, "prim", "gatehouse", "sec")
    assert gone.status_code == 404
    events = client.get("/audit-events?action=identity.unlinked", headers=tenant.headers)
    assert [e["target"] for e in events.get_json()["items"]] == ["gatehouse|sec"]


def test_user_unlinks_from_itself_with_its_token(client, base_url, tenant, pair):
    sdk = auth0_client(base_url, pair["prim"]["access_token"])
    sdk.users.identities.link("prim", link_with=pair["sec"]["id_token"])
    remaining = sdk.users.identities.delete("prim", "gatehouse", "sec")
    assert [i.user_id for i in remaining] == ["prim"]
    assert client.get("/api/v2/users/sec", headers=tenant.headers).status_code == 200


def _app_session(client, handle, username: str, scope: str = "openid") -> dict:
    """A password grant naming the registered application `handle`."""
    answer = client.post(
        "/oauth/token",
        data={
            "grant_type": "password",
            "username": username,
            "password": PASSWORD,
            "client_id": handle.client_id,
            "scope": scope,
        },
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()


def test_link_with_needs_an_id_token_of_the_callers_own_audience(
    app, client, base_url, tenant, other_tenant, pair
):
    """Issue 22, item 2: any unexpired ID token of any app of the tenant linked. The ID
    token's `aud` must be the application the caller's token was issued to (its `azp`,
    as Auth0 requires), or the tenant for a caller that is no application's."""
    own_app = factories.make_application(app, tenant.id)
    sibling = factories.make_application(app, tenant.id)
    far_app = factories.make_application(app, other_tenant.id)
    primary = _app_session(client, own_app, "prim", "openid update:current_user_identities")
    assert jwt_claims(primary["access_token"])["azp"] == own_app.client_id
    sec_own = _app_session(client, own_app, "sec")["id_token"]
    sec_sibling = _app_session(client, sibling, "sec")["id_token"]
    with app.app_context():
        now = int(time.time())
        foreign_app_token = signing.sign(
            {
                "iss": ISSUER,
                "sub": "sec",
                "aud": far_app.client_id,
                "azp": far_app.client_id,
                "tid": tenant.id,
                "iat": now,
                "exp": now + 60,
                "auth_time": now,
            }
        )

    by_app = auth0_client(base_url, primary["access_token"])
    by_tenant_token = auth0_client(base_url, pair["prim"]["access_token"])
    refusals = (
        (by_app, sec_sibling),  # another app of the tenant
        (by_app, pair["sec"]["id_token"]),  # the tenant's audience, to an app's caller
        (by_app, foreign_app_token),
        (by_tenant_token, sec_own),  # an app's token, to a caller that is no app's
    )
    for sdk, token in refusals:
        error = error_of(sdk.users.identities.link, "prim", link_with=token)
        assert error.status_code == 400 and error.body["errorCode"] == "invalid_body"
    assert client.get("/api/v2/users/sec", headers=tenant.headers).status_code == 200

    identities = by_app.users.identities.link("prim", link_with=sec_own)
    assert [i.user_id for i in identities] == ["prim", "sec"]


def test_link_with_refuses_an_old_sign_in_and_a_revoked_session(
    app, client, base_url, tenant, pair
):
    sdk = auth0_client(base_url, tenant.key)
    # A sign-in older than REAUTH_MAX_AGE_SECONDS, its ID token freshly minted by a refresh.
    old = factories.stale_session(app, client, tenant.id, "sec", PASSWORD)["id_token"]
    error = error_of(sdk.users.identities.link, "prim", link_with=old)
    assert error.status_code == 400 and "sign-in within" in error.body["message"]
    # A token minted before the secondary's password changed (which ends its sessions).
    before = sign_in(client, tenant.id, "sec", PASSWORD)["id_token"]
    changed = client.put(
        "/api/v1/users/sec/password",
        json={"new_password": "another long password"},
        headers={"Authorization": f"Bearer {tenant.key}"},
    )
    assert changed.status_code == 200, changed.get_data(as_text=True)
    error = error_of(sdk.users.identities.link, "prim", link_with=before)
    assert error.status_code == 400 and "session that has ended" in error.body["message"]
    assert client.get("/api/v2/users/sec", headers=tenant.headers).status_code == 200


def test_a_blocked_user_neither_links_nor_is_linked(app, client, base_url, tenant, pair):
    sdk = auth0_client(base_url, tenant.key)
    sec_token = pair["sec"]["id_token"]
    sdk.users.update("sec", blocked=True)
    for call in (
        lambda: sdk.users.identities.link("prim", provider="gatehouse", user_id="sec"),
        lambda: sdk.users.identities.link("prim", link_with=sec_token),
    ):
        error = error_of(call)
        assert error.status_code == 409 and error.body["errorCode"] == "user_blocked"
    sdk.users.update("sec", blocked=False)
    sdk.users.update("prim", blocked=True)
    error = error_of(sdk.users.identities.link, "prim", provider="gatehouse", user_id="sec")
    assert error.status_code == 409 and "primary user is blocked" in error.body["message"]
    assert sdk.users.get("sec").blocked is False and sdk.users.get("prim").blocked is True


def test_an_unlinked_user_comes_back_with_its_block(app, client, base_url, tenant, pair):
    """The link keeps `blocked` in the identity's profile data, so an unlink restores it.
    Links are refused to blocked users now; the identity below stands for one made before
    that (blocked: true), as the attack pass made them."""
    sdk = auth0_client(base_url, tenant.key)
    [_, linked] = sdk.users.identities.link("prim", provider="gatehouse", user_id="sec")
    assert linked.profile_data.blocked is False
    with app.app_context(), tenant_scope(tenant.id):
        db.session.execute(
            update(Identity)
            .where(Identity.provider_user_id == "sec")
            .values(profile_data={**linked.profile_data.dict(), "blocked": True})
        )
        db.session.commit()
    sdk.users.identities.delete("prim", "gatehouse", "sec")
    assert sdk.users.get("sec").blocked is True
    assert_oauth_error(
        client.post(
            "/oauth/token",
            data={"grant_type": "password", "username": "sec", "password": PASSWORD},
            headers={"X-Tenant-ID": tenant.id},
        ),
        401,
        "invalid_grant",
    )


def test_linking_never_deletes_the_secondarys_data_silently(app, client, base_url, tenant, pair):
    sdk = auth0_client(base_url, tenant.key)
    secret = client.post(
        "/user/sec/secrets", json={"name": "k", "value": "v"}, headers=tenant.headers
    )
    prop = client.post(
        "/user/sec/properties", json={"name": "p", "value": 1}, headers=tenant.headers
    )
    assert secret.status_code == 201 and prop.status_code == 201
    enrolled = client.post("/users/me/mfa/totp", headers=bearer(pair["sec"]["access_token"]))
    assert enrolled.status_code == 201

    error = error_of(sdk.users.identities.link, "prim", provider="gatehouse", user_id="sec")
    assert error.status_code == 409 and error.body["errorCode"] == "secondary_holds_data"
    for held in ("1 secret", "1 property", "an MFA enrolment"):
        assert held in error.body["message"]
    assert client.get("/user/sec/secrets", headers=tenant.headers).get_json()["items"]

    client.delete(f"/user/sec/secrets/{secret.get_json()['id']}", headers=tenant.headers)
    client.delete(f"/user/sec/properties/{prop.get_json()['id']}", headers=tenant.headers)
    sdk.users.multifactor.delete_provider("sec", "google-authenticator")
    identities = sdk.users.identities.link("prim", provider="gatehouse", user_id="sec")
    assert [i.user_id for i in identities] == ["prim", "sec"]


def test_linking_and_unlinking_oneself_needs_a_recent_sign_in(app, client, base_url, tenant, pair):
    stale = factories.stale_session(app, client, tenant.id, "prim", PASSWORD)["access_token"]
    sec_token = sign_in(client, tenant.id, "sec", PASSWORD)["id_token"]
    error = error_of(
        auth0_client(base_url, stale).users.identities.link, "prim", link_with=sec_token
    )
    assert error.status_code == 401 and error.body["errorCode"] == "reauthentication_required"

    auth0_client(base_url, tenant.key).users.identities.link(
        "prim", provider="gatehouse", user_id="sec"
    )
    unlink = auth0_client(base_url, stale).users.identities.delete
    error = error_of(unlink, "prim", "gatehouse", "sec")
    assert error.status_code == 401 and error.body["errorCode"] == "reauthentication_required"
    assert client.get("/api/v2/users/sec", headers=tenant.headers).status_code == 404


def jwt_claims(token: str) -> dict:
    import jwt

    return jwt.decode(token, options={"verify_signature": False})
