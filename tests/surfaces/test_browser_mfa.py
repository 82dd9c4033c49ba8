"""Required MFA in a real browser (issue 25): headless Chromium signs in to an app of a
tenant that requires MFA, enrols TOTP from the key shown as text (the test computes the
code with pyotp, as an authenticator app would from the QR code), reads the recovery
codes, goes on with "Continue" and lands at the app with a code whose ID token says how
the user signed in; a second sign-in uses a recovery code ("Use a recovery code"), and a
third one with the same code is refused."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pyotp
import pytest
import requests
from flask import Flask

from app.core.db import db
from app.core.tenancy import tenant_scope
from app.tenants import service as tenant_service
from tests import factories
from tests.browser_support import OUTPUT_DIR
from tests.factories import AppHandle, TenantHandle
from tests.oauth_support import PASSWORD, authorize_query, claims, pkce_pair, query_of

pytestmark = pytest.mark.browser
WCAG_21_AA = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}


def assert_accessible(page: Any) -> None:
    """axe-core's WCAG 2.1 AA rules find nothing on the page."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options=WCAG_21_AA)
    assert results.violations_count == 0, results.generate_report()


def _sign_in(page: Any, live_server: str, handle: AppHandle) -> tuple[str, dict[str, str]]:
    verifier, challenge = pkce_pair()
    query = authorize_query(handle, challenge)
    page.goto(f"{live_server}/authorize?{urlencode(query)}")
    page.get_by_label("Username or email address").fill("alice")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    return verifier, query


def _exchange(live_server: str, handle: AppHandle, url: str, verifier: str) -> dict[str, Any]:
    tokens = requests.post(
        f"{live_server}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": query_of(url)["code"],
            "redirect_uri": handle.redirect_uri,
            "client_id": handle.client_id,
            "code_verifier": verifier,
        },
        timeout=10,
    )
    assert tokens.status_code == 200, tokens.text
    return claims(tokens.json()["id_token"])


def test_required_mfa_enrols_in_place_and_a_recovery_code_works_once(
    app: Flask, live_server: str, callback_server: str, browser: Any, tenant: TenantHandle
) -> None:
    factories.make_user(
        app,
        tenant.id,
        user_id="alice-1",
        username="alice",
        email="alice@example.com",
        password=PASSWORD,
    )
    with app.app_context(), tenant_scope(tenant.id):
        tenant_service.update_tenant(tenant_id=tenant.id, settings={"mfa_required": True})
        db.session.commit()
    handle = factories.make_application(
        app, tenant.id, name="Acme Notes", redirect_uris=[callback_server]
    )
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)

    # 1. Password, then the enrolment in place.
    context = browser.new_context(viewport={"width": 720, "height": 1000})
    page = context.new_page()
    verifier, query = _sign_in(page, live_server, handle)
    page.get_by_role("heading", name="Set up two-step verification").wait_for()
    assert page.title() == "Set up two-step verification"
    qr = page.locator("svg.qr")
    assert qr.is_visible() and qr.bounding_box()["width"] >= 100
    page.screenshot(path=str(OUTPUT_DIR / "mfa-enrolment.png"))
    assert_accessible(page)
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    code = page.get_by_label("Code from the app")
    code.fill("000000")
    page.get_by_role("button", name="Verify and turn on").click()
    assert "not valid" in page.get_by_role("alert").inner_text()
    assert_accessible(page)
    assert page.locator("#totp-secret").inner_text().replace(" ", "") == secret
    page.get_by_label("Code from the app").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Verify and turn on").click()

    # 2. The recovery codes, shown once; Continue goes back to the app.
    page.get_by_role("heading", name="Your recovery codes").wait_for()
    assert "Save these recovery codes" in page.content()
    codes = [item.inner_text() for item in page.locator(".recovery-codes li").all()]
    assert len(codes) == 10
    page.screenshot(path=str(OUTPUT_DIR / "mfa-recovery-codes.png"))
    assert_accessible(page)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{callback_server}?*")
    assert query_of(page.url)["state"] == query["state"]
    assert _exchange(live_server, handle, page.url, verifier)["amr"] == ["pwd", "otp", "mfa"]
    context.close()

    # 3. Another browser: the second step, with a recovery code.
    for attempt in ("first", "again"):
        context = browser.new_context(viewport={"width": 720, "height": 800})
        page = context.new_page()
        verifier, _ = _sign_in(page, live_server, handle)
        page.get_by_label("Authentication code").wait_for()
        assert page.get_by_role("button", name="Cancel").is_visible()
        assert_accessible(page)
        page.get_by_role("link", name="Use a recovery code").click()
        recovery = page.get_by_label("Recovery code")
        recovery.wait_for()
        if attempt == "first":
            page.screenshot(path=str(OUTPUT_DIR / "mfa-recovery-code-step.png"))
            assert_accessible(page)
        recovery.fill(codes[0].upper())
        recovery.press("Enter")
        if attempt == "first":
            page.wait_for_url(f"{callback_server}?*")
            assert _exchange(live_server, handle, page.url, verifier)["amr"] == ["pwd", "mfa"]
        else:
            alert = page.get_by_role("alert")
            assert "recovery code is not valid" in alert.inner_text()
            assert page.get_by_label("Recovery code").get_attribute("aria-invalid") == "true"
            assert_accessible(page)
        context.close()


def test_the_account_page_turns_totp_on_and_shows_the_codes_once(
    app: Flask, live_server: str, callback_server: str, browser: Any, tenant: TenantHandle
) -> None:
    factories.make_user(app, tenant.id, user_id="alice-1", username="alice", password=PASSWORD)
    handle = factories.make_application(app, tenant.id, redirect_uris=[callback_server])
    context = browser.new_context(viewport={"width": 720, "height": 1000})
    page = context.new_page()
    _sign_in(page, live_server, handle)
    page.wait_for_url(f"{callback_server}?*")  # no MFA required: straight to the app

    page.goto(f"{live_server}/account/mfa?tenant={tenant.id}")
    assert page.locator("#totp-status").inner_text() == "Off."
    assert_accessible(page)
    page.get_by_role("button", name="Set up an authenticator app").click()
    page.get_by_role("heading", name="Set up an authenticator app").wait_for()
    assert_accessible(page)
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    page.get_by_label("Code from the app").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Verify and turn on").click()
    page.get_by_role("heading", name="Your recovery codes").wait_for()
    assert len(page.locator(".recovery-codes li").all()) == 10
    page.get_by_role("link", name="Continue").click()
    page.get_by_role("heading", name="Two-step verification").wait_for()
    assert page.locator("#totp-status").inner_text().startswith("On")
    assert page.locator("#codes-left").inner_text() == "10 recovery codes left."
    assert_accessible(page)
    context.close()
