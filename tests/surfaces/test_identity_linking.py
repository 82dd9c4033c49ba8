"""Identity linking through the Auth0 SDK: by API key (`provider` + `user_id`) and by the
secondary's ID token (`link_with`); the secondary stops existing and its tokens stop
working; unlinking splits it back."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from auth0.management.core.api_error import ApiError

from app.tokens import signing
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


def test_link_with_an_id_token_issued_to_one_of_the_tenants_applications(
    app, client, base_url, tenant, other_tenant, pair
):
    """An app signs its users in through the code or password grant: their ID tokens name
    the app (`aud` = client_id), and prove the secondary just as well — for this tenant's
    apps only."""
    own_app = factories.make_application(app, tenant.id)
    far_app = factories.make_application(app, other_tenant.id)
    session = client.post(
        "/oauth/token",
        data={
            "grant_type": "password",
            "username": "sec",
            "password": PASSWORD,
            "client_id": own_app.client_id,
        },
    ).get_json()
    id_token = session["id_token"]
    assert jwt_claims(id_token)["aud"] == own_app.client_id
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
            }
        )
    sdk = auth0_client(base_url, pair["prim"]["access_token"])
    error = error_of(sdk.users.identities.link, "prim", link_with=foreign_app_token)
    assert error.status_code == 400 and error.body["errorCode"] == "invalid_body"
    identities = sdk.users.identities.link("prim", link_with=id_token)
    assert [i.user_id for i in identities] == ["prim", "sec"]


def jwt_claims(token: str) -> dict:
    import jwt

    return jwt.decode(token, options={"verify_signature": False})
