"""Sign-up and the forgotten password in a real browser (headless Chromium, Playwright):
from the app's login page, through the mail (the local fake Postmark, sent by the real
worker), back to the app with a code; after a reset, the new password signs in and a
session from before it is gone. Screenshots of the pages go to test-output/."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import unquote, urlencode

import pytest
import requests
from axe_playwright_python.sync_playwright import Axe
from flask import Flask
from flask.testing import FlaskClient

from tests import factories
from tests.browser_support import OUTPUT_DIR
from tests.factories import TenantHandle
from tests.oauth_support import (
    PASSWORD,
    authorize_query,
    claims,
    pkce_pair,
    query_of,
    refresh,
    sign_in,
)
from tests.postmark_fake import FakePostmark, ReceivedMail

pytestmark = pytest.mark.browser

SENDER = "noreply@example.com"
NEW_PASSWORD = "a brand new staple 42"
LINK = re.compile(r"http://gatehouse\.test(/(?:verify-email|reset-password)\?token=[^\s\"'<>&]+)")


@pytest.fixture()
def shop(app: Flask) -> TenantHandle:
    return factories.make_tenant(
        app,
        "shop",
        email_from=SENDER,
        postmark_server_token="pm-token-1",
        signup_enabled=True,
        signup_fields=["given_name", "family_name"],
    )


def mailed_path(postmark: FakePostmark, count: int) -> str:
    """The path and query of the link in the latest mail (the issuer's, to open on the
    served app)."""
    mails: list[ReceivedMail] = factories.wait_until(
        lambda: len(postmark.mails()) >= count and postmark.mails()
    )
    assert mails and len(mails) == count, postmark.received
    found = LINK.search(html.unescape(mails[-1].body["HtmlBody"]))
    assert found, mails[-1].body
    return found.group(1)


def exchange(live_server: str, client_id: str, redirect: str, code: str, verifier: str) -> Any:
    answer = requests.post(
        f"{live_server}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect,
            "client_id": client_id,
            "code_verifier": verifier,
        },
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


WCAG_21_AA = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
    "resultTypes": ["violations"],
}


def shot(page: Any, name: str) -> None:
    """A screenshot of the page, which must pass axe-core's WCAG 2.1 AA rules."""
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUTPUT_DIR / name))
    results = Axe().run(page, options=WCAG_21_AA)
    assert results.violations_count == 0, results.generate_report()


def test_sign_up_then_the_mailed_link_signs_in_and_returns_to_the_app(
    app: Flask,
    live_server: str,
    callback_server: str,
    browser: Any,
    shop: TenantHandle,
    postmark: FakePostmark,
    celery_worker: Any,
) -> None:
    handle = factories.make_application(
        app, shop.id, name="Acme Shop", redirect_uris=[callback_server]
    )
    verifier, challenge = pkce_pair()
    query = authorize_query(handle, challenge)
    context = browser.new_context(viewport={"width": 720, "height": 900})
    page = context.new_page()
    page.goto(f"{live_server}/authorize?{urlencode(query)}")
    shot(page, "login-with-links.png")
    page.get_by_role("link", name="Sign up").click()

    assert page.locator("h1").inner_text() == "Create your account"
    page.get_by_label("Email address").fill("ann@example.com")
    page.get_by_label("Given name").fill("Ann")
    page.get_by_label("Family name").fill("Smith")
    page.get_by_label("Password", exact=True).fill("short")
    page.get_by_label("Confirm password").fill("short")
    page.get_by_role("button", name="Sign up").click()
    # The policy's message, announced, and the form kept.
    assert "at least 8 characters" in page.get_by_role("alert").inner_text()
    assert page.get_by_label("Email address").input_value() == "ann@example.com"
    shot(page, "signup-error.png")
    page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Confirm password").fill(NEW_PASSWORD)
    shot(page, "signup.png")
    page.get_by_label("Confirm password").press("Enter")

    assert page.locator("h1").inner_text() == "Check your mail"
    shot(page, "signup-check-mail.png")
    # The link opened in the same browser: signed in, and on to the app with a code.
    page.goto(f"{live_server}{mailed_path(postmark, 1)}")
    page.wait_for_url(f"{callback_server}?*")
    answer = query_of(page.url)
    assert answer["state"] == query["state"]
    assert f"gh_sso_{shop.id}" in {c["name"] for c in context.cookies(live_server)}
    context.close()

    tokens = exchange(live_server, handle.client_id, callback_server, answer["code"], verifier)
    id_token = claims(tokens["id_token"])
    assert id_token["email"] == "ann@example.com" and id_token["email_verified"] is True
    assert id_token["given_name"] == "Ann" and id_token["family_name"] == "Smith"
    assert id_token["amr"] == ["pwd"] and id_token["nonce"] == query["nonce"]


def test_forgot_password_then_the_reset_page_returns_to_the_app_and_ends_old_sessions(
    app: Flask,
    client: FlaskClient,
    live_server: str,
    callback_server: str,
    browser: Any,
    shop: TenantHandle,
    postmark: FakePostmark,
    celery_worker: Any,
) -> None:
    user_id = factories.make_user(
        app, shop.id, username="joe", email="joe@example.com", password=PASSWORD
    )
    before = sign_in(client, shop.id, "joe")  # the password grant: a session of its own
    handle = factories.make_application(
        app, shop.id, name="Acme Shop", redirect_uris=[callback_server]
    )
    verifier, challenge = pkce_pair()
    query = authorize_query(handle, challenge)
    context = browser.new_context(viewport={"width": 720, "height": 720})
    page = context.new_page()
    page.goto(f"{live_server}/authorize?{urlencode(query)}")
    page.get_by_role("link", name="Forgot password?").click()

    assert page.locator("h1").inner_text() == "Forgot your password?"
    shot(page, "forgot-password.png")
    page.get_by_label("Email address").fill("joe@example.com")
    page.get_by_role("button", name="Send the link").click()
    assert page.locator("h1").inner_text() == "Check your mail"
    shot(page, "forgot-password-check-mail.png")

    path = mailed_path(postmark, 1)
    page.goto(f"{live_server}{path}")
    assert page.locator("h1").inner_text() == "Choose a new password"
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Confirm new password").fill("not the same one")
    page.get_by_role("button", name="Change password").click()
    assert "not the same" in page.get_by_role("alert").inner_text()
    shot(page, "reset-password-error.png")
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Confirm new password").fill(NEW_PASSWORD)
    shot(page, "reset-password.png")
    page.get_by_role("button", name="Change password").click()
    page.wait_for_url(f"{callback_server}?*")
    answer = query_of(page.url)
    assert answer["state"] == query["state"]
    tokens = exchange(live_server, handle.client_id, callback_server, answer["code"], verifier)
    assert claims(tokens["id_token"])["sub"] == user_id

    # The link is used up: a clear page that offers a new one.
    page.goto(f"{live_server}{path}")
    assert page.locator("h1").inner_text() == "This link no longer works"
    assert page.get_by_role("link", name="Ask for a new link").is_visible()
    shot(page, "reset-link-invalid.png")
    context.close()

    # The session from before the reset is gone; the new password signs in.
    assert refresh(client, before["refresh_token"], shop.id).status_code == 401
    fresh = browser.new_context()
    page = fresh.new_page()
    verifier, challenge = pkce_pair()
    page.goto(f"{live_server}/authorize?{urlencode(authorize_query(handle, challenge))}")
    page.get_by_label("Username or email address").fill("joe@example.com")
    page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{callback_server}?*")
    code = query_of(page.url)["code"]
    fresh.close()
    assert exchange(live_server, handle.client_id, callback_server, code, verifier)["id_token"]
    assert unquote(path).startswith("/reset-password?token=")
