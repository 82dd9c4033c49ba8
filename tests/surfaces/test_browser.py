"""A real browser signs in: headless Chromium, driven by Playwright, opens `/authorize`
on the app served over HTTP, fills the form by its labels and the keyboard, reads the
visible error of a wrong password, signs in, passes the TOTP step, and lands on a local
redirect URI with a code that the test exchanges. Screenshots of the login page go to
test-output/."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from tests import factories
from tests.browser_support import OTHER_HOST, OUTPUT_DIR
from tests.factories import TenantHandle
from tests.oauth_support import (
    PASSWORD,
    authorize_query,
    bearer,
    claims,
    confirmed_totp,
    next_totp,
    pkce_pair,
    query_of,
    sign_in,
    variant_app,
)

pytestmark = pytest.mark.browser


def test_a_person_signs_in_with_a_real_browser(
    app: Flask,
    client: FlaskClient,
    live_server: str,
    callback_server: str,
    browser: Any,
    tenant: TenantHandle,
) -> None:
    user_id = factories.make_user(
        app,
        tenant.id,
        username="alice",
        email="alice@example.com",
        display_name="Alice Liddell",
        password=PASSWORD,
    )
    secret = confirmed_totp(client, sign_in(client, tenant.id, "alice")["access_token"])
    handle = factories.make_application(
        app, tenant.id, name="Acme Notes", redirect_uris=[callback_server]
    )
    verifier, challenge = pkce_pair()
    query = authorize_query(handle, challenge)
    context = browser.new_context(viewport={"width": 720, "height": 640})
    page = context.new_page()

    page.goto(f"{live_server}/authorize?{urlencode(query)}")

    assert page.title() == "Sign in to Acme Notes"
    username = page.get_by_label("Username or email address")
    password = page.get_by_label("Password", exact=True)
    assert username.is_visible() and password.is_visible()
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUTPUT_DIR / "login-page.png"))
    assert (OUTPUT_DIR / "login-page.png").stat().st_size > 1000

    # A wrong password: the error is shown, announced, and the fields are marked.
    username.fill("alice")
    password.fill("not the password")
    password.press("Enter")
    alert = page.get_by_role("alert")
    assert "Wrong username, email or password" in alert.inner_text()
    assert page.get_by_label("Password", exact=True).get_attribute("aria-invalid") == "true"
    page.screenshot(path=str(OUTPUT_DIR / "login-page-error.png"))

    # The keyboard alone: the username is kept, Tab reaches the password, Enter submits.
    assert page.get_by_label("Username or email address").input_value() == "alice"
    page.get_by_label("Username or email address").focus()
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")

    # The second factor: the code the authenticator app shows.
    code = page.get_by_label("Authentication code")
    code.wait_for()
    assert page.title() == "Two-step verification"
    assert code.evaluate("element => element === document.activeElement")
    page.screenshot(path=str(OUTPUT_DIR / "login-second-factor.png"))
    code.fill(next_totp(secret))
    code.press("Enter")
    page.wait_for_url(f"{callback_server}?*")

    assert page.locator("h1").inner_text() == "Back in the app"
    answer = query_of(page.url)
    assert answer["state"] == query["state"]
    cookies = {c["name"]: c for c in context.cookies(live_server)}
    session_cookie = cookies[f"gh_sso_{tenant.id}"]
    # The issuer is http://gatehouse.test: not Secure (test_secure_cookies_over_http).
    assert session_cookie["httpOnly"] and not session_cookie["secure"]
    assert session_cookie["sameSite"] == "Lax"
    context.close()

    tokens = requests.post(
        f"{live_server}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": answer["code"],
            "redirect_uri": callback_server,
            "client_id": handle.client_id,
            "code_verifier": verifier,
        },
        timeout=10,
    )
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    id_token = claims(body["id_token"])
    assert id_token["sub"] == user_id and id_token["aud"] == handle.client_id
    assert id_token["nonce"] == query["nonce"] and id_token["name"] == "Alice Liddell"
    info = client.get("/userinfo", headers=bearer(body["access_token"]))
    assert info.status_code == 200 and info.get_json()["email"] == "alice@example.com"


@contextmanager
def served_as(
    session_app: Flask, database_url: str, tmp: Path, host: str, **settings: str
) -> Iterator[str]:
    """A process of the deployment served over HTTP whose ISSUER is `host` at the port it
    listens on (with `settings` on top); that issuer."""
    target: dict[str, Flask] = {}

    def dispatch(environ: dict[str, Any], start_response: Any) -> Any:
        return target["app"](environ, start_response)

    with factories.serve(dispatch) as base:  # type: ignore[arg-type]
        issuer = f"http://{host}:{base.rpartition(':')[2]}"
        with variant_app(session_app, database_url, tmp, ISSUER=issuer, **settings) as served:
            target["app"] = served
            yield issuer


SECURE_CASES = {
    # Issue 22: Secure cookies over http on a real host; every sign-in failed.
    "http host, default": (OTHER_HOST, {}, "signed in", ""),
    "http host, told Secure": (OTHER_HOST, {"LOGIN_COOKIE_SECURE": "true"}, "no cookies", ""),
    "loopback, told Secure": ("127.0.0.1", {"LOGIN_COOKIE_SECURE": "true"}, "signed in", "__Host-"),
}


@pytest.mark.parametrize(
    ("host", "settings", "outcome", "prefix"), SECURE_CASES.values(), ids=SECURE_CASES.keys()
)
def test_secure_cookies_over_http(
    app: Flask,
    database_url: str,
    tmp_path: Path,
    callback_server: str,
    browser: Any,
    tenant: TenantHandle,
    host: str,
    settings: dict[str, str],
    outcome: str,
    prefix: str,
) -> None:
    """Cookies are Secure when the issuer is https (here: only when told); a browser drops
    Secure cookies from a plain-http host but not from loopback, and a form that comes
    back without its cookie says so."""
    factories.make_user(app, tenant.id, username="alice", password=PASSWORD)
    handle = factories.make_application(app, tenant.id, redirect_uris=[callback_server])
    _, challenge = pkce_pair()
    with served_as(app, database_url, tmp_path, host, **settings) as issuer:
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{issuer}/authorize?{urlencode(authorize_query(handle, challenge))}")
        page.get_by_label("Username or email address").fill("alice")
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        if outcome == "signed in":
            page.wait_for_url(f"{callback_server}?*")
            assert "code" in query_of(page.url)
        else:
            alert = page.get_by_role("alert")
            assert "did not send this site's cookies" in alert.inner_text()
            assert page.locator("code").inner_text() == "cookies_missing"
        cookies = {c["name"]: c for c in context.cookies(issuer)}
        context.close()

    if outcome == "signed in":
        session_cookie = cookies[f"{prefix}gh_sso_{tenant.id}"]
        assert session_cookie["secure"] is bool(prefix) and session_cookie["path"] == "/"
        assert f"{prefix}gh_csrf" in cookies
    else:
        assert cookies == {}  # the browser kept none of them
