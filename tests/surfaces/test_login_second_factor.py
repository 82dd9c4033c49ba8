"""The login page's second step: a user with a confirmed TOTP enrolment gives the code
after the password (the MFA service's check, as the password grant's `otp`), on a page
that is accessible, bound to this browser, short-lived and rate-limited."""

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
    confirmed_totp,
    exchange,
    form_fields,
    make_alice,
    next_totp,
    pkce_pair,
    query_of,
    rate_limited_app,
    sign_in,
    submit_login,
)


@pytest.fixture()
def web(app: Flask, tenant: TenantHandle) -> AppHandle:
    return factories.make_application(app, tenant.id, name="Acme Web")


@pytest.fixture()
def secret(app: Flask, client: FlaskClient, tenant: TenantHandle) -> str:
    """alice, enrolled in TOTP; her secret."""
    make_alice(app, tenant.id)
    return confirmed_totp(client, sign_in(client, tenant.id, "alice")["access_token"])


def _second_step(client: FlaskClient, web: AppHandle) -> tuple[object, str, dict]:
    verifier, challenge = pkce_pair()
    query = authorize_query(web, challenge)
    page = client.get("/authorize", query_string=query)
    return submit_login(client, page, "alice"), verifier, query


def _submit_code(client: FlaskClient, page: object, code: str):
    fields = form_fields(page.get_data(as_text=True))  # type: ignore[attr-defined]
    return client.post("/authorize/second-factor", data={**fields, "code": code})


def test_the_password_leads_to_an_accessible_code_page_then_to_the_app(
    client: FlaskClient, tenant: TenantHandle, web: AppHandle, secret: str
) -> None:
    page, verifier, query = _second_step(client, web)

    assert page.status_code == 200  # type: ignore[attr-defined]
    html = page.get_data(as_text=True)  # type: ignore[attr-defined]
    assert "Two-step verification" in html and "Acme Web" in html
    assert '<label for="code">Authentication code</label>' in html
    assert 'autocomplete="one-time-code"' in html and 'inputmode="numeric"' in html
    assert "gh_sso_" not in str(page.headers)  # type: ignore[attr-defined]  # not signed in yet

    done = _submit_code(client, page, next_totp(secret))

    assert done.status_code == 303, done.get_data(as_text=True)
    answer = query_of(done.headers["Location"])
    assert answer["state"] == query["state"]
    tokens = exchange(client, web, answer["code"], verifier)
    assert claims(tokens.get_json()["id_token"])["sub"] == "alice-1"
    signed_in = audit_events(client, tenant.headers, "user.signed_in")
    assert [e["data"]["method"] for e in signed_in] == ["login_page", "password"]


def test_a_wrong_or_reused_code_shows_the_step_again(
    client: FlaskClient, tenant: TenantHandle, web: AppHandle, secret: str
) -> None:
    page, _, _ = _second_step(client, web)

    wrong = _submit_code(client, page, "000000")
    assert wrong.status_code == 401
    html = wrong.get_data(as_text=True)
    assert 'role="alert"' in html and "The one-time code is not valid" in html
    assert 'aria-invalid="true"' in html and 'name="pending"' in html
    failed = audit_events(client, tenant.headers, "user.signin_failed")
    assert [e["data"]["reason"] for e in failed] == ["wrong_otp"]

    code = next_totp(secret)
    notice = _submit_code(client, wrong, code)
    assert notice.status_code == 200  # first told of the wrong code (test_second_factor_budget)
    fields = form_fields(notice.get_data(as_text=True))
    assert client.post("/authorize/continue", data=fields).status_code == 303
    # The same code again, in another browser's sign-in: refused (each code works once).
    elsewhere = client.application.test_client()
    again, _, _ = _second_step(elsewhere, web)
    assert _submit_code(elsewhere, again, code).status_code == 401


def test_the_code_page_is_bound_to_this_browser(
    app: Flask, client: FlaskClient, web: AppHandle, secret: str
) -> None:
    page, _, _ = _second_step(client, web)
    fields = form_fields(page.get_data(as_text=True))  # type: ignore[attr-defined]
    other = app.test_client()
    _second_step(other, web)  # a browser with cookies of its own

    stranger = other.post("/authorize/second-factor", data={**fields, "code": next_totp(secret)})

    assert stranger.status_code == 400
    assert "<code>form_expired</code>" in stranger.get_data(as_text=True)


def test_a_user_without_a_second_factor_skips_the_step(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle
) -> None:
    make_alice(app, tenant.id)
    page, _, _ = _second_step(client, web)
    assert page.status_code == 303  # type: ignore[attr-defined]


def test_codes_are_rate_limited_like_sign_in(
    app: Flask, database_url: str, tmp_path: Path, web: AppHandle, secret: str
) -> None:
    """The password and the codes count against one budget per account (and IP)."""
    with rate_limited_app(
        app, database_url, tmp_path, RATELIMIT_SIGNIN_PER_ACCOUNT="3 per minute"
    ) as limited:
        browser = limited.test_client()
        page, _, _ = _second_step(browser, web)  # the password: 1
        for _ in range(2):
            page = _submit_code(browser, page, "000000")  # 2, 3
            assert page.status_code == 401
        refused = _submit_code(browser, page, next_totp(secret))

    assert refused.status_code == 429
    html = refused.get_data(as_text=True)
    assert 'data-code="rate_limited"' in html and "Too many requests" in html
    assert 'name="pending"' in html and int(refused.headers["Retry-After"]) >= 1
