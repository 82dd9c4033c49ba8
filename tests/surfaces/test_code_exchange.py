"""The authorization_code grant's refusals (RFC 6749 §4.1.3 and §5.2, RFC 7636 §4.6):
missing or wrong verifiers, the plain method, another redirect URI, a reused, expired or
foreign code, an unknown or unauthenticated client; and the cleanup of old codes."""

from __future__ import annotations

import pytest
from authlib.common.security import generate_token
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.applications import authorization
from app.applications.models import AuthorizationCode
from app.core.db import db
from app.core.tenancy import all_tenants, tenant_scope
from app.periodic import run_job
from app.users import service as user_service
from tests import factories
from tests.factories import AppHandle, TenantHandle
from tests.oauth_support import (
    assert_invalid_token,
    assert_oauth_error,
    audit_events,
    authorize_query,
    bearer,
    claims,
    code_for,
    exchange,
    make_alice,
    pkce_pair,
    refresh,
)

REDIRECT = "http://127.0.0.1:8765/callback"


@pytest.fixture()
def alice(app: Flask, tenant: TenantHandle) -> str:
    return make_alice(app, tenant.id)


@pytest.fixture()
def spa(app: Flask, tenant: TenantHandle) -> AppHandle:
    return factories.make_application(app, tenant.id, redirect_uris=[REDIRECT])


@pytest.fixture()
def backend(app: Flask, tenant: TenantHandle) -> AppHandle:
    return factories.make_application(app, tenant.id, type="confidential", redirect_uris=[REDIRECT])


VERIFIER_ERRORS = {
    "missing verifier": (None, 400, "invalid_request"),
    "wrong verifier": ("w" * 64, 401, "invalid_grant"),
    "verifier too short": ("short", 401, "invalid_grant"),
    "challenge as verifier": ("challenge", 401, "invalid_grant"),
}


@pytest.mark.parametrize(
    ("verifier", "status", "error"), VERIFIER_ERRORS.values(), ids=VERIFIER_ERRORS.keys()
)
def test_the_verifier_must_match_the_challenge_and_a_failure_spends_the_code(
    client: FlaskClient, spa: AppHandle, alice: str, verifier: str | None, status: int, error: str
) -> None:
    code, right = code_for(client, spa)
    if verifier == "challenge":
        verifier = authorize_query(spa, pkce_pair()[1])["code_challenge"]

    assert_oauth_error(exchange(client, spa, code, verifier), status, error)
    assert_oauth_error(exchange(client, spa, code, right), 401, "invalid_grant")


def test_the_plain_method_is_refused_so_no_code_exists_for_it(
    client: FlaskClient, spa: AppHandle, alice: str
) -> None:
    verifier = generate_token(64)
    query = authorize_query(spa, verifier, code_challenge_method="plain")
    answer = client.get("/authorize", query_string={**query, "code_challenge": "p" * 43})

    assert answer.status_code == 302
    assert "error=invalid_request" in answer.headers["Location"]
    assert "code=" not in answer.headers["Location"]


@pytest.mark.parametrize("sent", ["http://127.0.0.1:8765/elsewhere", None])
def test_the_redirect_uri_must_repeat_the_authorization_requests(
    client: FlaskClient, spa: AppHandle, alice: str, sent: str | None
) -> None:
    code, verifier = code_for(client, spa)
    answer = exchange(client, spa, code, verifier, redirect_uri=sent)  # type: ignore[arg-type]
    assert_oauth_error(answer, 401, "invalid_grant")


def test_a_reused_code_fails_and_revokes_what_it_issued(
    client: FlaskClient, tenant: TenantHandle, spa: AppHandle, alice: str
) -> None:
    code, verifier = code_for(client, spa, scope="openid offline_access")
    first = exchange(client, spa, code, verifier)
    assert first.status_code == 200
    tokens = first.get_json()
    assert client.get("/userinfo", headers=bearer(tokens["access_token"])).status_code == 200

    again = exchange(client, spa, code, verifier)

    assert_oauth_error(again, 401, "invalid_grant")
    assert_invalid_token(client.get("/userinfo", headers=bearer(tokens["access_token"])))
    assert_oauth_error(refresh(client, tokens["refresh_token"]), 401, "invalid_grant")
    reused = audit_events(client, tenant.headers, "token.code_reused")
    assert [(e["user_id"], e["target"]) for e in reused] == [
        (alice, claims(tokens["access_token"])["sid"])
    ]


def test_an_expired_code_is_refused(
    app: Flask, client: FlaskClient, spa: AppHandle, alice: str
) -> None:
    verifier, challenge = pkce_pair()
    with app.app_context():
        request = authorization.parse_request(authorize_query(spa, challenge))
        with tenant_scope(spa.tenant_id):
            user = user_service.get_user(alice)
            code = authorization.issue_code(
                request=request, user=user, auth_time=user.created_at, ttl=0
            )
            db.session.commit()

    assert_oauth_error(exchange(client, spa, code, verifier), 401, "invalid_grant")


def test_cleanup_removes_codes_a_day_after_they_expired(
    app: Flask, spa: AppHandle, alice: str
) -> None:
    with app.app_context():
        request = authorization.parse_request(authorize_query(spa, pkce_pair()[1]))
        with tenant_scope(spa.tenant_id):
            user = user_service.get_user(alice)
            for ttl in (-3600, -2 * 24 * 3600):  # expired an hour ago, and two days ago
                authorization.issue_code(
                    request=request, user=user, auth_time=user.created_at, ttl=ttl
                )
            db.session.commit()
        assert run_job("cleanup")["applications.cleanup_codes"] == 1
        # The one expired only an hour ago is still known, so a replay is still caught.
        with all_tenants():
            assert db.session.scalar(select(func.count()).select_from(AuthorizationCode)) == 1


def test_an_unknown_client_is_invalid_client(
    client: FlaskClient, spa: AppHandle, alice: str
) -> None:
    code, verifier = code_for(client, spa)
    unknown = AppHandle("no-such-app", None, spa.redirect_uri, spa.tenant_id)
    assert_oauth_error(exchange(client, unknown, code, verifier), 401, "invalid_client")
    # The code is untouched by a stranger's attempt.
    assert exchange(client, spa, code, verifier).status_code == 200


def test_a_code_issued_to_another_app_is_refused(
    app: Flask, client: FlaskClient, tenant: TenantHandle, spa: AppHandle, alice: str
) -> None:
    other = factories.make_application(app, tenant.id, redirect_uris=[REDIRECT])
    code, verifier = code_for(client, spa)
    assert_oauth_error(exchange(client, other, code, verifier), 401, "invalid_grant")


@pytest.mark.parametrize(
    ("auth", "challenge"),
    [({}, "Bearer"), ({"client_secret": "wrong"}, "Bearer"), ("basic-wrong", "Basic")],
    ids=["no secret", "wrong secret in body", "wrong secret in Basic"],
)
def test_a_confidential_app_must_authenticate(
    client: FlaskClient, backend: AppHandle, alice: str, auth: object, challenge: str
) -> None:
    code, verifier = code_for(client, backend)
    if auth == "basic-wrong":
        import base64

        basic = base64.b64encode(f"{backend.client_id}:wrong".encode()).decode()
        answer = client.post(
            "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "code_verifier": verifier,
                "redirect_uri": REDIRECT,
            },
            headers={"Authorization": f"Basic {basic}"},
        )
    else:
        answer = exchange(client, backend, code, verifier, **auth)  # type: ignore[arg-type]

    assert_oauth_error(answer, 401, "invalid_client")
    assert answer.headers["WWW-Authenticate"].startswith(challenge)
    good = exchange(client, backend, code, verifier, client_secret=backend.secret or "")
    assert good.status_code == 200, good.get_data(as_text=True)


def test_a_public_app_has_no_secret(client: FlaskClient, spa: AppHandle, alice: str) -> None:
    code, verifier = code_for(client, spa)
    answer = exchange(client, spa, code, verifier, client_secret="anything")
    assert_oauth_error(answer, 401, "invalid_client")


def test_the_tenant_header_must_be_the_apps(
    client: FlaskClient, spa: AppHandle, other_tenant: TenantHandle, alice: str
) -> None:
    code, verifier = code_for(client, spa)
    answer = client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": REDIRECT,
            "client_id": spa.client_id,
        },
        headers={"X-Tenant-ID": other_tenant.id},
    )
    assert_oauth_error(answer, 400, "invalid_request")


def test_a_user_blocked_before_the_exchange_gets_nothing(
    app: Flask, client: FlaskClient, tenant: TenantHandle, spa: AppHandle, alice: str
) -> None:
    code, verifier = code_for(client, spa)
    with app.app_context(), tenant_scope(tenant.id):
        user_service.update_user(
            user=user_service.get_user(alice), changes={"blocked": True}, actor="test"
        )
        db.session.commit()
    assert_oauth_error(exchange(client, spa, code, verifier), 401, "invalid_grant")
