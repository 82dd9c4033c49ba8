"""The console in headless Chromium: an admin with TOTP opens /console, signs in on the
hosted login page with the password and the code, lands on the dashboard, and axe-core
finds no WCAG 2.1 A/AA violation on the dashboard, the Members page, the admin pages or
the Users pages (search, a user, delete confirmation and metadata form, with their errors
shown), under the console's own Content-Security-Policy, which allows no script."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.core.db import db
from app.tenants import service as tenant_service
from tests import factories
from tests.browser_support import csp_violations
from tests.console_support import assert_axe_clean, browser_sign_in, grant
from tests.factories import TenantHandle
from tests.oauth_support import confirmed_totp, make_alice, sign_in

pytestmark = pytest.mark.browser


def test_an_admin_with_totp_signs_in_and_the_pages_pass_axe(
    app: Flask,
    client: FlaskClient,
    live_server: str,
    browser: Any,
    tenant: TenantHandle,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The console's callback is `{ISSUER}/console/callback`: here, the served app.
    monkeypatch.setitem(app.config, "ISSUER", live_server)
    alice = make_alice(app, tenant.id)
    factories.make_user(app, tenant.id, user_id="bob-1", email="bob@example.com")
    grant(app, tenant.id, alice)
    grant(app, tenant.id, "bob-1", "console:viewer")
    secret = confirmed_totp(client, sign_in(client, tenant.id, "alice")["access_token"])
    with app.app_context():
        tenant_service.update_tenant(tenant_id=tenant.id, settings={"console_require_mfa": True})
        db.session.commit()

    context = browser.new_context(viewport={"width": 1024, "height": 768})
    page = context.new_page()
    csp_errors = csp_violations(page)
    try:
        browser_sign_in(page, live_server, tenant.id, totp_secret=secret)

        assert page.locator("h1").inner_text() == "Dashboard"
        assert "alice@example.com" in page.locator("header").inner_text()
        assert_axe_clean(page)

        page.get_by_role("link", name="Members").click()
        page.wait_for_load_state()
        assert page.locator("h1").inner_text() == "Members"
        assert "bob@example.com" in page.locator("table").inner_text()
        assert_axe_clean(page)

        # The Users pages: the search (and a refused query), a user's page, the delete
        # confirmation and the metadata form (and its errors).
        page.get_by_role("navigation", name="Console").get_by_role("link", name="Users").click()
        page.get_by_label("Search users").fill("phone:1")
        page.get_by_label("Search users").press("Enter")
        assert "Cannot search on" in page.locator("#q-error").inner_text()
        page.get_by_label("Search users").fill("bob")
        page.get_by_label("Search users").press("Enter")
        page.get_by_role("link", name="bob@example.com").click()
        assert page.locator("h1").inner_text() == "bob@example.com"
        assert_axe_clean(page)
        page.get_by_role("link", name="Delete the user…").click()
        page.get_by_label(re.compile("Type the user's email address")).fill("nope")
        page.get_by_role("button", name="Delete the user").click()
        assert (
            page.locator("#confirm-error").inner_text() == "This is not the user's email address."
        )
        assert_axe_clean(page)
        page.get_by_role("link", name="Cancel").click()
        page.get_by_role("link", name="Edit the metadata").click()
        page.get_by_label("app_metadata").fill("[1]")
        page.get_by_role("button", name="Save").click()
        assert "Enter a JSON object" in page.locator("#app_metadata-error").inner_text()
        assert_axe_clean(page)

        # The admin pages (their forms and answers are checked in test_console_admin_browser).
        for name in ("Applications", "API keys", "Webhooks", "Connections"):
            page.get_by_role("navigation", name="Console").get_by_role("link", name=name).click()
            page.wait_for_load_state()
            assert page.locator("h1").inner_text() == name
            assert_axe_clean(page)
        assert not csp_errors, csp_errors
    finally:
        context.close()
