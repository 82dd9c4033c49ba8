"""The console in headless Chromium: an admin with TOTP opens /console, signs in on the
hosted login page with the password and the code, lands on the dashboard, and axe-core
finds no WCAG 2.1 A/AA violation on the dashboard, the Members page or the admin pages
(under the console's own Content-Security-Policy, which allows no script)."""

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
from tests.console_support import grant
from tests.factories import TenantHandle
from tests.oauth_support import PASSWORD, confirmed_totp, make_alice, next_totp, sign_in
from tests.surfaces.test_hosted_a11y import WCAG_AA

pytestmark = pytest.mark.browser


def test_an_admin_with_totp_signs_in_and_the_pages_pass_axe(
    app: Flask,
    client: FlaskClient,
    live_server: str,
    browser: Any,
    tenant: TenantHandle,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from axe_playwright_python.sync_playwright import Axe

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
        page.goto(f"{live_server}/console?tenant={tenant.id}")
        page.get_by_label(re.compile("Username")).fill("alice")
        page.locator("#password").fill(PASSWORD)
        page.locator("#password").press("Enter")
        page.wait_for_load_state()
        page.locator("input[name=code]").fill(next_totp(secret))
        page.locator("input[name=code]").press("Enter")
        page.wait_for_url(re.compile(r"/console\?tenant="))

        assert page.locator("h1").inner_text() == "Dashboard"
        assert "alice@example.com" in page.locator("header").inner_text()
        axe = Axe()
        results = axe.run(page, options=WCAG_AA)
        assert results.violations_count == 0, results.generate_report()

        page.get_by_role("link", name="Members").click()
        page.wait_for_load_state()
        assert page.locator("h1").inner_text() == "Members"
        assert "bob@example.com" in page.locator("table").inner_text()
        results = axe.run(page, options=WCAG_AA)
        assert results.violations_count == 0, results.generate_report()

        # The admin pages (their forms and answers are checked in test_console_admin_browser).
        for name in ("Applications", "API keys", "Webhooks", "Connections"):
            page.get_by_role("navigation", name="Console").get_by_role("link", name=name).click()
            page.wait_for_load_state()
            assert page.locator("h1").inner_text() == name
            results = axe.run(page, options=WCAG_AA)
            assert results.violations_count == 0, (name, results.generate_report())
        assert not csp_errors, csp_errors
    finally:
        context.close()
