"""The account page (`/account`): its own sign-in (password, second factor) for the
tenant of the page, the name, the password (with a recent sign-in, else "confirm it's
you" first), and bad input (no session, no CSRF token). Sessions: test_account_sessions."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests import factories
from tests.account_support import (
    account_page,
    account_sign_in,
    app_tokens,
    asks_password,
    browser_client,
    html_of,
    post_form,
    session_ids,
)
from tests.factories import PASSWORD, AppHandle, TenantHandle
from tests.oauth_support import (
    assert_oauth_error,
    audit_events,
    confirmed_totp,
    form_fields,
    make_alice,
    next_totp,
    rate_limited_app,
    refresh,
    sign_in,
)

REDIRECT = "http://127.0.0.1:8765/callback"
NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture()
def web(app: Flask, tenant: TenantHandle) -> AppHandle:
    return factories.make_application(app, tenant.id, name="Acme Notes", redirect_uris=[REDIRECT])


@pytest.fixture()
def alice(app: Flask, tenant: TenantHandle) -> str:
    return make_alice(app, tenant.id, display_name="Alice Liddell")


def test_the_page_shows_the_user_its_sessions_and_the_security_links(
    app: Flask, tenant: TenantHandle, web: AppHandle, alice: str
) -> None:
    browser = browser_client(app)
    app_tokens(browser, web)

    page = account_page(browser, tenant.id)

    assert page.status_code == 200, html_of(page)
    html = html_of(page)
    assert "Your account" in html and "Alice Liddell" in html
    assert "Chrome on Linux" in html and "This device" in html and "Acme Notes" in html
    assert f'href="/account/mfa?tenant={tenant.id}"' in html
    assert f'href="/account/passkeys?tenant={tenant.id}"' in html
    assert f'href="/account/password?tenant={tenant.id}"' in html
    # One sign-in: the browser's session, the app's listed under it; nothing to sign out.
    assert session_ids(html) == []
    assert page.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    # The tenant is the only one this browser has a session with: no ?tenant= needed.
    assert browser.get("/account").status_code == 200


def test_without_a_session_the_page_asks_to_sign_in_and_ends_on_the_account(
    app: Flask, tenant: TenantHandle, alice: str
) -> None:
    browser = browser_client(app)
    nowhere = browser.get("/account")
    assert nowhere.status_code == 200
    assert "Open your account page from the app you use" in html_of(nowhere)
    unknown = browser.get("/account", query_string={"tenant": "0" * 32})
    assert unknown.status_code == 404 and "tenant_not_found" in html_of(unknown)

    wrong = account_page(browser, tenant.id)
    fields = form_fields(html_of(wrong))
    fields.update(username="alice", password="not the password")
    refused = browser.post("/account/login", data=fields)
    assert refused.status_code == 401
    assert "Wrong username, email or password" in html_of(refused)

    signed_in = account_sign_in(browser, tenant.id)

    assert signed_in.status_code == 303
    assert signed_in.headers["Location"] == f"/account?tenant={tenant.id}"
    page = account_page(browser, tenant.id)
    assert page.status_code == 200 and "This device" in html_of(page)


def test_the_account_sign_in_asks_for_the_second_factor(
    app: Flask, client: FlaskClient, tenant: TenantHandle, alice: str
) -> None:
    secret = confirmed_totp(client, sign_in(client, tenant.id, "alice")["access_token"])
    browser = browser_client(app)

    step = account_sign_in(browser, tenant.id)
    assert step.status_code == 200 and "Two-step verification" in html_of(step)
    fields = form_fields(html_of(step))
    wrong = browser.post("/account/login/second-factor", data={**fields, "code": "000000"})
    assert wrong.status_code == 401
    assert account_page(browser, tenant.id).status_code == 200  # still the sign-in form
    assert "to manage your" in html_of(account_page(browser, tenant.id))

    fields = form_fields(html_of(wrong))  # the used form is spent: the page gives a new one
    done = browser.post("/account/login/second-factor", data={**fields, "code": next_totp(secret)})

    # One code failed before this sign-in: the user is told, then goes on.
    assert done.status_code == 200, html_of(done)
    assert "1 failed attempt to enter a code" in html_of(done)
    page = account_page(browser, tenant.id)
    assert page.status_code == 200 and "This device" in html_of(page)


def test_the_name_changes_without_reauthentication(
    app: Flask, tenant: TenantHandle, alice: str
) -> None:
    browser = browser_client(app)
    account_sign_in(browser, tenant.id)
    factories.age_sessions(app, tenant.id, 3600)  # an old sign-in is enough for a name
    page = account_page(browser, tenant.id)

    saved = post_form(
        browser,
        page,
        "/account/profile",
        display_name="Alice L.",
        first_name="Alice",
        last_name="Liddell",
    )

    assert saved.status_code == 303
    assert saved.headers["Location"] == f"/account?tenant={tenant.id}&done=profile"
    html = html_of(browser.get(saved.headers["Location"]))
    assert "Your name was saved." in html
    assert 'value="Alice L."' in html and 'value="Liddell"' in html
    too_long = post_form(browser, page, "/account/profile", display_name="x" * 256)
    assert too_long.status_code == 400
    assert 'data-code="invalid_form"' in html_of(too_long)


def test_a_form_without_its_csrf_token_changes_nothing(
    app: Flask, tenant: TenantHandle, alice: str
) -> None:
    browser = browser_client(app)
    account_sign_in(browser, tenant.id)

    refused = browser.post(
        "/account/profile", data={"tenant": tenant.id, "display_name": "Mallory"}
    )
    forged = browser.post(
        "/account/sessions/sign-out-others", data={"tenant": tenant.id, "csrf_token": "forged"}
    )

    assert refused.status_code == 403 and 'data-code="csrf_failed"' in html_of(refused)
    assert forged.status_code == 403 and 'data-code="csrf_failed"' in html_of(forged)
    assert "Mallory" not in html_of(account_page(browser, tenant.id))


def test_actions_without_a_session_ask_to_sign_in(
    app: Flask, tenant: TenantHandle, alice: str
) -> None:
    browser = browser_client(app)
    page = account_page(browser, tenant.id)  # the sign-in form: a CSRF cookie and token

    for path in ("/account/profile", "/account/password", "/account/sessions/sign-out-others"):
        answer = post_form(browser, page, path, tenant=tenant.id, session="ab")
        assert answer.status_code == 200 and "to manage your" in html_of(answer), path


def test_the_password_changes_and_every_other_session_ends(
    app: Flask, client: FlaskClient, tenant: TenantHandle, alice: str
) -> None:
    other = sign_in(client, tenant.id, "alice")
    browser = browser_client(app)
    account_sign_in(browser, tenant.id)
    form = browser.get("/account/password", query_string={"tenant": tenant.id})
    assert form.status_code == 200 and "Change your password" in html_of(form)

    mismatch = post_form(
        browser, form, "/account/password", new_password=NEW_PASSWORD, confirm_password="other"
    )
    changed = post_form(
        browser,
        form,
        "/account/password",
        new_password=NEW_PASSWORD,
        confirm_password=NEW_PASSWORD,
    )

    assert mismatch.status_code == 400 and 'data-code="password_mismatch"' in html_of(mismatch)
    assert changed.status_code == 303, html_of(changed)
    assert factories.password_matches(app, tenant.id, alice, NEW_PASSWORD)
    assert_oauth_error(refresh(client, other["refresh_token"]), 401, "invalid_grant")
    page = browser.get(changed.headers["Location"])
    assert page.status_code == 200 and "Your password was changed." in html_of(page)
    headers = {"X-APIKEY": tenant.key}
    assert [e["user_id"] for e in audit_events(client, headers, "user.password_changed")] == [alice]


def test_a_common_password_is_refused_on_the_page(
    app: Flask, tenant: TenantHandle, alice: str
) -> None:
    browser = browser_client(app)
    account_sign_in(browser, tenant.id)
    form = browser.get("/account/password", query_string={"tenant": tenant.id})

    common = post_form(
        browser, form, "/account/password", new_password="qwertyuiop", confirm_password="qwertyuiop"
    )

    assert common.status_code == 400 and 'data-code="password_too_common"' in html_of(common)
    assert factories.password_matches(app, tenant.id, alice, PASSWORD)


def test_an_old_sign_in_confirms_the_password_first(
    app: Flask, client: FlaskClient, tenant: TenantHandle, alice: str
) -> None:
    browser = browser_client(app)
    account_sign_in(browser, tenant.id)
    factories.age_sessions(app, tenant.id, 3600)

    asked = browser.get("/account/password", query_string={"tenant": tenant.id})
    assert asked.status_code == 200 and asks_password(asked)
    # A form left open past the limit: asked too, and nothing changes.
    posted = post_form(
        browser,
        asked,
        "/account/password",
        new_password=NEW_PASSWORD,
        confirm_password=NEW_PASSWORD,
    )
    assert asks_password(posted)
    assert factories.password_matches(app, tenant.id, alice, PASSWORD)

    wrong = post_form(
        browser,
        asked,
        "/account/reauthenticate",
        password="not it",
        request=form_fields(html_of(asked))["request"],
    )
    assert wrong.status_code == 401 and "Wrong username, email or password" in html_of(wrong)
    right = post_form(
        browser,
        wrong,
        "/account/reauthenticate",
        password=PASSWORD,
        request=form_fields(html_of(wrong))["request"],
    )

    assert right.status_code == 303
    assert right.headers["Location"] == f"/account/password?tenant={tenant.id}"
    form = browser.get(right.headers["Location"])
    assert form.status_code == 200 and "Change your password" in html_of(form)
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
        browser = browser_client(limited)
        account_sign_in(browser, tenant.id)  # 1
        factories.age_sessions(app, tenant.id, 3600)
        page = browser.get("/account/password", query_string={"tenant": tenant.id})
        for _ in range(2):  # 2, 3
            page = post_form(
                browser,
                page,
                "/account/reauthenticate",
                password="not it",
                request=form_fields(html_of(page))["request"],
            )
            assert page.status_code == 401
        limited_answer = post_form(
            browser,
            page,
            "/account/reauthenticate",
            password=PASSWORD,
            request=form_fields(html_of(page))["request"],
        )

    assert limited_answer.status_code == 429
    assert asks_password(limited_answer)
