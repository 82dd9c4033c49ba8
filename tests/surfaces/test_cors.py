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


# --- one tenant's app opens only that tenant's requests (issue 22, item 6) ----------------

THEIRS = "https://theirs.example.com"


def test_an_origin_opens_its_own_tenants_requests_only(
    app: Flask, client: FlaskClient, tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    theirs = factories.make_application(
        app, other_tenant.id, redirect_uris=[f"{THEIRS}/cb"], allowed_origins=[THEIRS]
    )
    factories.make_user(app, tenant.id, username="alice", password=PASSWORD)
    factories.make_user(app, other_tenant.id, username="olga", password=PASSWORD)
    mine, olgas = sign_in(client, tenant.id, "alice"), sign_in(client, other_tenant.id, "olga")

    def userinfo(token: str, origin: str) -> bool:
        answer = client.get("/userinfo", headers={**bearer(token), "Origin": origin})
        assert answer.status_code == 200
        return answer.headers.get("Access-Control-Allow-Origin") == origin

    # Each tenant's token is readable from its own tenant's origin only.
    assert userinfo(olgas["access_token"], THEIRS) and not userinfo(olgas["access_token"], ALLOWED)
    assert userinfo(mine["access_token"], ALLOWED) and not userinfo(mine["access_token"], THEIRS)

    def token_call(origin: str, headers: dict | None = None, **form: str) -> bool:
        sent = {**(headers or {}), "Origin": origin}
        answer = client.post("/oauth/token", data=form, headers=sent)
        return answer.headers.get("Access-Control-Allow-Origin") == origin

    password = {"grant_type": "password", "username": "olga", "password": PASSWORD}
    # The tenant named by X-Tenant-ID, by an application's client_id, by a refresh token.
    assert token_call(THEIRS, {"X-Tenant-ID": other_tenant.id}, **password)
    assert not token_call(ALLOWED, {"X-Tenant-ID": other_tenant.id}, **password)
    assert token_call(THEIRS, client_id=theirs.client_id, **password)
    assert not token_call(ALLOWED, client_id=theirs.client_id, **password)
    refresh = {"grant_type": "refresh_token", "refresh_token": olgas["refresh_token"]}
    assert not token_call(ALLOWED, **refresh)
    revoke = client.post(
        "/oauth/revoke", data={"token": mine["refresh_token"]}, headers={"Origin": THEIRS}
    )
    assert revoke.status_code == 200 and _access_control(revoke) == {}
    # An API key's id as client_id names its tenant too.
    machine = {"grant_type": "client_credentials", "client_id": tenant.key_id}
    assert token_call(ALLOWED, client_secret=tenant.key, **machine)
    assert not token_call(THEIRS, client_secret=tenant.key, **machine)
    # A request naming two tenants is refused for every origin.
    both = {"X-Tenant-ID": tenant.id}
    assert not token_call(ALLOWED, both, client_id=theirs.client_id, **password)
    assert not token_call(THEIRS, both, client_id=theirs.client_id, **password)
    # A preflight names no tenant (it carries no credential): any app's origin may send.
    assert _preflight(client, "/oauth/token", THEIRS).headers["Access-Control-Allow-Origin"]
    # The signing keys are every tenant's.
    jwks = client.get("/.well-known/jwks.json", headers={"Origin": THEIRS})
    assert jwks.headers["Access-Control-Allow-Origin"] == THEIRS
