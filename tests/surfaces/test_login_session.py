"""The browser's sign-in session behind the login page: a second app skips the form,
`prompt=login` and `max_age` bring it back, and the session ends with the user's
sessions (password change, block), with time, and when the browser signs in again."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests import factories
from tests.factories import AppHandle, TenantHandle
from tests.oauth_support import (
    audit_events,
    authorize_query,
    claims,
    exchange,
    form_fields,
    login_page,
    make_alice,
    pkce_pair,
    query_of,
    sign_in_through_page,
    submit_login,
    variant_app,
)

REDIRECT = "http://127.0.0.1:8765/callback"


@pytest.fixture()
def web(app: Flask, tenant: TenantHandle) -> AppHandle:
    return factories.make_application(app, tenant.id, redirect_uris=[REDIRECT])


@pytest.fixture()
def alice(app: Flask, tenant: TenantHandle) -> str:
    return make_alice(app, tenant.id)


def test_a_second_app_skips_the_form_while_the_sign_in_session_lives(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle, alice: str
) -> None:
    first, verifier, _ = sign_in_through_page(client, web, "alice")
    first_tokens = exchange(client, web, first["code"], verifier).get_json()
    mobile = factories.make_application(
        app, tenant.id, name="Acme Mobile", redirect_uris=["com.acme.mobile:/callback"]
    )

    verifier, challenge = pkce_pair()
    answer = client.get(
        "/authorize", query_string=authorize_query(mobile, challenge, prompt="none")
    )

    assert answer.status_code == 302
    params = query_of(answer.headers["Location"])
    assert answer.headers["Location"].startswith("com.acme.mobile:/callback?")
    tokens = exchange(client, mobile, params["code"], verifier).get_json()
    first_id, second_id = claims(first_tokens["id_token"]), claims(tokens["id_token"])
    assert second_id["aud"] == mobile.client_id
    assert second_id["auth_time"] == first_id["auth_time"]  # no new password was entered
    assert claims(tokens["access_token"])["sid"] != claims(first_tokens["access_token"])["sid"]


@pytest.mark.parametrize("extra", [{"prompt": "login"}, {"max_age": "0"}])
def test_prompt_login_and_max_age_zero_show_the_form_despite_the_session(
    app: Flask, client: FlaskClient, web: AppHandle, alice: str, extra: dict
) -> None:
    sign_in_through_page(client, web, "alice")
    page = login_page(client, web, **extra)

    assert page.status_code == 200 and 'name="password"' in page.get_data(as_text=True)
    # Signing in again replaces the browser's session: the old one ends.
    submit_login(client, page, "alice")
    assert _live_browser_sessions(app, web.tenant_id) == 1


def _live_browser_sessions(app: Flask, tenant_id: str) -> int:
    from sqlalchemy import func, select

    from app.core.db import db
    from app.core.tenancy import tenant_scope
    from app.tokens.models import AuthSession

    query = select(func.count()).where(
        AuthSession.client_id.is_(None), AuthSession.revoked_at.is_(None)
    )
    with app.app_context(), tenant_scope(tenant_id):
        return db.session.scalar(query) or 0


def test_the_session_does_not_cross_tenants(
    app: Flask, client: FlaskClient, web: AppHandle, other_tenant: TenantHandle, alice: str
) -> None:
    sign_in_through_page(client, web, "alice")
    elsewhere = factories.make_application(app, other_tenant.id)

    answer = login_page(client, elsewhere, prompt="none")
    assert query_of(answer.headers["Location"])["error"] == "login_required"


def _block(app: Flask, tenant_id: str, user_id: str) -> None:
    from app.core.db import db
    from app.core.tenancy import tenant_scope
    from app.users import service as user_service

    with app.app_context(), tenant_scope(tenant_id):
        user_service.update_user(
            user=user_service.get_user(user_id), changes={"blocked": True}, actor="test"
        )
        db.session.commit()


@pytest.mark.parametrize("ending", ["password change", "block"])
def test_revoking_the_users_sessions_ends_the_sign_in_session(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle, alice: str, ending: str
) -> None:
    sign_in_through_page(client, web, "alice")
    assert login_page(client, web, prompt="none").status_code == 302
    if ending == "block":
        _block(app, tenant.id, alice)
    else:
        changed = client.put(
            "/api/v1/users/alice/password",
            json={"new_password": "another fine password"},
            headers=tenant.headers,
        )
        assert changed.status_code == 200, changed.get_data(as_text=True)

    answer = login_page(client, web, prompt="none")
    assert query_of(answer.headers["Location"])["error"] == "login_required"


def test_the_sign_in_session_expires(
    app: Flask, database_url: str, tmp_path: Path, web: AppHandle, alice: str
) -> None:
    with variant_app(app, database_url, tmp_path, LOGIN_SESSION_TTL="0") as short:
        browser = short.test_client()
        sign_in_through_page(browser, web, "alice")
        answer = login_page(browser, web, prompt="none")

    assert query_of(answer.headers["Location"])["error"] == "login_required"


def test_a_blocked_user_cannot_sign_in_on_the_page(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle, alice: str
) -> None:
    _block(app, tenant.id, alice)
    answer = submit_login(client, login_page(client, web), "alice")

    assert answer.status_code == 401
    failed = audit_events(client, tenant.headers, "user.signin_failed")
    assert [e["data"]["reason"] for e in failed] == ["blocked"]


def test_a_login_hint_for_another_user_shows_the_form_prefilled(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle, alice: str
) -> None:
    """Issue 22: while alice's sign-in session lived, an app asking for bob got alice."""
    factories.make_user(
        app, tenant.id, user_id="bob-1", username="bob", email="bob@example.com", password="x" * 9
    )
    sign_in_through_page(client, web, "alice")

    page = login_page(client, web, login_hint="bob@example.com")

    assert page.status_code == 200, page.headers
    assert form_fields(page.get_data(as_text=True))["username"] == "bob@example.com"
    # Without the form (prompt=none) there is no way to sign bob in: login_required.
    silent = login_page(client, web, login_hint="bob", prompt="none")
    assert query_of(silent.headers["Location"])["error"] == "login_required"
    # A hint naming the signed-in user (by address, username or id) resumes her session.
    for hint in ("ALICE@example.com", "alice", alice):
        resumed = login_page(client, web, login_hint=hint)
        assert resumed.status_code == 302 and "code" in query_of(resumed.headers["Location"])
