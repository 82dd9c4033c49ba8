"""CORS for browser apps: the token, revocation, userinfo and key endpoints answer the
origins registered applications list, exactly and without credentials; others get no
`Access-Control-*` header; every other endpoint stays closed to cross-site calls."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests import factories
from tests.factories import TenantHandle
from tests.oauth_support import PASSWORD, bearer, sign_in

ALLOWED = "https://app.example.com"
PATHS = ["/oauth/token", "/oauth/revoke", "/userinfo", "/.well-known/jwks.json"]


@pytest.fixture(autouse=True)
def spa(app: Flask, tenant: TenantHandle) -> None:
    factories.make_application(
        app,
        tenant.id,
        redirect_uris=["https://app.example.com/cb"],
        allowed_origins=[f"{ALLOWED}:443", "http://localhost:3000"],
    )


def _preflight(client: FlaskClient, path: str, origin: str, method: str = "POST"):
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


def _access_control(response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("access-control")}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("origin", [ALLOWED, "http://localhost:3000"])
def test_a_preflight_from_an_allowed_origin_is_answered_exactly(
    client: FlaskClient, path: str, origin: str
) -> None:
    answer = _preflight(client, path, origin)

    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == origin
    assert "POST" in answer.headers["Access-Control-Allow-Methods"]
    allowed_headers = answer.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed_headers and "content-type" in allowed_headers
    assert answer.headers["Access-Control-Max-Age"] == "600"
    assert "Access-Control-Allow-Credentials" not in answer.headers
    assert "Origin" in answer.headers.get_all("Vary") or "Origin" in answer.headers["Vary"]


REFUSED = [
    "https://evil.example.com",
    "http://app.example.com",  # another scheme is another origin
    "https://app.example.com:8443",  # and another port
    "https://app.example.com.evil.com",
    "null",
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("origin", REFUSED)
def test_a_preflight_from_any_other_origin_gets_no_cors_headers(
    client: FlaskClient, path: str, origin: str
) -> None:
    answer = _preflight(client, path, origin)

    assert _access_control(answer) == {}
    assert "Origin" in answer.headers["Vary"]


def test_actual_requests_carry_the_headers_errors_included(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    factories.make_user(app, tenant.id, username="alice", password=PASSWORD)
    tokens = sign_in(client, tenant.id, "alice")

    info = client.get("/userinfo", headers={**bearer(tokens["access_token"]), "Origin": ALLOWED})
    assert info.status_code == 200
    assert info.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "X-Request-ID" in info.headers["Access-Control-Expose-Headers"]
    refused = client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": "nope"},
        headers={"Origin": ALLOWED},
    )
    assert refused.status_code == 401
    assert refused.headers["Access-Control-Allow-Origin"] == ALLOWED  # the app can read why
    assert "WWW-Authenticate" in refused.headers["Access-Control-Expose-Headers"]
    stranger = client.get("/.well-known/jwks.json", headers={"Origin": "https://evil.example.com"})
    assert stranger.status_code == 200 and _access_control(stranger) == {}


@pytest.mark.parametrize("path", ["/user/profile", "/users/me", "/tenants", "/authorize"])
def test_other_endpoints_answer_no_origin(client: FlaskClient, path: str) -> None:
    answer = _preflight(client, path, ALLOWED, "GET")
    assert _access_control(answer) == {}


def test_an_origin_removed_from_the_app_is_refused_at_once(
    app: Flask, client: FlaskClient, root_headers: dict, tenant: TenantHandle
) -> None:
    assert _preflight(client, "/oauth/token", ALLOWED).headers.get("Access-Control-Allow-Origin")
    apps = client.get(f"/tenants/{tenant.id}/applications", headers=root_headers).get_json()
    client.patch(
        f"/tenants/{tenant.id}/applications/{apps[0]['client_id']}",
        json={"allowed_origins": []},
        headers=root_headers,
    )
    assert _access_control(_preflight(client, "/oauth/token", ALLOWED)) == {}
