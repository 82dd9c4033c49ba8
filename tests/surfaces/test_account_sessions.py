"""The account page's sessions: listed with device, IP and last seen; signed out one by
one or all others, which ends the tokens of the apps signed in through them; another
tenant's session id refused; the device named from the User-Agent."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.api.hosted import devices
from tests import factories
from tests.account_support import (
    CHROME_LINUX,
    FIREFOX_WINDOWS,
    account_page,
    account_sign_in,
    app_refresh,
    app_tokens,
    browser_client,
    html_of,
    post_form,
    session_ids,
)
from tests.factories import AppHandle, TenantHandle, bearer
from tests.oauth_support import (
    assert_oauth_error,
    audit_events,
    authorize_query,
    exchange,
    make_alice,
    pkce_pair,
    query_of,
    refresh,
    sign_in,
)

REDIRECT = "http://127.0.0.1:8765/callback"


@pytest.fixture()
def web(app: Flask, tenant: TenantHandle) -> AppHandle:
    return factories.make_application(app, tenant.id, name="Acme Notes", redirect_uris=[REDIRECT])


@pytest.fixture()
def alice(app: Flask, tenant: TenantHandle) -> str:
    return make_alice(app, tenant.id, display_name="Alice Liddell")


def test_signing_out_a_session_ends_the_tokens_of_its_apps(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle, alice: str
) -> None:
    mine, theirs = browser_client(app), browser_client(app, FIREFOX_WINDOWS)
    my_tokens = app_tokens(mine, web)
    their_tokens = app_tokens(theirs, web)
    assert client.get("/userinfo", headers=bearer(their_tokens["access_token"])).status_code == 200

    page = account_page(mine, tenant.id)
    html = html_of(page)
    assert "Firefox on Windows" in html and html.count('class="session"') == 2
    [other] = session_ids(html)
    ended = post_form(mine, page, "/account/sessions/sign-out", session=other)

    assert ended.status_code == 303
    assert "The session was signed out." in html_of(mine.get(ended.headers["Location"]))
    assert client.get("/userinfo", headers=bearer(their_tokens["access_token"])).status_code == 401
    assert_oauth_error(app_refresh(client, web, their_tokens), 401, "invalid_grant")
    assert "to manage your" in html_of(account_page(theirs, tenant.id))
    # This browser and its app go on.
    assert app_refresh(client, web, my_tokens).status_code == 200
    assert account_page(mine, tenant.id).status_code == 200
    events = audit_events(client, {"X-APIKEY": tenant.key}, "session.revoked")
    assert [(e["target"], e["data"]["sessions_ended"]) for e in events] == [(other, 2)]
    # Gone already: a second sign-out of it is refused.
    again = post_form(mine, page, "/account/sessions/sign-out", session=other)
    assert again.status_code == 404 and 'data-code="session_not_found"' in html_of(again)


def test_a_code_of_a_signed_out_browser_is_refused(
    app: Flask, tenant: TenantHandle, web: AppHandle, alice: str
) -> None:
    mine, theirs = browser_client(app), browser_client(app)
    app_tokens(mine, web)
    app_tokens(theirs, web)
    verifier, challenge = pkce_pair()  # a code issued through their browser session
    answer = theirs.get("/authorize", query_string=authorize_query(web, challenge))
    assert answer.status_code == 302
    code = query_of(answer.headers["Location"])["code"]
    page = account_page(mine, tenant.id)
    [other] = session_ids(html_of(page))
    assert post_form(mine, page, "/account/sessions/sign-out", session=other).status_code == 303

    refused = exchange(theirs, web, code, verifier)

    assert_oauth_error(refused, 401, "invalid_grant")


def test_another_tenants_session_cannot_be_signed_out(
    app: Flask,
    client: FlaskClient,
    tenant: TenantHandle,
    other_tenant: TenantHandle,
    alice: str,
) -> None:
    make_alice(app, other_tenant.id)
    theirs = browser_client(app)
    account_sign_in(theirs, other_tenant.id)
    their_page = account_page(theirs, other_tenant.id)
    their_id = re.search(r'id="session-([0-9a-f]+)"', html_of(their_page)).group(1)  # type: ignore[union-attr]
    mine = browser_client(app)
    account_sign_in(mine, tenant.id)
    page = account_page(mine, tenant.id)

    refused = post_form(mine, page, "/account/sessions/sign-out", session=their_id)
    malformed = post_form(mine, page, "/account/sessions/sign-out", session="../../etc")

    assert refused.status_code == 404 and 'data-code="session_not_found"' in html_of(refused)
    assert malformed.status_code == 400 and 'data-code="invalid_form"' in html_of(malformed)
    assert account_page(theirs, other_tenant.id).status_code == 200
    assert "This device" in html_of(account_page(theirs, other_tenant.id))


def test_sign_out_all_others_keeps_this_browser_and_its_apps(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle, alice: str
) -> None:
    mine, theirs = browser_client(app), browser_client(app)
    my_tokens = app_tokens(mine, web)
    their_tokens = app_tokens(theirs, web)
    api = sign_in(client, tenant.id, "alice")  # a password grant: an API sign-in
    page = account_page(mine, tenant.id)
    html = html_of(page)
    assert len(session_ids(html)) == 2
    # The password grant's session, with the device its request came from.
    assert html.count("Signed in directly with your password") == 1 and "Werkzeug" in html

    ended = post_form(mine, page, "/account/sessions/sign-out-others")

    assert ended.status_code == 303
    html = html_of(mine.get(ended.headers["Location"]))
    assert "All your other sessions were signed out." in html and session_ids(html) == []
    assert_oauth_error(app_refresh(client, web, their_tokens), 401, "invalid_grant")
    assert_oauth_error(refresh(client, api["refresh_token"]), 401, "invalid_grant")
    assert app_refresh(client, web, my_tokens).status_code == 200


def test_sign_out_ends_this_browsers_session(app: Flask, tenant: TenantHandle, alice: str) -> None:
    browser = browser_client(app)
    account_sign_in(browser, tenant.id)
    page = account_page(browser, tenant.id)

    out = post_form(browser, page, "/account/logout")

    assert out.status_code == 200 and "You are signed out" in html_of(out)
    assert "to manage your" in html_of(account_page(browser, tenant.id))


def test_with_sessions_at_several_tenants_the_page_asks_which(
    app: Flask, tenant: TenantHandle, other_tenant: TenantHandle, alice: str
) -> None:
    make_alice(app, other_tenant.id)
    browser = browser_client(app)
    account_sign_in(browser, tenant.id)
    account_sign_in(browser, other_tenant.id)

    choose = browser.get("/account")

    assert choose.status_code == 200 and "Choose an account" in html_of(choose)
    assert f'href="/account?tenant={tenant.id}"' in html_of(choose)
    assert f'href="/account?tenant={other_tenant.id}"' in html_of(choose)
    assert account_page(browser, other_tenant.id).status_code == 200


def test_last_seen_follows_refreshes(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle, alice: str
) -> None:
    from sqlalchemy import text

    from app.core.db import db
    from app.core.tenancy import tenant_scope

    browser = browser_client(app)
    tokens = app_tokens(browser, web)
    factories.age_sessions(app, tenant.id, 0)
    with app.app_context(), tenant_scope(tenant.id):
        db.session.execute(
            text("UPDATE auth_session SET last_seen_at = last_seen_at - interval '1 hour'")
        )
        db.session.commit()

    assert app_refresh(client, web, tokens).status_code == 200

    with app.app_context(), tenant_scope(tenant.id):
        rows = db.session.execute(
            text(
                "SELECT client_id IS NULL, last_seen_at > now() - interval '1 minute' "
                "FROM auth_session"
            )
        ).all()
    assert sorted(rows) == [(False, True), (True, False)]


@pytest.mark.parametrize(
    ("user_agent", "described"),
    [
        (CHROME_LINUX, "Chrome on Linux"),
        (FIREFOX_WINDOWS, "Firefox on Windows"),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
            "Safari on iOS",
        ),
        (
            "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0 Mobile Safari/537.36 EdgA/131.0",
            "Edge on Android",
        ),
        (
            "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/131.0.0.0 Safari/537.36",
            "Chrome on Linux",
        ),
        ("python-requests/2.32.3", "python-requests"),
        ("", "Unknown device"),
        (None, "Unknown device"),
    ],
)
def test_the_device_is_named_from_the_user_agent(
    app: Flask, user_agent: str | None, described: str
) -> None:
    with app.test_request_context():
        assert devices.describe(user_agent) == described
