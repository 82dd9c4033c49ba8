"""The console's Users pages in headless Chromium: among 10,000 users (bulk-loaded by the
bench's COPY fixture), a support member finds one by part of the email address, blocks
them (their earlier access token is refused), unblocks them (a new sign-in works), removes
their TOTP (the authentication-methods API shows none) and signs them out everywhere
(their refresh token fails, their hosted session is gone); the audit API then shows each
action with the console member as actor. axe-core finds no WCAG 2.1 AA violation."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.engine import make_url

from bench.seed import copy_users
from tests import factories
from tests.browser_support import csp_violations
from tests.console_support import assert_axe_clean, browser_sign_in, grant
from tests.factories import TenantHandle, bearer
from tests.oauth_support import (
    PASSWORD,
    assert_oauth_error,
    confirmed_totp,
    make_alice,
    refresh,
    sign_in,
)

pytestmark = pytest.mark.browser
CAROL = "carol-1"


def _methods(client: FlaskClient, tenant: TenantHandle) -> list[dict[str, Any]]:
    answer = client.get(f"/api/v2/users/{CAROL}/authentication-methods", headers=tenant.headers)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def test_support_finds_blocks_resets_mfa_and_signs_out_a_user_among_10000(
    app: Flask,
    client: FlaskClient,
    live_server: str,
    browser: Any,
    tenant: TenantHandle,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(app.config, "ISSUER", live_server)
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).set(drivername="postgresql")
    copy_users(url.render_as_string(hide_password=False), tenant.id, 10_000)
    grant(app, tenant.id, make_alice(app, tenant.id), "console:support")
    factories.make_user(
        app,
        tenant.id,
        user_id=CAROL,
        username="carol",
        email="carol.kent@example.com",
        password=PASSWORD,
    )
    before = sign_in(client, tenant.id, "carol")

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    csp_errors = csp_violations(page)
    try:
        browser_sign_in(page, live_server, tenant.id)

        # Find carol by part of her address, with the keyboard.
        page.get_by_role("link", name="Users").click()
        assert page.locator("h1").inner_text() == "Users"
        assert page.locator("tbody tr").count() == 50  # the newest, one page
        assert_axe_clean(page)
        page.get_by_label("Search users").fill("carol.k")
        page.get_by_label("Search users").press("Enter")
        page.wait_for_url(re.compile(r"q=carol\.k"))
        assert page.locator("tbody tr").count() == 1
        page.get_by_role("link", name="carol.kent@example.com").click()
        assert page.locator("h1").inner_text() == "carol.kent@example.com"
        assert_axe_clean(page)

        # Block: her earlier token is refused. Unblock: a new sign-in works.
        page.get_by_role("button", name="Block").click()
        assert "The user is blocked" in page.get_by_role("status").inner_text()
        assert client.get("/userinfo", headers=bearer(before["access_token"])).status_code == 401
        page.get_by_role("button", name="Unblock").click()
        assert page.get_by_role("status").inner_text() == "The user is unblocked."
        after = sign_in(client, tenant.id, "carol")
        assert client.get("/userinfo", headers=bearer(after["access_token"])).status_code == 200

        # Reset her MFA: the TOTP she set up is gone.
        confirmed_totp(client, after["access_token"])
        assert [m["type"] for m in _methods(client, tenant)] == ["totp"]
        page.reload()
        page.get_by_role("button", name="Remove the authenticator app").click()
        assert page.get_by_role("status").inner_text() == "The second factor was removed."
        assert _methods(client, tenant) == []

        # Sign her out everywhere: her refresh token and her hosted session die.
        hers = browser.new_context()
        account = hers.new_page()
        account.goto(f"{live_server}/account?tenant={tenant.id}")
        account.get_by_label("Username or email address").fill("carol")
        account.get_by_label("Password", exact=True).fill(PASSWORD)
        account.get_by_label("Password", exact=True).press("Enter")
        account.get_by_role("heading", name="Your account").wait_for()
        fresh = sign_in(client, tenant.id, "carol")
        page.reload()
        assert "No live session." not in page.locator("main").inner_text()
        page.get_by_role("button", name="Sign out of every session").click()
        assert "signed out of every session" in page.get_by_role("status").inner_text()
        assert "No live session." in page.locator("main").inner_text()
        assert_oauth_error(refresh(client, fresh["refresh_token"], tenant.id), 401, "invalid_grant")
        account.goto(f"{live_server}/account?tenant={tenant.id}")
        assert account.get_by_role("heading", level=1).inner_text() == "Sign in"
        hers.close()
        assert not csp_errors, csp_errors
    finally:
        context.close()

    events = client.get(
        "/audit-events", query_string={"actor": "user:alice-1"}, headers=tenant.headers
    ).get_json()["items"]
    assert [(e["action"], e["user_id"]) for e in events if e["user_id"] == CAROL] == [
        ("session.revoked", CAROL),
        ("mfa.removed", CAROL),
        ("user.blocked", CAROL),
        ("user.blocked", CAROL),
    ]
    assert [e["data"]["blocked"] for e in events if e["action"] == "user.blocked"] == [
        False,
        True,
    ]
