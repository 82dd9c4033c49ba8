"""The console's insight pages in headless Chromium: an admin signs in, sees today's
sign-in on the dashboard's chart, grants a role and saves a setting, then reads the audit
trail filtered to their own actions, downloads it as CSV and checks its rows; axe-core
finds no WCAG 2.1 AA violation on the filtered audit log or the refused settings form."""

from __future__ import annotations

import csv
import re
from typing import Any

import pytest
from flask import Flask

from tests import factories
from tests.browser_support import csp_violations
from tests.console_support import grant
from tests.factories import TenantHandle
from tests.oauth_support import PASSWORD, make_alice
from tests.surfaces.test_hosted_a11y import WCAG_AA

pytestmark = pytest.mark.browser


def _no_violations(page: Any) -> None:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options=WCAG_AA)
    assert results.violations_count == 0, results.generate_report()


def test_an_admin_reads_the_audit_trail_of_their_console_actions_and_downloads_it(
    app: Flask,
    live_server: str,
    browser: Any,
    tenant: TenantHandle,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(app.config, "ISSUER", live_server)
    alice = make_alice(app, tenant.id)
    factories.make_user(app, tenant.id, user_id="bob-1", email="bob@example.com")
    grant(app, tenant.id, alice)
    factories.record_events(app, tenant.id, [{"action": "user.blocked", "actor": "cli"}])

    context = browser.new_context(viewport={"width": 1024, "height": 768}, accept_downloads=True)
    page = context.new_page()
    csp_errors = csp_violations(page)
    try:
        page.goto(f"{live_server}/console?tenant={tenant.id}")
        page.get_by_label(re.compile("Username")).fill("alice")
        page.locator("#password").fill(PASSWORD)
        page.locator("#password").press("Enter")
        page.wait_for_url(re.compile(r"/console\?tenant="))

        # The dashboard: alice's sign-in of a moment ago, in the figure and today's bar.
        assert page.locator("h1").inner_text() == "Dashboard"
        assert page.locator("#signins-today").inner_text() == "1"
        today_bar = page.locator("svg rect.bar.today title")
        assert re.search(r": sign-ins 1, ", today_bar.text_content() or "")
        page.get_by_text("The figures as a table").click()
        assert page.get_by_role("table", name=re.compile("per day")).is_visible()

        # Two console actions: a role granted, a setting saved (and one refused first).
        page.get_by_role("link", name="Members").click()
        page.get_by_label("Email address of the user").fill("bob@example.com")
        page.get_by_label("Role", exact=True).select_option(label="Viewer")
        page.get_by_role("button", name="Grant").click()
        page.get_by_text("The role was granted.").wait_for()
        page.get_by_role("link", name="Settings").click()
        page.get_by_label("Primary colour (#rrggbb)").fill("purple")
        page.get_by_role("button", name="Save settings").click()
        page.get_by_role("alert").wait_for()
        colour = page.get_by_label("Primary colour (#rrggbb)")
        assert colour.get_attribute("aria-invalid") == "true"
        assert colour.input_value() == "purple"
        _no_violations(page)
        colour.fill("#7b1fa2")
        page.get_by_label("Display name", exact=True).fill("Acme")
        page.get_by_role("button", name="Save settings").click()
        page.get_by_text("The settings were saved.").wait_for()

        # The audit trail, filtered to alice's own actions.
        page.get_by_role("link", name="Audit log").click()
        page.get_by_label("Actor", exact=True).fill(f"user:{alice}")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url(re.compile(r"actor=user"))
        table = page.get_by_role("table", name=re.compile("Audit events")).inner_text()
        assert "console.member_granted" in table and "tenant.settings_changed" in table
        assert "user.blocked" not in table
        _no_violations(page)

        with page.expect_download() as download_info:
            page.get_by_role("link", name="Download these events as CSV").click()
        download = download_info.value
        assert download.suggested_filename == "audit-events.csv"
        with open(download.path(), newline="") as exported:
            rows = list(csv.DictReader(exported))
        actions = [row["action"] for row in rows]
        assert actions[:2] == ["tenant.settings_changed", "console.member_granted"]
        assert {row["actor"] for row in rows} == {f"user:{alice}"}
        assert "user.blocked" not in actions
        granted = rows[1]
        assert granted["user_id"] == "bob-1" and '"role":"console:viewer"' in granted["data"]
        assert not csp_errors, csp_errors
    finally:
        context.close()
