"""Every hosted page in the states a person meets it, as a table the accessibility check
(test_hosted_a11y.py) and the screenshots (`make screenshots`) both walk.

A row is (name, how to reach the page, the browser's language and colour scheme).
`reach(scene)` drives `scene.page` (a fresh Playwright page, 720 px wide) until the page
to check is on screen; the Scene makes the tenant's users and applications on demand.
To add a page, add a row: its name is also the screenshot's file name
(docs/screenshots/<name>.png).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import pyotp
from flask import Flask
from flask.testing import FlaskClient

from app.core.db import db
from app.tenants import service as tenant_service
from tests import factories
from tests.factories import AppHandle, TenantHandle
from tests.federation_support import CALLBACK, make_connection, running_idp
from tests.oauth_support import (
    PASSWORD,
    authorize_query,
    bearer,
    confirmed_totp,
    next_totp,
    pkce_pair,
    sign_in,
)
from tests.postmark_fake import FakePostmark

VIEWPORT = {"width": 720, "height": 700}
BRANDING = {
    "display_name": "Acme Corporation",
    "logo_url": "https://cdn.example.com/acme-logo.svg",
    "primary_color": "#7b1fa2",
    "support_url": "https://help.example.com/",
}
# What the logo's https host answers (the browser's requests to it are served by the test).
LOGO_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 48 48">'
    '<rect width="48" height="48" rx="10" fill="#7b1fa2"/>'
    '<path d="M14 36 24 12l10 24h-5l-2-5h-6l-2 5zm8.5-9h3L24 22z" fill="#fff"/></svg>'
)
RESET_LINK = re.compile(r"/reset-password\?token=([^\s\"'<>&]+)")
VERIFY_LINK = re.compile(r"/verify-email\?token=([^\s\"'<>&]+)")


@dataclass
class Scene:
    """What a row may use: the app, its test client, the server the browser talks to,
    the local redirect URI, a tenant with mail set up, and the browser page."""

    app: Flask
    client: FlaskClient
    live_server: str
    callback_server: str
    tenant: TenantHandle
    page: Any
    postmark: FakePostmark
    monkeypatch: Any = None
    made: dict[str, Any] = field(default_factory=dict)

    def passkeys(self) -> None:
        """Serve the pages at http://localhost:PORT, the WebAuthn relying party (passkeys
        need a domain name and a secure context), with Chromium's virtual authenticator."""
        base = f"http://localhost:{urlsplit(self.live_server).port}"
        self.monkeypatch.setitem(self.app.config, "WEBAUTHN_RP_ID", "localhost")
        self.monkeypatch.setitem(self.app.config, "WEBAUTHN_ORIGINS", [base])
        self.live_server = base
        cdp = self.page.context.new_cdp_session(self.page)
        cdp.send("WebAuthn.enable")
        options = {
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": True,
            "hasUserVerification": True,
            "isUserVerified": True,
            "automaticPresenceSimulation": True,
        }
        cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})

    def application(self) -> AppHandle:
        if "application" not in self.made:
            self.made["application"] = factories.make_application(
                self.app, self.tenant.id, name="Acme Notes", redirect_uris=[self.callback_server]
            )
        return self.made["application"]

    def user(self, *, totp: bool = False) -> str:
        """The user alice (with a confirmed TOTP when `totp`); the TOTP secret, or ''."""
        if "user" not in self.made:
            factories.make_user(
                self.app,
                self.tenant.id,
                user_id="u-alice",
                username="alice",
                email="alice@example.com",
                display_name="Alice Liddell",
                password=PASSWORD,
            )
            self.made["user"] = ""
        if totp and not self.made["user"]:
            token = sign_in(self.client, self.tenant.id, "alice")["access_token"]
            self.made["user"] = confirmed_totp(self.client, token)
        return self.made["user"]

    def brand(self, **branding: str) -> None:
        """Give the tenant a look (BRANDING unless told), its logo served to the browser."""
        self.page.context.route(
            "https://cdn.example.com/**",
            lambda route: route.fulfill(status=200, content_type="image/svg+xml", body=LOGO_SVG),
        )
        self.configure(branding=branding or BRANDING)

    def configure(self, **settings: Any) -> None:
        """Merge tenant settings (as PATCH /tenants/{id} does): signup_enabled=True, ..."""
        with self.app.app_context():
            tenant_service.update_tenant(tenant_id=self.tenant.id, settings=settings)
            db.session.commit()

    def open_login(self, **extra: str) -> None:
        _, challenge = pkce_pair()
        query = authorize_query(self.application(), challenge, **extra)
        self.page.goto(f"{self.live_server}/authorize?{urlencode(query)}")

    def submit_password(self, password: str = PASSWORD) -> None:
        self.page.get_by_label(re.compile("Username|Benutzername|Nom d")).fill("alice")
        self.page.locator("#password").fill(password)
        self.page.locator("#password").press("Enter")
        self.page.wait_for_load_state()

    def sign_in(self) -> None:
        self.user()
        self.open_login()
        self.submit_password()
        self.page.wait_for_url(f"{self.callback_server}?*")

    def verification_link(self) -> str:
        """A verification link mailed to alice (through the worker and Postmark's fake)."""
        self.user()
        token = sign_in(self.client, self.tenant.id, "alice")["access_token"]
        asked = self.client.post("/users/me/verify-email", headers=bearer(token))
        assert asked.status_code == 200, asked.get_data(as_text=True)
        mails = factories.wait_until(lambda: self.postmark.mails())
        found = VERIFY_LINK.search(html.unescape(mails[-1].body["TextBody"]))
        assert found, mails[-1].body
        return f"{self.live_server}/verify-email?token={found.group(1)}"


def _login(scene: Scene) -> None:
    scene.user()
    scene.open_login()


def _login_connections(scene: Scene) -> None:
    # The page lists the connection without calling its provider: no provider needed.
    make_connection(
        scene.app,
        scene.tenant.id,
        client_id=scene.application().client_id,
        issuer="http://127.0.0.1:9",
    )
    _login(scene)
    scene.page.get_by_role("button", name="Continue with corp-idp login").wait_for()


def _login_error(scene: Scene) -> None:
    _login(scene)
    scene.submit_password("not the password")
    scene.page.get_by_role("alert").wait_for()


def _second_factor(scene: Scene) -> None:
    scene.user(totp=True)
    scene.open_login()
    scene.submit_password()
    scene.page.locator("#code").wait_for()


def _second_factor_error(scene: Scene) -> None:
    _second_factor(scene)
    scene.page.locator("#code").fill("000000")
    scene.page.locator("#code").press("Enter")
    scene.page.get_by_role("alert").wait_for()


def _second_factor_notice(scene: Scene) -> None:
    secret = scene.user(totp=True)
    _second_factor_error(scene)
    scene.page.locator("#code").fill(next_totp(secret))
    scene.page.locator("#code").press("Enter")
    scene.page.locator("#failures").wait_for()


def _logout_confirm(scene: Scene) -> None:
    scene.sign_in()
    scene.page.goto(f"{scene.live_server}/logout")
    scene.page.locator("h1").wait_for()


def _signed_out(scene: Scene) -> None:
    _logout_confirm(scene)
    scene.page.get_by_role("button").click()
    scene.page.wait_for_url(f"{scene.live_server}/logout")
    scene.page.locator("h1").wait_for()


def _email_verified(scene: Scene) -> None:
    scene.page.goto(scene.verification_link())


def _error(scene: Scene) -> None:
    scene.page.goto(f"{scene.live_server}/verify-email?token=not-a-token")


def _branded_login(scene: Scene) -> None:
    scene.brand()
    _login(scene)


def _branded_error(scene: Scene) -> None:
    scene.brand()
    _login_error(scene)


def _second_factor_recovery(scene: Scene) -> None:
    _second_factor(scene)
    scene.page.get_by_role("link", name="Use a recovery code").click()
    scene.page.get_by_label("Recovery code").wait_for()


def _mfa_enrol(scene: Scene) -> None:
    scene.configure(mfa_required=True)
    _login(scene)
    scene.submit_password()
    scene.page.locator("#totp-secret").wait_for()


def _recovery_codes(scene: Scene) -> None:
    _mfa_enrol(scene)
    secret = scene.page.locator("#totp-secret").inner_text().replace(" ", "")
    scene.page.locator("#code").fill(pyotp.TOTP(secret).now())
    scene.page.locator("#code").press("Enter")
    scene.page.get_by_role("button", name="Continue").wait_for()


def _account(scene: Scene) -> None:
    scene.sign_in()
    scene.page.goto(f"{scene.live_server}/account")
    scene.page.locator("#sessions-title").wait_for()


def _account_sign_in(scene: Scene) -> None:
    scene.user()
    scene.page.goto(f"{scene.live_server}/account?tenant={scene.tenant.id}")
    scene.page.locator("#password").wait_for()


def _account_mfa(scene: Scene) -> None:
    _account(scene)
    scene.page.goto(f"{scene.live_server}/account/mfa")
    scene.page.locator("h1").wait_for()


def _account_password(scene: Scene) -> None:
    _account(scene)
    scene.page.goto(f"{scene.live_server}/account/password")
    scene.page.locator("h1").wait_for()


def _signup(scene: Scene) -> None:
    scene.configure(signup_enabled=True, signup_fields=["name"])
    scene.open_login()
    scene.page.locator('a[href*="/signup"]').click()  # any language
    scene.page.locator("#confirm").wait_for()


def _signup_check_mail(scene: Scene) -> None:
    _signup(scene)
    scene.page.locator("#email").fill("new.person@example.com")
    scene.page.locator("#name").fill("New Person")
    scene.page.locator("#password").fill("a long new passphrase")
    scene.page.locator("#confirm").fill("a long new passphrase")
    scene.page.locator("#confirm").press("Enter")
    scene.page.get_by_role("heading", name="Check your mail").wait_for()


def _forgot_password(scene: Scene) -> None:
    _login(scene)
    scene.page.get_by_role("link", name="Forgot password?").click()
    scene.page.locator("#email").wait_for()


def _reset_password(scene: Scene) -> None:
    _forgot_password(scene)
    scene.page.locator("#email").fill("alice@example.com")
    scene.page.locator("#email").press("Enter")
    scene.page.get_by_role("heading", name="Check your mail").wait_for()
    mails = factories.wait_until(lambda: scene.postmark.mails())
    found = RESET_LINK.search(html.unescape(mails[-1].body["TextBody"]))
    assert found, mails[-1].body
    scene.page.goto(f"{scene.live_server}/reset-password?token={found.group(1)}")
    scene.page.locator("#confirm").wait_for()


def _reset_link_invalid(scene: Scene) -> None:
    scene.page.goto(f"{scene.live_server}/reset-password?token=not-a-token")
    scene.page.locator("h1").wait_for()


def _login_passkeys(scene: Scene) -> None:
    scene.passkeys()
    _login(scene)
    scene.page.get_by_role("button", name="Sign in with a passkey").wait_for()


def _passkey_offer(scene: Scene) -> None:
    _login_passkeys(scene)
    scene.submit_password()
    scene.page.get_by_role("heading", name="Add a passkey").wait_for()


def _account_passkeys(scene: Scene) -> None:
    _passkey_offer(scene)
    scene.page.get_by_role("button", name="Add a passkey").click()
    scene.page.wait_for_url(f"{scene.callback_server}?*")
    scene.page.goto(f"{scene.live_server}/account/passkeys?tenant={scene.tenant.id}")
    scene.page.get_by_role("heading", name="Passkey 1").wait_for()


def _link_account(scene: Scene) -> None:
    """The page that links another provider to alice's account: she signs in at the test
    provider (tests/idp) as a user whose address is hers; the provider sends the browser
    to the registered callback (gatehouse.test), served here by the live server."""
    scene.user()
    with running_idp() as idp:
        idp.account("alice-upstream", email="alice@example.com", email_verified=True)
        make_connection(
            scene.app,
            scene.tenant.id,
            client_id=scene.application().client_id,
            name="corp-idp",
            issuer=idp.issuer,
        )

        def to_live_server(route: Any) -> None:
            parts = urlsplit(route.request.url)
            location = f"{scene.live_server}{parts.path}?{parts.query}"
            route.fulfill(status=302, headers={"Location": location})

        scene.page.route(f"{CALLBACK}*", to_live_server)
        scene.open_login(connection="corp-idp")
        scene.page.locator("input[name=login]").fill("alice-upstream")
        scene.page.locator("input[name=password]").fill("any")
        scene.page.locator("button[type=submit]").first.click()
        scene.page.get_by_role("heading", name="Link corp-idp login to your account").wait_for()


def _console(scene: Scene, path: str = "/console") -> None:
    """alice, console admin of a tenant with 30 days of sign-ins, signed in to the console
    and on `path` (the console's pages share the hosted login; their screenshots too)."""
    from tests.console_support import grant

    scene.monkeypatch.setitem(scene.app.config, "ISSUER", scene.live_server)
    scene.user()
    grant(scene.app, scene.tenant.id, "u-alice")
    now = datetime.now(UTC)
    events = []
    for day in range(1, 30):
        at = now - timedelta(days=day, hours=1)
        for action, count in (
            ("user.signed_in", 20 + (day * 7) % 23),
            ("user.signin_failed", (day * 5) % 7),
            ("user.created", 2 + (day * 3) % 5),
        ):
            events += [{"action": action, "actor": "api_key:1f2e", "at": at}] * count
    factories.record_events(scene.app, scene.tenant.id, events)
    scene.page.goto(f"{scene.live_server}/console?tenant={scene.tenant.id}")
    scene.submit_password()
    scene.page.get_by_role("heading", name="Dashboard").wait_for()
    if path != "/console":
        scene.page.goto(f"{scene.live_server}{path}")
        scene.page.locator("h1").wait_for()


@dataclass(frozen=True)
class HostedPage:
    name: str
    reach: Callable[[Scene], None]
    locale: str = "en-US"
    color_scheme: str = "light"
    # The browser test that already runs axe on this page in its flow: the row then only
    # makes its screenshot (`make screenshots`), and the suite does not check it twice.
    checked_by: str | None = None


PAGES: list[HostedPage] = [
    HostedPage("login", _login),
    HostedPage("login-error", _login_error),
    HostedPage("login-connections", _login_connections, checked_by="test_federation_browser.py"),
    HostedPage("second-factor", _second_factor),
    HostedPage("second-factor-error", _second_factor_error),
    HostedPage("second-factor-notice", _second_factor_notice),
    HostedPage("logout-confirm", _logout_confirm),
    HostedPage("signed-out", _signed_out),
    HostedPage("email-verified", _email_verified),
    HostedPage("error", _error),
    HostedPage("branded-login", _branded_login),
    HostedPage("branded-login-error", _branded_error),
    HostedPage("login-de", _login, locale="de-DE"),
    HostedPage("login-error-de", _login_error, locale="de-DE"),
    HostedPage("second-factor-fr", _second_factor, locale="fr-FR"),
    HostedPage("login-error-dark", _login_error, color_scheme="dark"),
    HostedPage("branded-login-dark", _branded_login, color_scheme="dark"),
    HostedPage("second-factor-recovery", _second_factor_recovery, checked_by="test_browser_mfa.py"),
    HostedPage("mfa-enrol", _mfa_enrol, checked_by="test_browser_mfa.py"),
    HostedPage("recovery-codes", _recovery_codes, checked_by="test_browser_mfa.py"),
    HostedPage("account", _account, checked_by="test_account_browser.py"),
    HostedPage("account-de", _account, locale="de-DE"),
    HostedPage("account-sign-in", _account_sign_in, checked_by="test_account_browser.py"),
    HostedPage("account-mfa", _account_mfa),
    HostedPage("account-password", _account_password, checked_by="test_account_browser.py"),
    HostedPage("signup", _signup, checked_by="test_browser_signup.py"),
    HostedPage("signup-check-mail", _signup_check_mail, checked_by="test_browser_signup.py"),
    HostedPage("signup-fr", _signup, locale="fr-FR"),
    HostedPage("forgot-password", _forgot_password, checked_by="test_browser_signup.py"),
    HostedPage("reset-password", _reset_password, checked_by="test_browser_signup.py"),
    HostedPage("reset-link-invalid", _reset_link_invalid, checked_by="test_browser_signup.py"),
    HostedPage("login-passkeys", _login_passkeys),
    HostedPage("passkey-offer", _passkey_offer, checked_by="test_passkeys_browser.py"),
    HostedPage("account-passkeys", _account_passkeys),
    HostedPage("link-account", _link_account),
    # The admin console's pages (axe: test_console_browser.py), for their screenshots.
    HostedPage("console-dashboard", _console, checked_by="test_console_browser.py"),
    HostedPage(
        "console-audit",
        # Today's events: the sign-in, the role granted, the console client registered.
        lambda scene: _console(scene, f"/console/audit?from={datetime.now(UTC):%Y-%m-%dT00:00}"),
        checked_by="test_console_browser.py",
    ),
    HostedPage(
        "console-users",
        lambda scene: _console(scene, "/console/users"),
        checked_by="test_console_browser.py",
    ),
    HostedPage(
        "console-user",
        lambda scene: _console(scene, "/console/users/u-alice"),
        checked_by="test_console_browser.py",
    ),
]
