"""Helpers of the account-page tests: a browser (a test client with a User-Agent), an
app's tokens got through the login page, the account page's forms."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tests.factories import PASSWORD, AppHandle
from tests.oauth_support import code_for, exchange, form_fields, token_request

CHROME_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
FIREFOX_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"


def browser_client(app: Flask, user_agent: str = CHROME_LINUX) -> FlaskClient:
    browser = app.test_client()
    browser.environ_base["HTTP_USER_AGENT"] = user_agent
    return browser


def app_tokens(browser: FlaskClient, web: AppHandle) -> dict[str, Any]:
    """Sign in through the app's login page in `browser` and exchange the code: the app's
    tokens (with a refresh token)."""
    code, verifier = code_for(browser, web, scope="openid profile email offline_access")
    response = exchange(browser, web, code, verifier)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def app_refresh(client: FlaskClient, web: AppHandle, tokens: dict[str, Any]) -> Any:
    """Refresh an app's tokens as the app does (a public client names itself)."""
    return token_request(
        client,
        None,
        grant_type="refresh_token",
        refresh_token=tokens["refresh_token"],
        client_id=web.client_id,
    )


def asks_password(response: Any) -> bool:
    """Whether the answer is the "confirm it's you" page."""
    return 'id="reauth-help"' in html_of(response) and 'name="request"' in html_of(response)


def account_page(browser: FlaskClient, tenant_id: str, **query: str) -> Any:
    return browser.get("/account", query_string={"tenant": tenant_id, **query})


def html_of(response: Any) -> str:
    return response.get_data(as_text=True)


def session_ids(html: str) -> list[str]:
    """The ids of the sessions the page offers to sign out (not this device's)."""
    return re.findall(r'name="session" value="([0-9a-f]+)"', html)


def post_form(browser: FlaskClient, page: Any, path: str, **fields: str) -> Any:
    """Post a form of `page` (its CSRF token, its tenant) to `path` with `fields`."""
    found = form_fields(html_of(page))
    body = {"csrf_token": found["csrf_token"], **fields}
    if "tenant" in found:
        body["tenant"] = found["tenant"]
    return browser.post(path, data=body)


def account_sign_in(browser: FlaskClient, tenant_id: str, login: str = "alice") -> Any:
    page = account_page(browser, tenant_id)
    assert page.status_code == 200 and "to manage your" in html_of(page), html_of(page)
    fields = form_fields(html_of(page))
    fields.update(username=login, password=PASSWORD)
    return browser.post("/account/login", data=fields)
