"""Refresh tokens over HTTP: rotation, the reuse grace, family revocation on reuse,
RFC 7009 revocation and the refresh rate limit."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient

from app.core.db import db
from app.core.tenancy import tenant_scope
from app.users import service as user_service
from tests import factories
from tests.factories import TenantHandle
from tests.oauth_support import (
    PASSWORD,
    assert_oauth_error,
    audit_events,
    bearer,
    claims,
    rate_limited_app,
    refresh,
    sign_in,
    variant_app,
)


def _user(app: Flask, tenant: TenantHandle) -> str:
    return factories.make_user(
        app, tenant.id, user_id="carol-1", username="carol", password=PASSWORD
    )


def test_refresh_rotates_the_token_within_one_family(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    user_id = _user(app, tenant)
    first = sign_in(client, tenant.id, "carol")

    response = refresh(client, first["refresh_token"], tenant.id)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    second = response.get_json()
    assert second["token_type"] == "Bearer" and second["id_token"]
    assert second["refresh_token"] != first["refresh_token"]
    assert claims(second["access_token"])["sub"] == user_id
    assert claims(second["access_token"])["sid"] == claims(first["access_token"])["sid"]
    assert claims(second["access_token"])["jti"] != claims(first["access_token"])["jti"]

    # The new refresh token works, without the tenant header and with a client_id (ignored).
    third = client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": second["refresh_token"],
            "client_id": "some-mobile-app",
        },
    )
    assert third.status_code == 200, third.get_data(as_text=True)
    assert claims(third.get_json()["access_token"])["sid"] == claims(first["access_token"])["sid"]
    profile = client.get("/user/profile", headers=bearer(third.get_json()["access_token"]))
    assert profile.status_code == 200 and profile.get_json()["id"] == user_id


def test_reuse_within_the_grace_interval_keeps_the_family(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    _user(app, tenant)
    session = sign_in(client, tenant.id, "carol")
    sid = claims(session["access_token"])["sid"]

    once = refresh(client, session["refresh_token"], tenant.id)
    twice = refresh(client, session["refresh_token"], tenant.id)
    assert once.status_code == twice.status_code == 200, twice.get_data(as_text=True)
    assert claims(once.get_json()["access_token"])["sid"] == sid
    assert claims(twice.get_json()["access_token"])["sid"] == sid
    assert once.get_json()["refresh_token"] != twice.get_json()["refresh_token"]
    for newer in (once, twice):
        assert refresh(client, newer.get_json()["refresh_token"], tenant.id).status_code == 200
    assert audit_events(client, tenant.headers, "token.refresh_reused") == []


def test_reuse_after_the_grace_interval_revokes_the_family(
    app: Flask, tenant: TenantHandle, database_url: str, tmp_path: Path
) -> None:
    user_id = _user(app, tenant)
    with variant_app(app, database_url, tmp_path, REFRESH_REUSE_GRACE_SECONDS="0") as strict:
        client = strict.test_client()
        session = sign_in(client, tenant.id, "carol")
        other_session = sign_in(client, tenant.id, "carol")

        rotated = refresh(client, session["refresh_token"], tenant.id)
        assert rotated.status_code == 200, rotated.get_data(as_text=True)
        reused = refresh(client, session["refresh_token"], tenant.id)
        assert_oauth_error(reused, 401, "invalid_grant")
        newest = refresh(client, rotated.get_json()["refresh_token"], tenant.id)
        assert_oauth_error(newest, 401, "invalid_grant")

        # Another family of the same user is untouched.
        assert refresh(client, other_session["refresh_token"], tenant.id).status_code == 200
        events = audit_events(client, tenant.headers, "token.refresh_reused")
        assert [e["user_id"] for e in events] == [user_id]
        assert events[0]["target"] == claims(session["access_token"])["sid"]


def test_a_refresh_token_is_bound_to_its_tenant(
    app: Flask, client: FlaskClient, tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    _user(app, tenant)
    session = sign_in(client, tenant.id, "carol")
    assert_oauth_error(
        refresh(client, session["refresh_token"], other_tenant.id), 401, "invalid_grant"
    )
    # The refused attempt did not use the token up.
    assert refresh(client, session["refresh_token"], tenant.id).status_code == 200


def test_a_blocked_or_deleted_user_cannot_refresh(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    user_id = _user(app, tenant)
    factories.make_user(app, tenant.id, user_id="gone-1", username="gone", password=PASSWORD)
    blocked = sign_in(client, tenant.id, "carol")
    deleted = sign_in(client, tenant.id, "gone")
    with app.app_context(), tenant_scope(tenant.id):
        user_service.update_user(
            user=user_service.get_user(user_id), changes={"blocked": True}, actor="test"
        )
        db.session.commit()
    assert client.delete("/users/gone-1", headers=tenant.headers).status_code == 204

    assert_oauth_error(refresh(client, blocked["refresh_token"], tenant.id), 401, "invalid_grant")
    assert_oauth_error(refresh(client, deleted["refresh_token"], tenant.id), 401, "invalid_grant")


def test_garbage_refresh_tokens_are_invalid_grant(
    client: FlaskClient, tenant: TenantHandle
) -> None:
    for garbage in ("garbage", f"rt_{tenant.id}_not-a-token", "rt_nope_nope"):
        assert_oauth_error(refresh(client, garbage, tenant.id), 401, "invalid_grant")


def test_revoke_kills_the_whole_family(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    _user(app, tenant)
    session = sign_in(client, tenant.id, "carol")
    rotated = refresh(client, session["refresh_token"], tenant.id).get_json()
    other_session = sign_in(client, tenant.id, "carol")

    response = client.post(
        "/oauth/revoke",
        data={"token": session["refresh_token"], "token_type_hint": "refresh_token"},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {}
    assert response.headers["Cache-Control"] == "no-store"

    assert_oauth_error(refresh(client, session["refresh_token"], tenant.id), 401, "invalid_grant")
    assert_oauth_error(refresh(client, rotated["refresh_token"], tenant.id), 401, "invalid_grant")
    assert refresh(client, other_session["refresh_token"], tenant.id).status_code == 200


def test_revoke_answers_200_for_unknown_tokens_and_400_without_one(
    client: FlaskClient, tenant: TenantHandle
) -> None:
    for unknown in ("nothing-like-a-token", f"rt_{tenant.id}_unknown"):
        response = client.post("/oauth/revoke", data={"token": unknown})
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.get_json() == {}
    assert_oauth_error(
        client.post("/oauth/revoke", data={"token_type_hint": "refresh_token"}),
        400,
        "invalid_request",
    )


def test_refresh_is_rate_limited_per_ip(
    app: Flask, tenant: TenantHandle, database_url: str, tmp_path: Path
) -> None:
    _user(app, tenant)
    with rate_limited_app(
        app, database_url, tmp_path, RATELIMIT_REFRESH_PER_IP="1 per minute"
    ) as limited:
        client = limited.test_client()
        session = sign_in(client, tenant.id, "carol")
        first = refresh(client, session["refresh_token"], tenant.id)
        assert first.status_code == 200, first.get_data(as_text=True)

        second = refresh(client, first.get_json()["refresh_token"], tenant.id)
        assert second.status_code == 429, second.get_data(as_text=True)
        assert isinstance(second.get_json()["error"], str)
        assert isinstance(second.get_json()["error_description"], str)
        retry_after = second.headers["Retry-After"]
        assert retry_after.isdigit() and 0 < int(retry_after) <= 60
        assert second.headers["x-ratelimit-limit"] == "1"
        # Sign-in has its own limits: it still works.
        sign_in(client, tenant.id, "carol")


def test_an_expired_refresh_token_is_refused(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from app.core.db import utcnow
    from app.tokens.models import RefreshToken

    _user(app, tenant)
    tokens = sign_in(client, tenant.id, "carol")
    with app.app_context(), tenant_scope(tenant.id):
        db.session.execute(update(RefreshToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    response = refresh(client, tokens["refresh_token"], tenant.id)
    assert_oauth_error(response, 401, "invalid_grant")
