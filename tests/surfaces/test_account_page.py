"""The account page (`/account`): its own sign-in (password, second factor) for the
tenant of the page, the name, the password (with a recent sign-in, else "confirm it's
you" first), the sessions (listed with device, IP, last seen; signed out one by one or
all others, which ends the tokens of the apps signed in through them), and bad input."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.api.hosted import devices
from tests import factories
from tests.factories import PASSWORD, AppHandle, TenantHandle, bearer
from tests.oauth_support import (
    assert_oauth_error,
    audit_events,
    authorize_query,
    code_for,
    confirmed_totp,
    exchange,
    form_fields,
    make_alice,
    next_totp,
    pkce_pair,
    query_of,
    rate_limited_app,
    refresh,
    sign_in,
    token_request,
)

REDIRECT = "http://127.0.0.1:8765/callback"
CHROME_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
FIREFOX_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture()
def web(app: Flask, tenant: TenantHandle) -> AppHandle:
    return factories.make_application(app, tenant.id, name="Acme Notes", redirect_uris=[REDIRECT])


@pytest.fixture()
def alice(app: Flask, tenant: TenantHandle) -> str:
    return make_alice(app, tenant.id, display_name="Alice Liddell")


def _browser(app: Flask, user_agent: str = CHROME_LINUX) -> FlaskClient:
    browser = app.test_client()
    browser.environ_base["HTTP_USER_AGENT"] = user_agent
    return browser


def _app_tokens(browser: FlaskClient, web: AppHandle) -> dict[str, Any]:
    """Sign in through the app's login page in `browser` and exchange the code: the app's
    tokens (with a refresh token)."""
    code, verifier = code_for(browser, web, scope="openid profile email offline_access")
    response = exchange(browser, web, code, verifier)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def _refresh(client: FlaskClient, web: AppHandle, tokens: dict[str, Any]) -> Any:
    """Refresh an app's tokens as the app does (a public client names itself)."""
    return token_request(
        client,
        None,
        grant_type="refresh_token",
        refresh_token=tokens["refresh_token"],
        client_id=web.client_id,
    )


def _asks_password(response: Any) -> bool:
    """Whether the answer is the "confirm it's you" page."""
    return 'id="reauth-help"' in _html(response) and 'name="request"' in _html(response)


def _account(browser: FlaskClient, tenant_id: str, **query: str) -> Any:
    return browser.get("/account", query_string={"tenant": tenant_id, **query})


def _html(response: Any) -> str:
    return response.get_data(as_text=True)


def _session_ids(html: str) -> list[str]:
    """The ids of the sessions the page offers to sign out (not this device's)."""
    return re.findall(r'name="session" value="([0-9a-f]+)"', html)


def _post(browser: FlaskClient, page: Any, path: str, **fields: str) -> Any:
    """Post a form of `page` (its CSRF token, its tenant) to `path` with `fields`."""
    found = form_fields(_html(page))
    body = {"csrf_token": found["csrf_token"], **fields}
    if "tenant" in found:
        body["tenant"] = found["tenant"]
    return browser.post(path, data=body)


def _account_sign_in(browser: FlaskClient, tenant_id: str, login: str = "alice") -> Any:
    page = _account(browser, tenant_id)
    assert page.status_code == 200 and "to manage your" in _html(page), _html(page)
    fields = form_fields(_html(page))
    fields.update(username=login, password=PASSWORD)
    return browser.post("/account/login", data=fields)


def test_the_page_shows_the_user_its_sessions_and_the_security_links(
    app: Flask, tenant: TenantHandle, web: AppHandle, alice: str
) -> None:
    browser = _browser(app)
    _app_tokens(browser, web)

    page = _account(browser, tenant.id)

    assert page.status_code == 200, _html(page)
    html = _html(page)
    assert "Your account" in html and "Alice Liddell" in html
    assert "Chrome on Linux" in html and "This device" in html and "Acme Notes" in html
    assert f'href="/account/mfa?tenant={tenant.id}"' in html
    assert f'href="/account/passkeys?tenant={tenant.id}"' in html
    assert f'href="/account/password?tenant={tenant.id}"' in html
    # One sign-in: the browser's session, the app's listed under it; nothing to sign out.
    assert _session_ids(html) == []
    assert page.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    # The tenant is the only one this browser has a session with: no ?tenant= needed.
    assert browser.get("/account").status_code == 200


def test_without_a_session_the_page_asks_to_sign_in_and_ends_on_the_account(
    app: Flask, tenant: TenantHandle, alice: str
) -> None:
    browser = _browser(app)
    nowhere = browser.get("/account")
    assert nowhere.status_code == 200
    assert "Open your account page from the app you use" in _html(nowhere)
    unknown = browser.get("/account", query_string={"tenant": "0" * 32})
    assert unknown.status_code == 404 and "tenant_not_found" in _html(unknown)

    wrong = _account(browser, tenant.id)
    fields = form_fields(_html(wrong))
    fields.update(username="alice", password="not the password")
    refused = browser.post("/account/login", data=fields)
    assert refused.status_code == 401
    assert "Wrong username, email or password" in _html(refused)

    signed_in = _account_sign_in(browser, tenant.id)

    assert signed_in.status_code == 303
    assert signed_in.headers["Location"] == f"/account?tenant={tenant.id}"
    page = _account(browser, tenant.id)
    assert page.status_code == 200 and "This device" in _html(page)


def test_the_account_sign_in_asks_for_the_second_factor(
    app: Flask, client: FlaskClient, tenant: TenantHandle, alice: str
) -> None:
    secret = confirmed_totp(client, sign_in(client, tenant.id, "alice")["access_token"])
    browser = _browser(app)

    step = _account_sign_in(browser, tenant.id)
    assert step.status_code == 200 and "Two-step verification" in _html(step)
    fields = form_fields(_html(step))
    wrong = browser.post("/account/login/second-factor", data={**fields, "code": "000000"})
    assert wrong.status_code == 401
    assert _account(browser, tenant.id).status_code == 200  # still the sign-in form
    assert "to manage your" in _html(_account(browser, tenant.id))

    fields = form_fields(_html(wrong))  # the used form is spent: the page gives a new one
    done = browser.post("/account/login/second-factor", data={**fields, "code": next_totp(secret)})

    # One code failed before this sign-in: the user is told, then goes on.
    assert done.status_code == 200, _html(done)
    assert "1 failed attempt to enter a code" in _html(done)
    page = _account(browser, tenant.id)
    assert page.status_code == 200 and "This device" in _html(page)


def test_the_name_changes_without_reauthentication(
    app: Flask, tenant: TenantHandle, alice: str
) -> None:
    browser = _browser(app)
    _account_sign_in(browser, tenant.id)
    factories.age_sessions(app, tenant.id, 3600)  # an old sign-in is enough for a name
    page = _account(browser, tenant.id)

    saved = _post(
        browser,
        page,
        "/account/profile",
        display_name="Alice L.",
        first_name="Alice",
        last_name="Liddell",
    )

    assert saved.status_code == 303
    assert saved.headers["Location"] == f"/account?tenant={tenant.id}&done=profile"
    html = _html(browser.get(saved.headers["Location"]))
    assert "Your name was saved." in html
    assert 'value="Alice L."' in html and 'value="Liddell"' in html
    too_long = _post(browser, page, "/account/profile", display_name="x" * 256)
    assert too_long.status_code == 400
    assert 'data-code="invalid_form"' in _html(too_long)


def test_a_form_without_its_csrf_token_changes_nothing(
    app: Flask, tenant: TenantHandle, alice: str
) -> None:
    browser = _browser(app)
    _account_sign_in(browser, tenant.id)

    refused = browser.post(
        "/account/profile", data={"tenant": tenant.id, "display_name": "Mallory"}
    )
    forged = browser.post(
        "/account/sessions/sign-out-others", data={"tenant": tenant.id, "csrf_token": "forged"}
    )

    assert refused.status_code == 403 and 'data-code="csrf_failed"' in _html(refused)
    assert forged.status_code == 403 and 'data-code="csrf_failed"' in _html(forged)
    assert "Mallory" not in _html(_account(browser, tenant.id))


def test_actions_without_a_session_ask_to_sign_in(
    app: Flask, tenant: TenantHandle, alice: str
) -> None:
    browser = _browser(app)
    page = _account(browser, tenant.id)  # the sign-in form: a CSRF cookie and token

    for path in ("/account/profile", "/account/password", "/account/sessions/sign-out-others"):
        answer = _post(browser, page, path, tenant=tenant.id, session="ab")
        assert answer.status_code == 200 and "to manage your" in _html(answer), path


def test_the_password_changes_and_every_other_session_ends(
    app: Flask, client: FlaskClient, tenant: TenantHandle, alice: str
) -> None:
    other = sign_in(client, tenant.id, "alice")
    browser = _browser(app)
    _account_sign_in(browser, tenant.id)
    form = browser.get("/account/password", query_string={"tenant": tenant.id})
    assert form.status_code == 200 and "Change your password" in _html(form)

    mismatch = _post(
        browser, form, "/account/password", new_password=NEW_PASSWORD, confirm_password="other"
    )
    changed = _post(
        browser,
        form,
        "/account/password",
        new_password=NEW_PASSWORD,
        confirm_password=NEW_PASSWORD,
    )

    assert mismatch.status_code == 400 and 'data-code="password_mismatch"' in _html(mismatch)
    assert changed.status_code == 303, _html(changed)
    assert factories.password_matches(app, tenant.id, alice, NEW_PASSWORD)
    assert_oauth_error(refresh(client, other["refresh_token"]), 401, "invalid_grant")
    page = browser.get(changed.headers["Location"])
    assert page.status_code == 200 and "Your password was changed." in _html(page)
    headers = {"X-APIKEY": tenant.key}
    assert [e["user_id"] for e in audit_events(client, headers, "user.password_changed")] == [alice]


def test_a_common_password_is_refused_on_the_page(
    app: Flask, tenant: TenantHandle, alice: str
) -> None:
    browser = _browser(app)
    _account_sign_in(browser, tenant.id)
    form = browser.get("/account/password", query_string={"tenant": tenant.id})

    common = _post(
        browser, form, "/account/password", new_password="qwertyuiop", confirm_password="qwertyuiop"
    )

    assert common.status_code == 400 and 'data-code="password_too_common"' in _html(common)
    assert factories.password_matches(app, tenant.id, alice, PASSWORD)


def test_an_old_sign_in_confirms_the_password_first(
    app: Flask, client: FlaskClient, tenant: TenantHandle, alice: str
) -> None:
    browser = _browser(app)
    _account_sign_in(browser, tenant.id)
    factories.age_sessions(app, tenant.id, 3600)

    asked = browser.get("/account/password", query_string={"tenant": tenant.id})
    assert asked.status_code == 200 and _asks_password(asked)
    # A form left open past the limit: asked too, and nothing changes.
    posted = _post(
        browser,
        asked,
        "/account/password",
        new_password=NEW_PASSWORD,
        confirm_password=NEW_PASSWORD,
    )
    assert _asks_password(posted)
    assert factories.password_matches(app, tenant.id, alice, PASSWORD)

    wrong = _post(
        browser,
        asked,
        "/account/reauthenticate",
        password="not it",
        request=form_fields(_html(asked))["request"],
    )
    assert wrong.status_code == 401 and "Wrong username, email or password" in _html(wrong)
    right = _post(
        browser,
        wrong,
        "/account/reauthenticate",
        password=PASSWORD,
        request=form_fields(_html(wrong))["request"],
    )

    assert right.status_code == 303
    assert right.headers["Location"] == f"/account/password?tenant={tenant.id}"
    form = browser.get(right.headers["Location"])
    assert form.status_code == 200 and "Change your password" in _html(form)
    headers = {"X-APIKEY": tenant.key}
    assert len(audit_events(client, headers, "user.reauthenticated")) == 1
    failed = audit_events(client, headers, "user.signin_failed")
    assert [e["data"]["reason"] for e in failed] == ["wrong_password"]


def test_wrong_passwords_on_the_confirmation_meet_the_sign_in_limits(
    app: Flask, database_url: str, tmp_path: Path, tenant: TenantHandle, alice: str
) -> None:
    with rate_limited_app(
        app, database_url, tmp_path, RATELIMIT_SIGNIN_PER_ACCOUNT="3 per minute"
    ) as limited:
        browser = _browser(limited)
        _account_sign_in(browser, tenant.id)  # 1
        factories.age_sessions(app, tenant.id, 3600)
        page = browser.get("/account/password", query_string={"tenant": tenant.id})
        for _ in range(2):  # 2, 3
            page = _post(
                browser,
                page,
                "/account/reauthenticate",
                password="not it",
                request=form_fields(_html(page))["request"],
            )
            assert page.status_code == 401
        limited_answer = _post(
            browser,
            page,
            "/account/reauthenticate",
            password=PASSWORD,
            request=form_fields(_html(page))["request"],
        )

    assert limited_answer.status_code == 429
    assert _asks_password(limited_answer)


def test_signing_out_a_session_ends_the_tokens_of_its_apps(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle, alice: str
) -> None:
    mine, theirs = _browser(app), _browser(app, FIREFOX_WINDOWS)
    my_tokens = _app_tokens(mine, web)
    their_tokens = _app_tokens(theirs, web)
    assert client.get("/userinfo", headers=bearer(their_tokens["access_token"])).status_code == 200

    page = _account(mine, tenant.id)
    html = _html(page)
    assert "Firefox on Windows" in html and html.count('class="session"') == 2
    [other] = _session_ids(html)
    ended = _post(mine, page, "/account/sessions/sign-out", session=other)

    assert ended.status_code == 303
    assert "The session was signed out." in _html(mine.get(ended.headers["Location"]))
    assert client.get("/userinfo", headers=bearer(their_tokens["access_token"])).status_code == 401
    assert_oauth_error(_refresh(client, web, their_tokens), 401, "invalid_grant")
    assert "to manage your" in _html(_account(theirs, tenant.id))
    # This browser and its app go on.
    assert _refresh(client, web, my_tokens).status_code == 200
    assert _account(mine, tenant.id).status_code == 200
    events = audit_events(client, {"X-APIKEY": tenant.key}, "session.revoked")
    assert [(e["target"], e["data"]["sessions_ended"]) for e in events] == [(other, 2)]
    # Gone already: a second sign-out of it is refused.
    again = _post(mine, page, "/account/sessions/sign-out", session=other)
    assert again.status_code == 404 and 'data-code="session_not_found"' in _html(again)


def test_a_code_of_a_signed_out_browser_is_refused(
    app: Flask, tenant: TenantHandle, web: AppHandle, alice: str
) -> None:
    mine, theirs = _browser(app), _browser(app)
    _app_tokens(mine, web)
    _app_tokens(theirs, web)
    verifier, challenge = pkce_pair()  # a code issued through their browser session
    answer = theirs.get("/authorize", query_string=authorize_query(web, challenge))
    assert answer.status_code == 302
    code = query_of(answer.headers["Location"])["code"]
    page = _account(mine, tenant.id)
    [other] = _session_ids(_html(page))
    assert _post(mine, page, "/account/sessions/sign-out", session=other).status_code == 303

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
    theirs = _browser(app)
    _account_sign_in(theirs, other_tenant.id)
    their_page = _account(theirs, other_tenant.id)
    their_id = re.search(r'id="session-([0-9a-f]+)"', _html(their_page)).group(1)  # type: ignore[union-attr]
    mine = _browser(app)
    _account_sign_in(mine, tenant.id)
    page = _account(mine, tenant.id)

    refused = _post(mine, page, "/account/sessions/sign-out", session=their_id)
    malformed = _post(mine, page, "/account/sessions/sign-out", session="../../etc")

    assert refused.status_code == 404 and 'data-code="session_not_found"' in _html(refused)
    assert malformed.status_code == 400 and 'data-code="invalid_form"' in _html(malformed)
    assert _account(theirs, other_tenant.id).status_code == 200
    assert "This device" in _html(_account(theirs, other_tenant.id))


def test_sign_out_all_others_keeps_this_browser_and_its_apps(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle, alice: str
) -> None:
    mine, theirs = _browser(app), _browser(app)
    my_tokens = _app_tokens(mine, web)
    their_tokens = _app_tokens(theirs, web)
    api = sign_in(client, tenant.id, "alice")  # a password grant: an API sign-in
    page = _account(mine, tenant.id)
    html = _html(page)
    assert len(_session_ids(html)) == 2
    # The password grant's session, with the device its request came from.
    assert html.count("Signed in directly with your password") == 1 and "Werkzeug" in html

    ended = _post(mine, page, "/account/sessions/sign-out-others")

    assert ended.status_code == 303
    html = _html(mine.get(ended.headers["Location"]))
    assert "All your other sessions were signed out." in html and _session_ids(html) == []
    assert_oauth_error(_refresh(client, web, their_tokens), 401, "invalid_grant")
    assert_oauth_error(refresh(client, api["refresh_token"]), 401, "invalid_grant")
    assert _refresh(client, web, my_tokens).status_code == 200


def test_sign_out_ends_this_browsers_session(app: Flask, tenant: TenantHandle, alice: str) -> None:
    browser = _browser(app)
    _account_sign_in(browser, tenant.id)
    page = _account(browser, tenant.id)

    out = _post(browser, page, "/account/logout")

    assert out.status_code == 200 and "You are signed out" in _html(out)
    assert "to manage your" in _html(_account(browser, tenant.id))


def test_with_sessions_at_several_tenants_the_page_asks_which(
    app: Flask, tenant: TenantHandle, other_tenant: TenantHandle, alice: str
) -> None:
    make_alice(app, other_tenant.id)
    browser = _browser(app)
    _account_sign_in(browser, tenant.id)
    _account_sign_in(browser, other_tenant.id)

    choose = browser.get("/account")

    assert choose.status_code == 200 and "Choose an account" in _html(choose)
    assert f'href="/account?tenant={tenant.id}"' in _html(choose)
    assert f'href="/account?tenant={other_tenant.id}"' in _html(choose)
    assert _account(browser, other_tenant.id).status_code == 200


def test_last_seen_follows_refreshes(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle, alice: str
) -> None:
    from sqlalchemy import text

    from app.core.db import db
    from app.core.tenancy import tenant_scope

    browser = _browser(app)
    tokens = _app_tokens(browser, web)
    factories.age_sessions(app, tenant.id, 0)
    with app.app_context(), tenant_scope(tenant.id):
        db.session.execute(
            text("UPDATE auth_session SET last_seen_at = last_seen_at - interval '1 hour'")
        )
        db.session.commit()

    assert _refresh(client, web, tokens).status_code == 200

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
