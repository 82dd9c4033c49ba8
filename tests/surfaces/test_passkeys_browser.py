"""Passkeys in a real browser: headless Chromium with its virtual authenticator (DevTools
`WebAuthn.addVirtualAuthenticator`: a platform authenticator with resident keys and user
verification). A password sign-in offers to add a passkey; the passkey then signs in
alone ("Sign in with a passkey") and serves as the second factor ("Use a passkey"); the
account page lists it.

WebAuthn needs a secure context and a domain name: the app is browsed at
http://localhost:PORT (localhost is a secure context) with WEBAUTHN_RP_ID=localhost and
that origin."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from tests import factories
from tests.browser_support import OUTPUT_DIR
from tests.factories import TenantHandle
from tests.oauth_support import (
    PASSWORD,
    authorize_query,
    claims,
    confirmed_totp,
    make_alice,
    pkce_pair,
    query_of,
    sign_in,
)

pytestmark = pytest.mark.browser
NO_CONDITIONAL_UI = (
    "PublicKeyCredential.isConditionalMediationAvailable = () => Promise.resolve(false);"
)


@pytest.fixture()
def localhost(app: Flask, live_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The live server under the name localhost, as the relying party and origin."""
    base = f"http://localhost:{urlsplit(live_server).port}"
    monkeypatch.setitem(app.config, "WEBAUTHN_RP_ID", "localhost")
    monkeypatch.setitem(app.config, "WEBAUTHN_ORIGINS", [base])
    return base


AXE_RULES = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}


def assert_accessible(page: Any) -> None:
    """No WCAG 2.1 AA violation that axe-core finds on the page as shown."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options=AXE_RULES)
    assert results.violations_count == 0, results.generate_report()


def _virtual_authenticator(context: Any, page: Any) -> tuple[Any, str]:
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    added = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp, added["authenticatorId"]


def _exchange(base: str, handle: Any, callback_url: str, verifier: str) -> dict[str, Any]:
    answer = requests.post(
        f"{base}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": query_of(callback_url)["code"],
            "redirect_uri": handle.redirect_uri,
            "client_id": handle.client_id,
            "code_verifier": verifier,
        },
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return claims(answer.json()["id_token"])


def _open_login(page: Any, base: str, handle: Any) -> str:
    verifier, challenge = pkce_pair()
    page.goto(f"{base}/authorize?{urlencode(authorize_query(handle, challenge))}")
    return verifier


def _password(page: Any) -> None:
    page.get_by_label("Username or email address").fill("alice")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()


def test_register_after_sign_in_then_sign_in_with_the_passkey_and_as_second_factor(
    app: Flask,
    client: FlaskClient,
    localhost: str,
    callback_server: str,
    browser: Any,
    tenant: TenantHandle,
) -> None:
    alice = make_alice(app, tenant.id)
    handle = factories.make_application(
        app, tenant.id, name="Acme Notes", redirect_uris=[callback_server]
    )
    context = browser.new_context(viewport={"width": 720, "height": 720})
    page = context.new_page()
    cdp, authenticator_id = _virtual_authenticator(context, page)
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)

    # A password sign-in in a browser that can make passkeys: the offer, then the app.
    verifier = _open_login(page, localhost, handle)
    page.get_by_role("button", name="Sign in with a passkey").wait_for()
    _password(page)
    page.get_by_role("heading", name="Add a passkey").wait_for()
    page.screenshot(path=str(OUTPUT_DIR / "passkey-offer.png"))
    assert_accessible(page)
    page.get_by_role("button", name="Add a passkey").click()
    page.wait_for_url(f"{callback_server}?*")
    assert _exchange(localhost, handle, page.url, verifier)["amr"] == ["pwd"]
    credentials = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})
    assert len(credentials["credentials"]) == 1
    assert credentials["credentials"][0]["isResidentCredential"] is True

    # The account page lists it.
    page.goto(f"{localhost}/account/passkeys?tenant={tenant.id}")
    assert page.get_by_role("heading", level=1).inner_text() == "Passkeys"
    assert page.get_by_role("heading", name="Passkey 1").is_visible()
    page.screenshot(path=str(OUTPUT_DIR / "account-passkeys.png"))
    assert_accessible(page)

    # Signed out, the browser's autofill (conditional UI) offers the passkey on the login
    # page; the virtual authenticator picks it at once: signed in, no username, no password.
    context.clear_cookies()
    verifier = _open_login(page, localhost, handle)
    page.wait_for_url(f"{callback_server}?*")
    id_token = _exchange(localhost, handle, page.url, verifier)
    assert id_token["sub"] == alice and id_token["amr"] == ["hwk", "mfa"]

    # From here on, a browser without the autofill (else it signs in before any form).
    page.add_init_script(NO_CONDITIONAL_UI)

    # With TOTP enrolled, the passkey is the second factor after the password.
    confirmed_totp(client, sign_in(client, tenant.id, "alice")["access_token"])
    context.clear_cookies()
    verifier = _open_login(page, localhost, handle)
    _password(page)
    use_passkey = page.get_by_role("button", name="Use a passkey")
    use_passkey.wait_for()
    page.screenshot(path=str(OUTPUT_DIR / "passkey-second-factor.png"))
    assert_accessible(page)
    use_passkey.click()
    page.wait_for_url(f"{callback_server}?*")
    assert _exchange(localhost, handle, page.url, verifier)["amr"] == ["pwd", "hwk", "mfa"]

    # Without the autofill, the button: "Sign in with a passkey".
    context.clear_cookies()
    verifier = _open_login(page, localhost, handle)
    page.screenshot(path=str(OUTPUT_DIR / "login-page-passkey.png"))
    assert_accessible(page)
    page.get_by_role("button", name="Sign in with a passkey").click()
    page.wait_for_url(f"{callback_server}?*")
    id_token = _exchange(localhost, handle, page.url, verifier)
    assert id_token["sub"] == alice and id_token["amr"] == ["hwk", "mfa"]
    context.close()


def test_continue_skips_the_offer(
    app: Flask, localhost: str, callback_server: str, browser: Any, tenant: TenantHandle
) -> None:
    make_alice(app, tenant.id)
    handle = factories.make_application(app, tenant.id, redirect_uris=[callback_server])
    context = browser.new_context()
    page = context.new_page()
    _virtual_authenticator(context, page)

    _open_login(page, localhost, handle)
    _password(page)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{callback_server}?*")

    # Signed out again, this browser is not asked a second time.
    names = {c["name"] for c in context.cookies(localhost)}
    context.clear_cookies(name=f"gh_sso_{tenant.id}")
    assert "gh_passkey_skip" in names
    _open_login(page, localhost, handle)
    _password(page)
    page.wait_for_url(f"{callback_server}?*")
    context.close()


def test_a_failed_ceremony_is_announced_on_the_page(
    app: Flask, localhost: str, callback_server: str, browser: Any, tenant: TenantHandle
) -> None:
    make_alice(app, tenant.id)
    handle = factories.make_application(app, tenant.id, redirect_uris=[callback_server])
    context = browser.new_context()
    page = context.new_page()
    cdp, authenticator_id = _virtual_authenticator(context, page)
    _open_login(page, localhost, handle)
    _password(page)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{callback_server}?*")
    # The authenticator cannot verify the user: the browser refuses, the page says so.
    cdp.send(
        "WebAuthn.setUserVerified", {"authenticatorId": authenticator_id, "isUserVerified": False}
    )
    page.goto(f"{localhost}/account/passkeys?tenant={tenant.id}")
    page.get_by_role("button", name="Add a passkey").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "The passkey did not work" in alert.inner_text()
    assert page.get_by_role("button", name="Add a passkey").is_enabled()
    context.close()


def test_no_passkey_where_the_origin_is_not_the_relying_partys(
    app: Flask, live_server: str, callback_server: str, browser: Any, tenant: TenantHandle
) -> None:
    # The session app's relying party is gatehouse.test; the page is at 127.0.0.1.
    make_alice(app, tenant.id)
    handle = factories.make_application(app, tenant.id, redirect_uris=[callback_server])
    context = browser.new_context()
    page = context.new_page()
    _virtual_authenticator(context, page)

    _open_login(page, live_server, handle)
    page.wait_for_load_state()
    assert page.get_by_role("button", name="Sign in with a passkey").count() == 0
    _password(page)
    page.wait_for_url(f"{callback_server}?*")  # no offer
    context.close()
