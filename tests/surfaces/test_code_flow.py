"""The authorization-code grant with PKCE as standard clients use it: Authlib's
OAuth2Session over real HTTP (following the login form), refresh and userinfo; Authlib's
Flask client from the discovery document alone; and what an application's client_id
means on the other grants. The refusals are in test_code_exchange.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.oidc.core.util import create_half_hash
from authlib.oidc.discovery import OpenIDProviderMetadata
from flask import Flask
from flask.testing import FlaskClient

from tests import factories
from tests.factories import AppHandle, TenantHandle
from tests.oauth_support import (
    PASSWORD,
    assert_invalid_token,
    assert_oauth_error,
    bearer,
    claims,
    code_for,
    exchange,
    form_fields,
    issuer_served,
    make_alice,
    token_request,
    variant_app,
    verified,
)

REDIRECT = "http://127.0.0.1:8765/callback"


@pytest.fixture()
def alice(app: Flask, tenant: TenantHandle) -> str:
    return make_alice(app, tenant.id, first_name="Alice", last_name="Liddell")


@pytest.fixture()
def spa(app: Flask, tenant: TenantHandle) -> AppHandle:
    return factories.make_application(app, tenant.id, name="SPA", redirect_uris=[REDIRECT])


@pytest.fixture()
def backend(app: Flask, tenant: TenantHandle) -> AppHandle:
    return factories.make_application(
        app, tenant.id, name="Backend", type="confidential", redirect_uris=[REDIRECT]
    )


def _session(handle: AppHandle, **kwargs: object) -> OAuth2Session:
    session = OAuth2Session(
        handle.client_id,
        client_secret=handle.secret,
        redirect_uri=handle.redirect_uri,
        # offline_access: the app wants a refresh token (SPEC §8).
        scope="openid profile email offline_access",
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic" if handle.secret else "none",
        **kwargs,
    )
    return session


def _authorize_over_http(session: OAuth2Session, base: str, verifier: str, nonce: str) -> str:
    """Open the authorization URL, fill in the login form, and return the redirect."""
    url, _ = session.create_authorization_url(
        f"{base}/authorize", code_verifier=verifier, nonce=nonce
    )
    page = session.get(url, withhold_token=True)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    form = form_fields(page.text)
    form.update(username="alice", password=PASSWORD)
    # The server marks its cookies Secure; a browser sends them to loopback over plain
    # HTTP (a secure context), requests does not, so the jar is handed over by hand.
    answer = session.post(
        f"{base}/authorize",
        data=form,
        cookies=session.cookies.get_dict(),
        withhold_token=True,
        allow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return answer.headers["Location"]


@pytest.mark.parametrize("kind", ["public", "confidential"])
def test_authlib_signs_in_refreshes_and_reads_userinfo_over_http(
    client: FlaskClient,
    live_server: str,
    tenant: TenantHandle,
    alice: str,
    spa: AppHandle,
    backend: AppHandle,
    kind: str,
) -> None:
    handle = spa if kind == "public" else backend
    session = _session(handle)
    verifier, nonce = generate_token(64), generate_token(16)
    location = _authorize_over_http(session, live_server, verifier, nonce)

    token = session.fetch_token(
        f"{live_server}/oauth/token", authorization_response=location, code_verifier=verifier
    )

    id_token = verified(client, token["id_token"], audience=handle.client_id)
    assert id_token["azp"] == handle.client_id and id_token["nonce"] == nonce
    assert id_token["at_hash"] == create_half_hash(token["access_token"], "RS256").decode()
    assert id_token["sub"] == alice and isinstance(id_token["auth_time"], int)
    assert token["token_type"] == "Bearer" and token["expires_in"] == 900

    info = session.get(f"{live_server}/userinfo")
    assert info.status_code == 200, info.text
    assert info.json() == {
        "sub": alice,
        "name": "Alice Liddell",
        "given_name": "Alice",
        "family_name": "Liddell",
        "preferred_username": "alice",
        "email": "alice@example.com",
        "email_verified": True,
        "updated_at": info.json()["updated_at"],
    }

    first_refresh = token["refresh_token"]
    renewed = session.refresh_token(f"{live_server}/oauth/token")
    assert renewed["refresh_token"] != first_refresh
    renewed_id = verified(client, renewed["id_token"], audience=handle.client_id)
    assert renewed_id["auth_time"] == id_token["auth_time"] and "nonce" not in renewed_id
    assert session.get(f"{live_server}/userinfo").json()["sub"] == alice

    session.revoke_token(f"{live_server}/oauth/revoke", renewed["refresh_token"])
    assert_invalid_token(client.get("/userinfo", headers=bearer(renewed["access_token"])))


def test_authlibs_flask_client_signs_in_from_the_discovery_document(
    app: Flask, database_url: str, tmp_path: Path, tenant: TenantHandle, alice: str
) -> None:
    """The README's example: Authlib's Flask integration, configured by discovery alone,
    runs the flow and verifies the ID token (issuer, audience, nonce, at_hash, JWKS)."""
    from authlib.integrations.flask_client import OAuth
    from flask import jsonify, session

    callback = "https://rp.example.com/callback"
    handle = factories.make_application(
        app, tenant.id, type="confidential", redirect_uris=[callback]
    )
    with issuer_served(app, database_url, tmp_path) as issuer:
        rp = Flask("relying_party")
        rp.secret_key = "test-only"
        oauth = OAuth(rp)
        oauth.register(
            "gatehouse",
            client_id=handle.client_id,
            client_secret=handle.secret,
            server_metadata_url=f"{issuer}/.well-known/openid-configuration",
            client_kwargs={"scope": "openid profile email", "code_challenge_method": "S256"},
        )

        @rp.route("/login")
        def login() -> object:
            return oauth.gatehouse.authorize_redirect(callback)

        @rp.route("/callback")
        def finish() -> object:
            token = oauth.gatehouse.authorize_access_token()
            session["user"] = token["userinfo"]
            return jsonify(token["userinfo"])

        relying_party = rp.test_client()
        to_idp = relying_party.get("/login").headers["Location"]
        browser = requests.Session()
        page = browser.get(to_idp)
        form = {**form_fields(page.text), "username": "alice", "password": PASSWORD}
        back = browser.post(
            f"{issuer}/authorize",
            data=form,
            cookies=browser.cookies.get_dict(),
            allow_redirects=False,
        )
        assert back.headers["Location"].startswith(callback + "?")
        signed_in = relying_party.get(
            back.headers["Location"].removeprefix("https://rp.example.com")
        )

    assert signed_in.status_code == 200, signed_in.get_data(as_text=True)
    userinfo = signed_in.get_json()
    assert userinfo["sub"] == alice and userinfo["aud"] == handle.client_id
    assert userinfo["iss"] == issuer and userinfo["email"] == "alice@example.com"


def test_discovery_names_the_code_flow_and_validates(
    app: Flask, database_url: str, tmp_path: Path
) -> None:
    issuer = "https://gatehouse.test"
    with variant_app(app, database_url, tmp_path, ISSUER=issuer) as secure:
        document = secure.test_client().get("/.well-known/openid-configuration").get_json()

    OpenIDProviderMetadata(document).validate()
    AuthorizationServerMetadata(document).validate()
    assert document["authorization_endpoint"] == f"{issuer}/authorize"
    assert document["userinfo_endpoint"] == f"{issuer}/userinfo"
    assert document["end_session_endpoint"] == f"{issuer}/logout"
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["response_types_supported"] == ["code"]
    assert "authorization_code" in document["grant_types_supported"]
    assert "none" in document["token_endpoint_auth_methods_supported"]


def test_password_grant_with_an_apps_client_id_needs_no_tenant_header(
    client: FlaskClient, spa: AppHandle, backend: AppHandle, alice: str
) -> None:
    answer = token_request(
        client,
        None,
        grant_type="password",
        username="alice",
        password=PASSWORD,
        client_id=spa.client_id,
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    id_token = verified(client, answer.get_json()["id_token"], audience=spa.client_id)
    assert id_token["azp"] == spa.client_id and "nonce" not in id_token
    # A confidential app is no less confidential on this grant.
    refused = token_request(
        client,
        None,
        grant_type="password",
        username="alice",
        password=PASSWORD,
        client_id=backend.client_id,
    )
    assert_oauth_error(refused, 401, "invalid_client")


def test_an_apps_refresh_token_is_refreshed_by_that_app_only(
    app: Flask, client: FlaskClient, tenant: TenantHandle, spa: AppHandle, alice: str
) -> None:
    code, verifier = code_for(client, spa, scope="openid offline_access")
    tokens = exchange(client, spa, code, verifier).get_json()
    other = factories.make_application(app, tenant.id, redirect_uris=[REDIRECT])

    for client_id in (None, other.client_id):
        body = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        if client_id:
            body["client_id"] = client_id
        assert_oauth_error(client.post("/oauth/token", data=body), 401, "invalid_grant")
    mine = token_request(
        client,
        None,
        grant_type="refresh_token",
        refresh_token=tokens["refresh_token"],
        client_id=spa.client_id,
    )
    assert mine.status_code == 200
    assert claims(mine.get_json()["id_token"])["aud"] == spa.client_id


def test_deleting_an_app_ends_its_sessions(
    client: FlaskClient, root_headers: dict, tenant: TenantHandle, spa: AppHandle, alice: str
) -> None:
    code, verifier = code_for(client, spa)
    tokens = exchange(client, spa, code, verifier).get_json()

    deleted = client.delete(
        f"/tenants/{tenant.id}/applications/{spa.client_id}", headers=root_headers
    )

    assert deleted.status_code == 204
    assert_invalid_token(client.get("/userinfo", headers=bearer(tokens["access_token"])))


def test_userinfo_needs_a_users_token(
    client: FlaskClient, tenant: TenantHandle, alice: str
) -> None:
    missing = client.get("/userinfo")
    assert_oauth_error(missing, 401, "invalid_token")
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert_invalid_token(client.get("/userinfo", headers=bearer("not.a.jwt")))
    machine = token_request(
        client, None, grant_type="client_credentials", client_secret=tenant.key
    ).get_json()
    assert_oauth_error(
        client.get("/userinfo", headers=bearer(machine["access_token"])), 403, "insufficient_scope"
    )
