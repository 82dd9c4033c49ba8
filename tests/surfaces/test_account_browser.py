"""The account page in a real browser (headless Chromium through Playwright): a user
signed in through an app on two devices (two browser contexts) opens /account on one,
sees both sessions and signs the other out; that device's app then holds a refresh
token that is refused, and its /account asks to sign in again."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from flask import Flask

from tests.browser_support import OUTPUT_DIR
from tests.factories import AppHandle, TenantHandle, age_sessions, make_application
from tests.oauth_support import PASSWORD, authorize_query, make_alice, pkce_pair, query_of

pytestmark = pytest.mark.browser


def _sign_in_through_the_app(
    context: Any, live_server: str, callback_server: str, handle: AppHandle
) -> dict[str, Any]:
    """Sign in on the app's login page in `context` and exchange the code as the app
    does: the app's tokens."""
    verifier, challenge = pkce_pair()
    query = authorize_query(handle, challenge, scope="openid profile email offline_access")
    page = context.new_page()
    page.goto(f"{live_server}/authorize?{urlencode(query)}")
    page.get_by_label("Username or email address").fill("alice")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password", exact=True).press("Enter")
    page.wait_for_url(f"{callback_server}?*")
    code = query_of(page.url)["code"]
    page.close()
    tokens = requests.post(
        f"{live_server}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": callback_server,
            "client_id": handle.client_id,
            "code_verifier": verifier,
        },
        timeout=10,
    )
    assert tokens.status_code == 200, tokens.text
    return tokens.json()


WCAG_21_AA = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}


def _assert_accessible(page: Any) -> None:
    """axe-core finds no WCAG 2.1 A/AA violation on the page."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options=WCAG_21_AA)
    assert results.violations_count == 0, results.generate_report()


def _refresh(live_server: str, handle: AppHandle, tokens: dict[str, Any]) -> Any:
    return requests.post(
        f"{live_server}/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": handle.client_id,
        },
        timeout=10,
    )


def test_the_account_page_signs_out_another_device(
    app: Flask, live_server: str, callback_server: str, browser: Any, tenant: TenantHandle
) -> None:
    make_alice(app, tenant.id, display_name="Alice Liddell")
    handle = make_application(app, tenant.id, name="Acme Notes", redirect_uris=[callback_server])
    laptop = browser.new_context(viewport={"width": 800, "height": 900})
    phone = browser.new_context(
        viewport={"width": 390, "height": 800},
        user_agent=(
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Mobile Safari/537.36"
        ),
    )
    _sign_in_through_the_app(laptop, live_server, callback_server, handle)
    phone_tokens = _sign_in_through_the_app(phone, live_server, callback_server, handle)
    assert _refresh(live_server, handle, phone_tokens).status_code == 200
    phone_tokens = _refresh(live_server, handle, phone_tokens).json()  # a rotated one

    page = laptop.new_page()
    page.goto(f"{live_server}/account")
    assert page.get_by_role("heading", level=1).inner_text() == "Your account"
    sessions = page.get_by_role("region", name="Sessions").get_by_role("listitem")
    assert sessions.count() == 2
    here = sessions.filter(has_text="This device")
    there = sessions.filter(has_not_text="This device")
    assert "Chrome on Linux" in here.inner_text() and "Acme Notes" in here.inner_text()
    assert "Chrome on Android" in there.inner_text()
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUTPUT_DIR / "account-page.png"), full_page=True)
    _assert_accessible(page)

    # The keyboard alone: focus the other session's button and press Enter.
    there.get_by_role("button", name="Sign out").focus()
    page.keyboard.press("Enter")

    page.get_by_role("status").wait_for()
    assert page.get_by_role("status").inner_text() == "The session was signed out."
    assert sessions.count() == 1 and "This device" in sessions.inner_text()
    refused = _refresh(live_server, handle, phone_tokens)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_grant"
    phone_page = phone.new_page()
    phone_page.goto(f"{live_server}/account")
    assert phone_page.get_by_role("heading", level=1).inner_text() == "Sign in"
    assert phone_page.get_by_label("Username or email address").is_visible()
    _assert_accessible(phone_page)
    page.screenshot(path=str(OUTPUT_DIR / "account-sign-in.png"))

    # A password change after a while: the password is asked for first, then the form.
    age_sessions(app, tenant.id, 3600)
    page.get_by_role("link", name="Change password").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Confirm it's you"
    _assert_accessible(page)
    page.screenshot(path=str(OUTPUT_DIR / "account-reauthenticate.png"))
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password", exact=True).press("Enter")
    page.get_by_label("New password", exact=True).wait_for()
    assert page.get_by_role("heading", level=1).inner_text() == "Change your password"
    _assert_accessible(page)
    page.screenshot(path=str(OUTPUT_DIR / "account-password.png"))
    laptop.close()
    phone.close()
