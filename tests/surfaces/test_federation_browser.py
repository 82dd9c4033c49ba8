"""A real browser signs in through another identity provider (issue 27): headless
Chromium opens the app's `/authorize` on Gatehouse served over HTTP, clicks "Continue
with …" on the login page (checked with axe), signs in at panva's oidc-provider
(tests/idp, its development login form), comes back through `/login/callback`, and lands
on the app's redirect URI with a code; the test exchanges it and checks Gatehouse's own
ID token (signed by Gatehouse's JWKS, `iss` Gatehouse, `sub` the Gatehouse user). And
`/authorize?connection=NAME` goes straight to the provider, as Auth0's parameter does.
The same journey runs through a GitHub connection, against the GitHub-shaped stand-in
(tests/github_standin.py), which approves at once and sends the browser back.

The served process's ISSUER is its own address (http://127.0.0.1:PORT), so the redirect
URI registered at the provider, `{ISSUER}/login/callback`, brings the browser back to
the server that set the pending sign-in's cookie."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest
import requests
from flask import Flask
from sqlalchemy import select

from app.core.tenancy import tenant_scope
from app.federation import upstream
from app.users.models import Identity
from tests import factories
from tests.browser_support import OUTPUT_DIR
from tests.factories import AppHandle, TenantHandle
from tests.federation_support import Idp, make_connection, running_idp
from tests.github_standin import GitHub, running_github
from tests.oauth_support import authorize_query, pkce_pair, query_of
from tests.surfaces.hosted_pages import VIEWPORT
from tests.surfaces.test_browser import served_as
from tests.surfaces.test_hosted_a11y import WCAG_AA

pytestmark = pytest.mark.browser


@dataclass(frozen=True)
class Journey:
    """Gatehouse served at `issuer`, and the provider that sends browsers back to it."""

    issuer: str
    idp: Idp
    github: GitHub


@pytest.fixture(scope="module")
def journey(
    app: Flask, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Journey]:
    tmp = tmp_path_factory.mktemp("federation-browser")
    with served_as(app, database_url, tmp, "127.0.0.1") as issuer:
        # The GitHub stand-in sends the browser back to whatever redirect_uri Gatehouse
        # sent, i.e. this process's {ISSUER}/login/callback.
        with running_idp((f"{issuer}/login/callback",)) as idp, running_github() as github:
            yield Journey(issuer, idp, github)


@pytest.fixture()
def setup(
    app: Flask, journey: Journey, tenant: TenantHandle, callback_server: str
) -> Iterator[AppHandle]:
    """The app (redirect URI: the local callback server) with the connection enabled."""
    journey.idp.reset()
    upstream.clear_caches()
    handle = factories.make_application(
        app, tenant.id, name="Acme Notes", redirect_uris=[callback_server]
    )
    make_connection(app, tenant.id, client_id=handle.client_id, issuer=journey.idp.issuer)
    yield handle
    journey.idp.reset()


def _sign_in_upstream(page: Any, idp: Idp, login: str) -> None:
    """The provider's development login form: any login name signs in as that account."""
    page.wait_for_url(f"{idp.issuer}/**")
    page.locator('input[name="login"]').fill(login)
    page.locator('input[name="password"]').fill("any password")
    page.locator('button[type="submit"]').click()


def _gatehouse_id_token(
    journey: Journey, handle: AppHandle, code: str, verifier: str, nonce: str
) -> dict[str, Any]:
    """Exchange the code at Gatehouse as the app does; the ID token's claims, verified
    with Gatehouse's published keys."""
    tokens = requests.post(
        f"{journey.issuer}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": handle.redirect_uri,
            "client_id": handle.client_id,
            "code_verifier": verifier,
        },
        timeout=10,
    )
    assert tokens.status_code == 200, tokens.text
    id_token = tokens.json()["id_token"]
    keys = jwt.PyJWKClient(f"{journey.issuer}/.well-known/jwks.json")
    claims = jwt.decode(
        id_token,
        keys.get_signing_key_from_jwt(id_token).key,
        algorithms=["RS256"],
        audience=handle.client_id,
        issuer=journey.issuer,
    )
    assert claims["nonce"] == nonce
    return claims


def _identity(app: Flask, tenant_id: str) -> Identity:
    with app.app_context(), tenant_scope(tenant_id):
        (identity,) = app.extensions["sqlalchemy"].session.scalars(select(Identity))
        return identity


def test_a_person_signs_in_with_another_provider_in_a_real_browser(
    app: Flask, journey: Journey, setup: AppHandle, browser: Any, callback_server: str
) -> None:
    from axe_playwright_python.sync_playwright import Axe

    journey.idp.account("u-erin", email="erin@example.com", email_verified=True, name="Erin")
    verifier, challenge = pkce_pair()
    query = authorize_query(setup, challenge)
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    try:
        page.goto(f"{journey.issuer}/authorize?{urlencode(query)}")
        assert page.title() == "Sign in to Acme Notes"
        button = page.get_by_role("button", name="Continue with corp-idp login")
        assert button.is_visible()
        OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(OUTPUT_DIR / "login-connections.png"))
        # The login page with a connection's button, under its own CSP: WCAG 2.1 AA.
        results = Axe().run(page, options=WCAG_AA)
        assert results.violations_count == 0, results.generate_report()

        button.click()
        _sign_in_upstream(page, journey.idp, "u-erin")
        page.wait_for_url(f"{callback_server}?*")
        assert page.locator("h1").inner_text() == "Back in the app"
        answer = query_of(page.url)
    finally:
        context.close()

    assert answer["state"] == query["state"] and "error" not in answer
    claims = _gatehouse_id_token(journey, setup, answer["code"], verifier, query["nonce"])
    identity = _identity(app, setup.tenant_id)
    assert claims["sub"] == identity.user_id  # the Gatehouse user, not the upstream subject
    assert claims["sub"] != "u-erin" and claims["iss"] != journey.idp.issuer
    assert (identity.connection, identity.provider_user_id) == ("corp-idp", "u-erin")
    assert factories.count_users(app, setup.tenant_id) == 1


def test_the_connection_parameter_skips_the_login_page(
    app: Flask, journey: Journey, setup: AppHandle, browser: Any, callback_server: str
) -> None:
    journey.idp.account("u-finn", email="finn@example.com", email_verified=True)
    verifier, challenge = pkce_pair()
    query = authorize_query(setup, challenge, connection="corp-idp")
    context = browser.new_context()
    page = context.new_page()
    pages: list[str] = []
    page.on(
        "response",
        lambda response: (
            pages.append(response.url)
            if response.status == 200 and "text/html" in response.headers.get("content-type", "")
            else None
        ),
    )
    try:
        page.goto(f"{journey.issuer}/authorize?{urlencode(query)}")
        _sign_in_upstream(page, journey.idp, "u-finn")
        page.wait_for_url(f"{callback_server}?*")
        answer = query_of(page.url)
        # A second sign-in in the same browser: the provider remembers its user, so the
        # browser goes there and back without a form, and Gatehouse finds the same user.
        again_verifier, again_challenge = pkce_pair()
        again = authorize_query(setup, again_challenge, connection="corp-idp")
        page.goto(f"{journey.issuer}/authorize?{urlencode(again)}")
        page.wait_for_url(f"{callback_server}?*")
        second = query_of(page.url)
    finally:
        context.close()

    # Gatehouse served no page of its own: straight to the provider and back to the app.
    assert not [url for url in pages if url.startswith(journey.issuer)], pages
    assert [url for url in pages if url.startswith(journey.idp.issuer)], pages  # its form
    first_claims = _gatehouse_id_token(journey, setup, answer["code"], verifier, query["nonce"])
    second_claims = _gatehouse_id_token(
        journey, setup, second["code"], again_verifier, again["nonce"]
    )
    assert first_claims["sub"] == second_claims["sub"] == _identity(app, setup.tenant_id).user_id
    assert factories.count_users(app, setup.tenant_id) == 1


def test_a_person_signs_in_with_github_in_a_real_browser(
    app: Flask, journey: Journey, browser: Any, callback_server: str, tenant: TenantHandle
) -> None:
    github = journey.github
    github.reset()
    handle = factories.make_application(
        app, tenant.id, name="Acme Notes", redirect_uris=[callback_server]
    )
    make_connection(
        app,
        tenant.id,
        client_id=handle.client_id,
        name="github",
        strategy="github",
        authorizationURL=f"{github.base}/login/oauth/authorize",
        tokenURL=f"{github.base}/login/oauth/access_token",
        userinfoURL=f"{github.base}/api/v3/user",
        scope="read:user user:email",
    )
    github.user(583231, "octocat", "octo@example.com")
    verifier, challenge = pkce_pair()
    query = authorize_query(handle, challenge)
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    try:
        page.goto(f"{journey.issuer}/authorize?{urlencode(query)}")
        assert page.title() == "Sign in to Acme Notes"
        page.get_by_role("button", name="Continue with github login").click()
        # The stand-in approves at once and sends the browser to Gatehouse's callback,
        # which answers the app.
        page.wait_for_url(f"{callback_server}?*")
        assert page.locator("h1").inner_text() == "Back in the app"
        answer = query_of(page.url)
    finally:
        context.close()

    assert answer["state"] == query["state"] and "error" not in answer, answer
    # The browser went to the stand-in; Gatehouse itself exchanged the code and read the
    # user and the verified address through the userinfoURL's base.
    assert github.paths() == [
        "/login/oauth/authorize",
        "/login/oauth/access_token",
        "/api/v3/user",
        "/api/v3/user/emails",
    ]
    claims = _gatehouse_id_token(journey, handle, answer["code"], verifier, query["nonce"])
    identity = _identity(app, handle.tenant_id)
    assert claims["sub"] == identity.user_id
    assert (identity.connection, identity.provider, identity.provider_user_id) == (
        "github",
        "github",
        "583231",
    )
    assert factories.count_users(app, handle.tenant_id) == 1
