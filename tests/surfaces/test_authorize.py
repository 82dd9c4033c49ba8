"""The hosted login page at `/authorize`: the form (accessible, CSRF-protected, no outside
resources), the code it redirects with, errors on the page versus at the client (RFC 6749
§4.1.2.1), and the password grant's limits and audit. The browser's sign-in session is in
test_login_session.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests import factories
from tests.factories import AppHandle, TenantHandle
from tests.oauth_support import (
    PASSWORD,
    assert_oauth_error,
    audit_events,
    authorize_query,
    bearer,
    claims,
    exchange,
    form_fields,
    login_page,
    make_alice,
    pkce_pair,
    query_of,
    rate_limited_app,
    sign_in_through_page,
    submit_login,
    variant_app,
)

REDIRECT = "http://127.0.0.1:8765/callback"


@pytest.fixture()
def web(app: Flask, tenant: TenantHandle) -> AppHandle:
    return factories.make_application(
        app,
        tenant.id,
        name="Acme Web",
        redirect_uris=[REDIRECT, "https://app.example.com/cb?tab=1"],
        post_logout_redirect_uris=["https://app.example.com/bye"],
    )


@pytest.fixture()
def alice(app: Flask, tenant: TenantHandle) -> str:
    return make_alice(app, tenant.id)


def _cookie(response, name: str) -> str:
    headers = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(name)]
    assert headers, response.headers
    return headers[0]


def test_login_page_is_accessible_csrf_protected_and_self_contained(
    client: FlaskClient, web: AppHandle
) -> None:
    page = login_page(client, web)

    assert page.status_code == 200
    assert page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert '<html lang="en">' in html
    assert "Acme Web" in html
    # Every field has a label, the browser may fill it in, the keyboard reaches it.
    for field, autocomplete in (
        ("username", "username webauthn"),  # passkeys in the autofill (conditional UI)
        ("password", "current-password"),
    ):
        assert f'<label for="{field}">' in html
        assert re.search(rf'<input id="{field}" name="{field}"[^>]*', html)
        assert f'autocomplete="{autocomplete}"' in html
    assert 'tabindex="-1"' not in html.split("<form")[1]
    fields = form_fields(html)
    assert fields["csrf_token"] and fields["authz"]
    csrf_cookie = _cookie(page, "gh_csrf=")
    for attribute in ("HttpOnly", "SameSite=Lax", "Path=/"):
        assert attribute in csrf_cookie
    # The issuer is http://gatehouse.test: a browser would drop a Secure cookie over http.
    assert "Secure" not in csrf_cookie
    # Nothing from elsewhere: the page works offline, and may not be framed or cached.
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Cache-Control"] == "no-store"
    stylesheet = re.search(r'<link rel="stylesheet" href="([^"]+)"', html).group(1)
    css = client.get(stylesheet)
    assert css.status_code == 200 and css.mimetype == "text/css"
    assert b":focus-visible" in css.data


@pytest.mark.parametrize("login", ["alice", "alice@example.com", "ALICE"])
def test_sign_in_redirects_with_a_code_that_exchanges_for_app_tokens(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle, alice: str, login: str
) -> None:
    answer, verifier, sent = sign_in_through_page(
        client, web, login, scope="openid read:current_user"
    )

    assert set(answer) == {"code", "state", "iss"}
    assert answer["state"] == sent["state"]
    assert answer["iss"] == "http://gatehouse.test"
    tokens = exchange(client, web, answer["code"], verifier)
    assert tokens.status_code == 200, tokens.get_data(as_text=True)
    body = tokens.get_json()
    id_token = claims(body["id_token"])
    assert id_token["aud"] == web.client_id and id_token["azp"] == web.client_id
    assert id_token["nonce"] == sent["nonce"]
    assert id_token["sub"] == alice and id_token["tid"] == tenant.id
    access = claims(body["access_token"])
    assert access["aud"] == tenant.id and access["auth_time"] == id_token["auth_time"]
    profile = client.get("/user/profile", headers=bearer(body["access_token"]))
    assert profile.status_code == 200 and profile.get_json()["logins_count"] == 1
    signed_in = audit_events(client, tenant.headers, "user.signed_in")
    assert [(e["user_id"], e["data"]["method"]) for e in signed_in] == [(alice, "login_page")]


COOKIE_CASES = {
    "https issuer": ({"ISSUER": "https://gatehouse.test"}, True),
    "http issuer": ({"ISSUER": "http://gatehouse.test"}, False),
    "http issuer, told Secure": (
        {"ISSUER": "http://gatehouse.test", "LOGIN_COOKIE_SECURE": "true"},
        True,
    ),
    "https issuer, told not": (
        {"ISSUER": "https://gatehouse.test", "LOGIN_COOKIE_SECURE": "false"},
        False,
    ),
}


@pytest.mark.parametrize(("settings", "secure"), COOKIE_CASES.values(), ids=COOKIE_CASES.keys())
def test_the_sign_in_cookies_are_secure_when_the_issuer_is_https(
    app: Flask,
    database_url: str,
    tmp_path: Path,
    tenant: TenantHandle,
    web: AppHandle,
    alice: str,
    settings: dict,
    secure: bool,
) -> None:
    """Secure follows the issuer's scheme (an explicit LOGIN_COOKIE_SECURE wins); Secure
    cookies take the __Host- prefix (Path=/, no Domain), so no subdomain can plant one."""
    with variant_app(app, database_url, tmp_path, **settings) as variant:
        browser = variant.test_client()
        page = login_page(browser, web)
        answer = submit_login(browser, page, "alice")

    assert answer.status_code == 303, answer.get_data(as_text=True)
    prefix = "__Host-" if secure else ""
    for cookie in (
        _cookie(page, f"{prefix}gh_csrf="),
        _cookie(answer, f"{prefix}gh_sso_{tenant.id}="),
    ):
        for attribute in ("HttpOnly", "SameSite=Lax", "Path=/"):
            assert attribute in cookie
        assert ("; Secure" in cookie) is secure, cookie
        assert "Domain=" not in cookie
    assert "Max-Age=86400" in _cookie(answer, f"{prefix}gh_sso_{tenant.id}=")
    assert answer.headers["Cache-Control"] == "no-store"


def test_the_csrf_cookie_is_rotated_when_a_sign_in_completes(
    client: FlaskClient, web: AppHandle, alice: str
) -> None:
    page = login_page(client, web)
    before = _cookie(page, "gh_csrf=").split(";")[0]
    stale_fields = form_fields(page.get_data(as_text=True))

    answer = submit_login(client, page, "alice")

    assert answer.status_code == 303
    after = _cookie(answer, "gh_csrf=").split(";")[0]
    assert after != before and len(after) == len(before)
    # A token of the old secret serves no more: the login form it came with is refused.
    replay = client.post("/authorize", data={**stale_fields, "username": "a", "password": "b"})
    assert replay.status_code == 400
    assert "<code>form_expired</code>" in replay.get_data(as_text=True)


@pytest.mark.parametrize("login", ["alice", "nobody"], ids=["wrong password", "unknown user"])
def test_wrong_credentials_show_the_form_again_with_the_error(
    client: FlaskClient, tenant: TenantHandle, web: AppHandle, alice: str, login: str
) -> None:
    page = login_page(client, web)
    answer = submit_login(client, page, login, "not the password")

    assert answer.status_code == 401
    assert "Location" not in answer.headers
    html = answer.get_data(as_text=True)
    assert '<div class="error" role="alert" id="form-error" data-code="invalid_grant">' in html
    assert "Wrong username, email or password" in html
    assert 'aria-invalid="true" aria-describedby="form-error"' in html
    assert form_fields(html)["username"] == login
    assert form_fields(html)["password"] == ""
    assert "WWW-Authenticate" not in answer.headers
    failed = audit_events(client, tenant.headers, "user.signin_failed")
    assert [e["data"]["reason"] for e in failed] == [
        "wrong_password" if login == "alice" else "unknown_user"
    ]
    # The form shown again works.
    retry = submit_login(client, answer, "alice")
    assert retry.status_code == 303 and "code=" in retry.headers["Location"]


def test_missing_fields_are_a_visible_error(client: FlaskClient, web: AppHandle) -> None:
    page = login_page(client, web)
    answer = submit_login(client, page, "", "")

    assert answer.status_code == 400
    assert "Enter your username or email address and your password." in answer.get_data(
        as_text=True
    )


def test_csrf_token_must_match_the_browser(
    app: Flask, client: FlaskClient, web: AppHandle, alice: str
) -> None:
    page = login_page(client, web)
    fields = form_fields(page.get_data(as_text=True))
    fields.update(username="alice", password=PASSWORD)

    # Right browser, wrong token: refused, the form shown again with a fresh one.
    forged = client.post("/authorize", data={**fields, "csrf_token": "forged"})
    assert forged.status_code == 403
    assert "did not come from this page" in forged.get_data(as_text=True)
    # Another browser (with its own cookie) replaying the whole form: refused before the
    # password.
    other = app.test_client()
    login_page(other, web)
    stranger = other.post("/authorize", data=fields)
    assert stranger.status_code == 400
    assert "<code>form_expired</code>" in stranger.get_data(as_text=True)
    assert "Location" not in forged.headers and "Location" not in stranger.headers
    assert "gh_sso_" not in str(forged.headers) + str(stranger.headers)


def test_a_form_posted_without_cookies_says_the_cookies_did_not_arrive(
    app: Flask, client: FlaskClient, web: AppHandle, alice: str
) -> None:
    page = login_page(client, web)
    fields = form_fields(page.get_data(as_text=True))
    fields.update(username="alice", password=PASSWORD)

    # What a browser does with a Secure cookie over http: it never sends it back.
    cookieless = app.test_client().post("/authorize", data=fields)

    assert cookieless.status_code == 403
    html = cookieless.get_data(as_text=True)
    assert "<code>cookies_missing</code>" in html
    assert "did not send this site&#39;s cookies" in html and "must not be Secure" in html
    assert "took too long" not in html  # not the expired-form message
    assert "gh_sso_" not in str(cookieless.headers)


def test_the_form_carries_a_tamper_proof_request(
    client: FlaskClient, web: AppHandle, alice: str
) -> None:
    page = login_page(client, web)
    fields = form_fields(page.get_data(as_text=True))
    fields.update(username="alice", password=PASSWORD, authz=fields["authz"][:-2] + "xx")

    answer = client.post("/authorize", data=fields)
    assert answer.status_code == 400
    assert "Go back to the app and try again" in answer.get_data(as_text=True)


def test_cancel_tells_the_client_access_denied(
    client: FlaskClient, web: AppHandle, alice: str
) -> None:
    page = login_page(client, web, state="s1")
    fields = form_fields(page.get_data(as_text=True))
    answer = client.post("/authorize", data={**fields, "cancel": "1"})

    assert answer.status_code == 302
    error = query_of(answer.headers["Location"])
    assert error["error"] == "access_denied" and error["state"] == "s1"


def test_sign_in_is_rate_limited_like_the_password_grant(
    app: Flask, database_url: str, tmp_path: Path, web: AppHandle, alice: str
) -> None:
    with rate_limited_app(
        app, database_url, tmp_path, RATELIMIT_SIGNIN_PER_ACCOUNT="2 per minute"
    ) as limited:
        browser = limited.test_client()
        page = login_page(browser, web)
        for _ in range(2):
            page = submit_login(browser, page, "alice", "wrong")
            assert page.status_code == 401
        blocked = submit_login(browser, page, "Alice", PASSWORD)

    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) >= 1
    html = blocked.get_data(as_text=True)
    assert "Too many requests" in html and 'name="password"' in html


PAGE_ERRORS = {
    "unknown client": ({"client_id": "no-such-app"}, "unknown_client"),
    "missing client": ({"client_id": None}, "unknown_client"),
    "unregistered redirect": (
        {"redirect_uri": "http://127.0.0.1:8765/other"},
        "redirect_uri_mismatch",
    ),
    "redirect prefix": ({"redirect_uri": REDIRECT + "/x"}, "redirect_uri_mismatch"),
    "redirect needed": ({"redirect_uri": None}, "redirect_uri_mismatch"),
}


@pytest.mark.parametrize(("extra", "code"), PAGE_ERRORS.values(), ids=PAGE_ERRORS.keys())
def test_bad_client_or_redirect_uri_is_shown_on_the_page_never_redirected(
    client: FlaskClient, web: AppHandle, extra: dict, code: str
) -> None:
    _, challenge = pkce_pair()
    query = {**authorize_query(web, challenge), **extra}
    page = client.get("/authorize", query_string={k: v for k, v in query.items() if v})

    assert page.status_code == 400
    assert "Location" not in page.headers
    html = page.get_data(as_text=True)
    assert 'role="alert"' in html and f"<code>{code}</code>" in html


def test_a_loopback_redirect_uri_may_use_any_port(
    client: FlaskClient, web: AppHandle, alice: str
) -> None:
    """RFC 8252 §7.3: a native app listens on the port the system gives it."""
    answer, verifier, _ = sign_in_through_page(
        client, web, "alice", redirect_uri="http://127.0.0.1:50123/callback"
    )
    tokens = exchange(
        client, web, answer["code"], verifier, redirect_uri="http://127.0.0.1:50123/callback"
    )
    assert tokens.status_code == 200, tokens.get_data(as_text=True)
    for other in ("http://127.0.0.1:50123/other", "http://localhost:50123/callback"):
        page = login_page(client, web, redirect_uri=other)
        assert page.status_code == 400 and "redirect_uri_mismatch" in page.get_data(as_text=True)


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1:50123/callback#frag",  # RFC 6749 §3.1.2: never a fragment
        f"{REDIRECT}#frag",  # not even on the registered URI itself
        "http://@127.0.0.1:50123/callback",  # empty userinfo
        "http://user@127.0.0.1:50123/callback",
        "http://127.0.0.1:0/callback",
        "http://127.0.0.1:08765/callback",  # a zero-padded port
        "http://127.0.0.1:/callback",  # an empty one
    ],
)
def test_the_any_port_rule_takes_a_plain_loopback_uri_only(
    client: FlaskClient, web: AppHandle, uri: str
) -> None:
    page = login_page(client, web, redirect_uri=uri)
    assert page.status_code == 400 and "redirect_uri_mismatch" in page.get_data(as_text=True)
    assert "Location" not in page.headers


def test_the_only_registered_redirect_uri_may_be_left_out(
    app: Flask, client: FlaskClient, tenant: TenantHandle, alice: str
) -> None:
    single = factories.make_application(app, tenant.id, redirect_uris=[REDIRECT])
    answer, verifier, _ = sign_in_through_page(client, single, "alice", redirect_uri=None)

    tokens = exchange(client, single, answer["code"], verifier, redirect_uri=None)
    assert tokens.status_code == 200, tokens.get_data(as_text=True)


REDIRECTED_ERRORS = {
    "no response_type": ({"response_type": None}, "invalid_request"),
    "implicit flow": ({"response_type": "token"}, "unsupported_response_type"),
    "no code_challenge": ({"code_challenge": None}, "invalid_request"),
    "plain method": ({"code_challenge_method": "plain"}, "invalid_request"),
    "no method (plain)": ({"code_challenge_method": None}, "invalid_request"),
    "not a challenge": ({"code_challenge": "short"}, "invalid_request"),
    "unknown scope": ({"scope": "openid launch:missiles"}, "invalid_scope"),
    "prompt none with login": ({"prompt": "none login"}, "invalid_request"),
    "bad max_age": ({"max_age": "-1"}, "invalid_request"),
    "request object": ({"request": "eyJ.e30."}, "request_not_supported"),
    "form_post": ({"response_mode": "form_post"}, "invalid_request"),
    "not signed in": ({"prompt": "none"}, "login_required"),
}


@pytest.mark.parametrize(
    ("extra", "error"), REDIRECTED_ERRORS.values(), ids=REDIRECTED_ERRORS.keys()
)
def test_request_errors_go_to_the_client_with_state(
    client: FlaskClient, web: AppHandle, extra: dict, error: str
) -> None:
    _, challenge = pkce_pair()
    query = {**authorize_query(web, challenge, state="xyz"), **extra}
    answer = client.get("/authorize", query_string={k: v for k, v in query.items() if v})

    assert answer.status_code == 302, answer.get_data(as_text=True)
    location = answer.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    params = query_of(location)
    assert params["error"] == error and params["state"] == "xyz"
    assert params["error_description"] and params["iss"] == "http://gatehouse.test"
    assert "code" not in params


def test_a_repeated_parameter_is_invalid_request(client: FlaskClient, web: AppHandle) -> None:
    _, challenge = pkce_pair()
    query = list(authorize_query(web, challenge).items()) + [("scope", "openid")]
    answer = client.get("/authorize", query_string=query)

    assert answer.status_code == 302
    assert query_of(answer.headers["Location"])["error"] == "invalid_request"


def test_a_redirect_uri_with_a_query_keeps_it(
    client: FlaskClient, web: AppHandle, alice: str
) -> None:
    _, challenge = pkce_pair()
    query = authorize_query(web, challenge, redirect_uri="https://app.example.com/cb?tab=1")
    answer = client.get("/authorize", query_string={**query, "response_type": "token"})

    location = answer.headers["Location"]
    assert location.startswith("https://app.example.com/cb?tab=1&error=")


def test_login_hint_fills_in_the_username(client: FlaskClient, web: AppHandle) -> None:
    page = login_page(client, web, login_hint="alice@example.com")
    assert form_fields(page.get_data(as_text=True))["username"] == "alice@example.com"


def test_token_errors_keep_the_oauth_shape(client: FlaskClient, web: AppHandle) -> None:
    answer = exchange(client, web, "no-such-code", pkce_pair()[0])
    assert_oauth_error(answer, 401, "invalid_grant")
