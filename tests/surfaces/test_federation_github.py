"""Sign in through a GitHub connection and a generic OAuth2 connection (issue 27), against
a GitHub-shaped provider on loopback (tests/github_standin.py). The happy paths end with
the app's own ID token naming the Gatehouse user and the identity shown as Auth0 shows
it (REST and the auth0-python SDK); every failure ends as an OAuth error for the app and
creates no user."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.core.tenancy import tenant_scope
from app.users.models import Identity
from tests import factories
from tests.factories import AppHandle
from tests.federation_support import make_connection
from tests.github_standin import GitHub, running_github
from tests.oauth_support import (
    audit_events,
    authorize_query,
    claims,
    exchange,
    form_fields,
    pkce_pair,
    query_of,
    verified,
)

CALLBACK = "http://gatehouse.test/login/callback"
PROFILE_MAP = {
    "user_id": "data.uid",
    "email": "data.contact.mail",
    "email_verified": "data.contact.confirmed",
    "name": "data.display",
    "nickname": "data.handle",
}


@pytest.fixture(scope="module")
def github_server() -> Iterator[GitHub]:
    with running_github() as github:
        yield github


@pytest.fixture()
def github(github_server: GitHub) -> Iterator[GitHub]:
    github_server.reset()
    yield github_server
    github_server.reset()


@pytest.fixture()
def web_app(app: Flask, tenant: factories.TenantHandle) -> AppHandle:
    return factories.make_application(app, tenant.id, redirect_uris=["https://app.test/cb"])


def _github_connection(app: Flask, web_app: AppHandle, github: GitHub, **options: Any) -> str:
    endpoints = {
        "authorizationURL": f"{github.base}/login/oauth/authorize",
        "tokenURL": f"{github.base}/login/oauth/access_token",
        "userinfoURL": f"{github.base}/api/user",
        "scope": "read:user user:email",
    }
    return make_connection(
        app,
        web_app.tenant_id,
        client_id=web_app.client_id,
        name="gh",
        strategy="github",
        **{**endpoints, **options},
    )


@pytest.fixture()
def gh_connection(app: Flask, web_app: AppHandle, github: GitHub) -> str:
    return _github_connection(app, web_app, github)


@pytest.fixture()
def oauth2_connection(app: Flask, web_app: AppHandle, github: GitHub) -> str:
    return make_connection(
        app,
        web_app.tenant_id,
        client_id=web_app.client_id,
        name="gh",
        strategy="oauth2",
        authorizationURL=f"{github.base}/login/oauth/authorize",
        tokenURL=f"{github.base}/login/oauth/access_token",
        userinfoURL=f"{github.base}/oauth2/userinfo",
        scope="profile",
        profile_map=PROFILE_MAP,
    )


def _start(client: FlaskClient, handle: AppHandle) -> tuple[Any, dict[str, str], str]:
    verifier, challenge = pkce_pair()
    query = authorize_query(handle, challenge, connection="gh")
    return client.get("/authorize", query_string=query), query, verifier


def _upstream(location: str) -> str:
    """The provider's redirect back for an authorization URL (it approves at once)."""
    response = requests.get(location, allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text[:300]
    return response.headers["Location"]


def _callback(client: FlaskClient, url: str) -> Any:
    assert url.startswith(CALLBACK + "?"), url
    parts = urlsplit(url)
    return client.get(f"{parts.path}?{parts.query}")


def _sign_in(client: FlaskClient, handle: AppHandle) -> tuple[Any, dict[str, str], str]:
    started, query, verifier = _start(client, handle)
    assert started.status_code == 302, started.get_data(as_text=True)
    return _callback(client, _upstream(started.headers["Location"])), query, verifier


def _app_answer(response: Any, handle: AppHandle) -> dict[str, str]:
    assert response.status_code in (302, 303), response.get_data(as_text=True)[:400]
    location = response.headers["Location"]
    assert location.startswith(handle.redirect_uri + "?"), location
    return query_of(location)


def _user_of(client: FlaskClient, handle: AppHandle, response: Any, verifier: str) -> str:
    code = _app_answer(response, handle)["code"]
    tokens = exchange(client, handle, code, verifier)
    assert tokens.status_code == 200, tokens.get_data(as_text=True)
    return verified(client, tokens.get_json()["id_token"], handle.client_id)["sub"]


def _identities(app: Flask, tenant_id: str) -> list[Identity]:
    with app.app_context(), tenant_scope(tenant_id):
        return list(app.extensions["sqlalchemy"].session.scalars(select(Identity)))


def _refused(app: Flask, client: FlaskClient, handle: AppHandle) -> dict[str, str]:
    response, query, _ = _sign_in(client, handle)
    answer = _app_answer(response, handle)
    assert answer["state"] == query["state"] and "code" not in answer
    assert factories.count_users(app, handle.tenant_id) == 0
    assert _identities(app, handle.tenant_id) == []
    return answer


# --- github: the happy path


def test_github_first_sign_in_creates_the_user_and_the_next_finds_it(
    app: Flask, client: FlaskClient, web_app: AppHandle, gh_connection: str, github: GitHub
) -> None:
    github.user(4242, "octocat", "octo@example.com")
    started, query, verifier = _start(client, web_app)
    location = started.headers["Location"]
    assert location.startswith(f"{github.base}/login/oauth/authorize?")
    asked = query_of(location)
    assert asked["client_id"] == "gatehouse" and asked["redirect_uri"] == CALLBACK
    assert asked["scope"] == "read:user user:email" and asked["code_challenge_method"] == "S256"
    assert len(asked["state"]) >= 40 and len(asked["code_challenge"]) == 43
    assert "nonce" not in asked  # no ID token to carry one
    user_id = _user_of(client, web_app, _callback(client, _upstream(location)), verifier)

    token_request = next(seen for seen in github.requests if seen.method == "POST")
    assert token_request.headers["Accept"] == "application/json"
    assert token_request.form["redirect_uri"] == CALLBACK
    assert token_request.form["client_secret"] == "gatehouse-test-secret"
    assert len(token_request.form["code_verifier"]) >= 43  # checked by the stand-in too
    api_calls = [seen for seen in github.requests if seen.method == "GET"][1:]
    assert [seen.path for seen in api_calls] == ["/api/user", "/api/user/emails"]
    assert all(seen.headers["Authorization"].startswith("Bearer gho_") for seen in api_calls)

    (identity,) = _identities(app, web_app.tenant_id)
    assert (identity.user_id, identity.provider, identity.provider_user_id) == (
        user_id,
        "github",
        "4242",
    )
    assert identity.connection == "gh" and identity.is_social is True
    profile = identity.profile_data
    assert (profile["login"], profile["id"], profile["email"]) == (
        "octocat",
        4242,
        "octo@example.com",
    )
    assert profile["email_verified"] is True and "sub" not in profile
    assert not any("token" in key for key in profile)

    # A second sign-in (a new browser) finds the same user by (connection, GitHub id),
    # even after the address changed upstream.
    github.user(4242, "octocat", "new-octo@example.com")
    other = app.test_client()
    again, _, verifier2 = _sign_in(other, web_app)
    assert _user_of(other, web_app, again, verifier2) == user_id
    assert factories.count_users(app, web_app.tenant_id) == 1
    (identity,) = _identities(app, web_app.tenant_id)
    assert identity.profile_data["email"] == "new-octo@example.com"  # the latest view


def test_github_identity_as_the_management_api_and_the_sdk_show_it(
    app: Flask,
    client: FlaskClient,
    tenant: factories.TenantHandle,
    web_app: AppHandle,
    gh_connection: str,
    github: GitHub,
) -> None:
    github.user(77, "mona", "mona@example.com")
    response, _, verifier = _sign_in(client, web_app)
    user_id = _user_of(client, web_app, response, verifier)
    expected_profile = {"login": "mona", "id": 77, "email": "mona@example.com"}

    shown = client.get(f"/api/v2/users/{user_id}", headers=tenant.headers)
    assert shown.status_code == 200, shown.get_data(as_text=True)
    body = shown.get_json()
    assert body["email"] == "mona@example.com" and body["email_verified"] is True
    linked = [i for i in body["identities"] if i["provider"] == "github"]
    assert len(linked) == 1
    (identity,) = linked
    assert (identity["user_id"], identity["connection"], identity["isSocial"]) == (
        "77",
        "gh",
        True,
    )
    assert expected_profile.items() <= identity["profileData"].items()

    with factories.serve(app) as base_url:
        sdk = factories.auth0_client(base_url, tenant.key, tenant.id)
        got = sdk.users.get(user_id)
    (sdk_identity,) = [i for i in got.identities or [] if i.provider == "github"]
    assert (sdk_identity.user_id, sdk_identity.connection, sdk_identity.is_social) == (
        "77",
        "gh",
        True,
    )
    profile_data = sdk_identity.profile_data
    assert profile_data is not None
    assert (profile_data.email, profile_data.email_verified) == ("mona@example.com", True)
    # GitHub's own fields come through as the SDK's extra profile fields.
    assert (profile_data.model_extra or {})["login"] == "mona"
    assert sdk_identity.access_token is None  # no upstream token is ever kept or shown


def test_github_form_encoded_token_answer_is_read(
    app: Flask, client: FlaskClient, web_app: AppHandle, gh_connection: str, github: GitHub
) -> None:
    github.user(5, "formy", "formy@example.com")
    github.mode = "token_form"  # GitHub's answer when Accept is not honoured
    response, _, verifier = _sign_in(client, web_app)
    assert _user_of(client, web_app, response, verifier)
    assert factories.count_users(app, web_app.tenant_id) == 1


def test_github_sign_in_is_offered_on_the_login_page_and_audited(
    client: FlaskClient,
    tenant: factories.TenantHandle,
    web_app: AppHandle,
    gh_connection: str,
    github: GitHub,
) -> None:
    github.user(6, "pat", "pat@example.com")
    _, challenge = pkce_pair()
    page = client.get("/authorize", query_string=authorize_query(web_app, challenge))
    html = page.get_data(as_text=True)
    assert "Continue with gh login" in html
    fields = form_fields(html)
    response = client.post(
        "/authorize/connection",
        data={"csrf_token": fields["csrf_token"], "authz": fields["authz"], "connection": "gh"},
    )
    assert response.status_code == 302
    assert response.headers["Location"].startswith(f"{github.base}/login/oauth/authorize?")
    _app_answer(_callback(client, _upstream(response.headers["Location"])), web_app)
    (created,) = audit_events(client, tenant.headers, "user.created")
    assert created["actor"] == "connection:gh"


def test_github_verified_email_links_to_the_verified_account(
    app: Flask, client: FlaskClient, web_app: AppHandle, gh_connection: str, github: GitHub
) -> None:
    user_id = factories.make_user(
        app, web_app.tenant_id, email="ivy@example.com", email_verified=True
    )
    github.user(8, "ivy", "ivy@example.com")
    response, _, verifier = _sign_in(client, web_app)
    assert _user_of(client, web_app, response, verifier) == user_id
    assert [i.user_id for i in _identities(app, web_app.tenant_id)] == [user_id]


def test_userinfo_url_override_moves_every_github_call(
    app: Flask, client: FlaskClient, web_app: AppHandle, github: GitHub
) -> None:
    _github_connection(app, web_app, github, userinfoURL=f"{github.base}/ghe/api/v3/user")
    github.user(9, "enterprise", "ent@example.com")
    response, _, verifier = _sign_in(client, web_app)
    assert _user_of(client, web_app, response, verifier)
    api_calls = [seen.path for seen in github.requests if seen.method == "GET"][1:]
    assert api_calls == ["/ghe/api/v3/user", "/ghe/api/v3/user/emails"]


# --- github: what is refused


@pytest.mark.parametrize(
    "emails",
    [
        [{"email": "u@example.com", "primary": True, "verified": False}],
        # A verified address that is not the primary one is not used.
        [
            {"email": "p@example.com", "primary": True, "verified": False},
            {"email": "s@example.com", "primary": False, "verified": True},
        ],
        [],
    ],
    ids=["unverified-primary", "verified-not-primary", "none"],
)
def test_github_without_a_verified_primary_email_is_refused(
    app: Flask,
    client: FlaskClient,
    web_app: AppHandle,
    gh_connection: str,
    github: GitHub,
    emails: list[dict[str, Any]],
) -> None:
    github.user(10, "nomail", None)
    github.profile["email"] = "public@example.com"  # the public profile address never counts
    github.emails = emails
    answer = _refused(app, client, web_app)
    assert answer["error"] == "access_denied" and "email" in answer["error_description"]


@pytest.mark.parametrize(
    ("mode", "error", "says"),
    [
        ("token_error", "access_denied", "bad_verification_code"),
        ("token_html", "temporarily_unavailable", "JSON"),
        ("token_500", "temporarily_unavailable", "HTTP 500"),
        ("user_500", "temporarily_unavailable", "HTTP 500"),
        ("user_html", "temporarily_unavailable", "JSON"),
        ("emails_500", "temporarily_unavailable", "HTTP 500"),
        ("user_401", "access_denied", "access token"),
    ],
)
def test_github_misbehaving_provider_is_an_oauth_error(
    app: Flask,
    client: FlaskClient,
    web_app: AppHandle,
    gh_connection: str,
    github: GitHub,
    mode: str,
    error: str,
    says: str,
) -> None:
    github.user(11, "bad", "bad@example.com")
    github.mode = mode
    answer = _refused(app, client, web_app)
    assert answer["error"] == error and says in answer["error_description"], answer


def test_github_replayed_state_is_refused(
    app: Flask, client: FlaskClient, web_app: AppHandle, gh_connection: str, github: GitHub
) -> None:
    github.user(12, "replay", "replay@example.com")
    started, _, _ = _start(client, web_app)
    back = _upstream(started.headers["Location"])
    pending = client.get_cookie("gh_fed")
    assert pending is not None
    assert "code" in _app_answer(_callback(client, back), web_app)
    client.delete_cookie("gh_sso_" + web_app.tenant_id)
    client.set_cookie("gh_fed", pending.value)
    answer = _app_answer(_callback(client, back), web_app)
    assert answer["error"] == "access_denied" and "already used" in answer["error_description"]
    assert factories.count_users(app, web_app.tenant_id) == 1


def test_github_forged_state_is_refused(
    app: Flask, client: FlaskClient, web_app: AppHandle, gh_connection: str, github: GitHub
) -> None:
    github.user(13, "forged", "forged@example.com")
    started, query, _ = _start(client, web_app)
    back = _upstream(started.headers["Location"])
    real_state = query_of(back)["state"]
    answer = _app_answer(_callback(client, back.replace(real_state, "forged" + "x" * 40)), web_app)
    assert answer["error"] == "access_denied" and answer["state"] == query["state"]
    assert factories.count_users(app, web_app.tenant_id) == 0
    assert not any(seen.method == "POST" for seen in github.requests)  # the code went nowhere


def test_unreachable_provider_is_temporarily_unavailable(
    app: Flask, client: FlaskClient, web_app: AppHandle, github: GitHub
) -> None:
    _github_connection(app, web_app, github, tokenURL="http://127.0.0.1:9/token")
    github.user(14, "far", "far@example.com")
    answer = _refused(app, client, web_app)
    assert answer["error"] == "temporarily_unavailable"
    assert "could not be reached" in answer["error_description"]


# --- the generic oauth2 strategy, with a profile_map


def _nested_profile(uid: int, mail: str | None, *, confirmed: bool = True) -> dict[str, Any]:
    contact = {"mail": mail, "confirmed": confirmed} if mail else {}
    return {"data": {"uid": uid, "display": "Quinn Q", "handle": "quinn", "contact": contact}}


def test_oauth2_sign_in_maps_the_profile(
    app: Flask,
    client: FlaskClient,
    tenant: factories.TenantHandle,
    web_app: AppHandle,
    oauth2_connection: str,
    github: GitHub,
) -> None:
    github.userinfo = _nested_profile(901, "quinn@example.com")
    started, _, verifier = _start(client, web_app)
    asked = query_of(started.headers["Location"])
    assert asked["scope"] == "profile" and asked["code_challenge_method"] == "S256"
    user_id = _user_of(
        client, web_app, _callback(client, _upstream(started.headers["Location"])), verifier
    )
    assert [seen.path for seen in github.requests if seen.method == "GET"][1:] == [
        "/oauth2/userinfo"
    ]
    body = client.get(f"/api/v2/users/{user_id}", headers=tenant.headers).get_json()
    assert body["email"] == "quinn@example.com" and body["email_verified"] is True
    assert body["name"] == "Quinn Q"
    (identity,) = [i for i in body["identities"] if i["provider"] == "oauth2"]
    assert (identity["user_id"], identity["connection"], identity["isSocial"]) == (
        "901",
        "gh",
        True,
    )
    assert identity["profileData"]["data"]["uid"] == 901
    assert identity["profileData"]["nickname"] == "quinn"

    other = app.test_client()
    again, _, verifier2 = _sign_in(other, web_app)
    assert _user_of(other, web_app, again, verifier2) == user_id
    assert factories.count_users(app, web_app.tenant_id) == 1


def test_oauth2_unverified_address_makes_an_unverified_user(
    app: Flask,
    client: FlaskClient,
    tenant: factories.TenantHandle,
    web_app: AppHandle,
    oauth2_connection: str,
    github: GitHub,
) -> None:
    github.userinfo = _nested_profile(902, "ron@example.com", confirmed=False)
    response, _, verifier = _sign_in(client, web_app)
    user_id = _user_of(client, web_app, response, verifier)
    body = client.get(f"/api/v2/users/{user_id}", headers=tenant.headers).get_json()
    assert body["email"] == "ron@example.com" and body["email_verified"] is False


@pytest.mark.parametrize(
    ("profile", "says"),
    [
        ({"data": {"display": "No Id", "contact": {"mail": "x@example.com"}}}, "user id"),
        (_nested_profile(903, None), "email"),
    ],
    ids=["no-user-id", "no-email"],
)
def test_oauth2_profile_without_an_id_or_email_is_refused(
    app: Flask,
    client: FlaskClient,
    web_app: AppHandle,
    oauth2_connection: str,
    github: GitHub,
    profile: dict[str, Any],
    says: str,
) -> None:
    github.userinfo = profile
    answer = _refused(app, client, web_app)
    assert answer["error"] == "access_denied" and says in answer["error_description"]


def test_oauth2_userinfo_failure_is_temporarily_unavailable(
    app: Flask, client: FlaskClient, web_app: AppHandle, oauth2_connection: str, github: GitHub
) -> None:
    github.userinfo = _nested_profile(904, "sam@example.com")
    github.mode = "user_html"
    answer = _refused(app, client, web_app)
    assert answer["error"] == "temporarily_unavailable" and "JSON" in answer["error_description"]


def test_id_token_claims_name_the_gatehouse_user(
    client: FlaskClient, web_app: AppHandle, gh_connection: str, github: GitHub
) -> None:
    github.user(15, "tok", "tok@example.com")
    response, query, verifier = _sign_in(client, web_app)
    code = _app_answer(response, web_app)["code"]
    id_token = exchange(client, web_app, code, verifier).get_json()["id_token"]
    got = claims(id_token)
    assert got["nonce"] == query["nonce"] and got["aud"] == web_app.client_id
    assert got["sub"] != "15"  # Gatehouse's own user, not GitHub's id


def test_user_cancelling_at_github_is_access_denied(
    app: Flask, client: FlaskClient, web_app: AppHandle, gh_connection: str, github: GitHub
) -> None:
    started, query, _ = _start(client, web_app)
    state = query_of(started.headers["Location"])["state"]
    # GitHub's answer when the user clicks Cancel (no iss: GitHub does not send one).
    response = client.get(
        "/login/callback", query_string={"error": "access_denied", "state": state}
    )
    answer = _app_answer(response, web_app)
    assert answer["error"] == "access_denied" and answer["state"] == query["state"]
    assert "cancelled" in answer["error_description"]
    assert not any(seen.method == "POST" for seen in github.requests)


@pytest.mark.parametrize("strategy", ["github", "oauth2"])
def test_connections_made_through_the_api_sign_in(
    app: Flask,
    client: FlaskClient,
    tenant: factories.TenantHandle,
    web_app: AppHandle,
    github: GitHub,
    strategy: str,
) -> None:
    options: dict[str, Any] = {
        "client_id": "gatehouse",
        "client_secret": "gatehouse-test-secret",
        "authorizationURL": f"{github.base}/login/oauth/authorize",
        "tokenURL": f"{github.base}/login/oauth/access_token",
        "userinfoURL": f"{github.base}/api/user",
    }
    if strategy == "oauth2":
        options.update(userinfoURL=f"{github.base}/oauth2/userinfo", profile_map=PROFILE_MAP)
    made = client.post(
        "/api/v2/connections",
        json={
            "name": "gh",
            "strategy": strategy,
            "options": options,
            "enabled_clients": [web_app.client_id],
        },
        headers={"Authorization": f"Bearer {tenant.key}"},
    )
    assert made.status_code == 201, made.get_data(as_text=True)
    github.user(16, "api", "api@example.com")
    github.userinfo = _nested_profile(16, "api@example.com")
    response, _, verifier = _sign_in(client, web_app)
    assert _user_of(client, web_app, response, verifier)
    (identity,) = _identities(app, web_app.tenant_id)
    assert (identity.provider, identity.provider_user_id) == (strategy, "16")
    if strategy == "github":  # the API filled in GitHub's default scope
        authorize = next(seen for seen in github.requests if "authorize" in seen.path)
        assert authorize.query["scope"] == "read:user user:email"


def test_the_github_token_and_api_calls_are_address_checked(
    app: Flask,
    client: FlaskClient,
    web_app: AppHandle,
    gh_connection: str,
    github: GitHub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The provider (on loopback) was allowed when the sign-in started; by the callback the
    rules refuse private addresses: the code is not exchanged, the app gets
    temporarily_unavailable, and no user is made."""
    github.user(4343, "late", "late@example.com")
    started, _, _ = _start(client, web_app)
    back = _upstream(started.headers["Location"])
    monkeypatch.setitem(app.config, "FEDERATION_ALLOW_PRIVATE_TARGETS", False)
    answer = _app_answer(_callback(client, back), web_app)
    assert answer["error"] == "temporarily_unavailable"
    assert factories.count_users(app, web_app.tenant_id) == 0
    assert not [path for path in github.paths() if "access_token" in path]
