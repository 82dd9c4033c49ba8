"""Helpers of the console tests: grant a role through the service, sign in to /console
through the hosted login page with a test client (redirect, login form, second factor
when the user has one, callback), as a browser would; post a page's form with its CSRF
token, and read a secret a page shows once."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from flask import Flask
from flask.testing import FlaskClient

from app.console import service as console_service
from app.core.db import db
from app.core.tenancy import Principal, tenant_scope
from tests.oauth_support import PASSWORD, form_fields, make_alice, next_totp
from tests.surfaces.test_hosted_a11y import WCAG_AA


def grant(app: Flask, tenant_id: str, user_id: str, role: str = "console:admin") -> None:
    with app.app_context(), tenant_scope(tenant_id):
        console_service.grant_member(
            tenant_id=tenant_id,
            user_id=user_id,
            role=role,
            actor=Principal(tenant_id=tenant_id, kind="cli"),
        )
        db.session.commit()


def path_of(location: str) -> str:
    """The path and query of a redirect (the test client keeps cookies per host)."""
    parts = urlsplit(location)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def to_login(client: FlaskClient, tenant_id: str, path: str = "/console") -> Any:
    """Open a console page without a session: the redirect to /authorize, followed."""
    sent = client.get(path, query_string={"tenant": tenant_id})
    assert sent.status_code == 302, sent.get_data(as_text=True)
    assert sent.headers["Location"].startswith("/authorize?")
    return client.get(sent.headers["Location"])


def callback_location(
    client: FlaskClient, tenant_id: str, login: str = "alice", totp_secret: str | None = None
) -> str:
    """Sign in on the hosted login page for the console; where it sends the browser back
    (the console's callback, with code and state)."""
    page = to_login(client, tenant_id)
    assert page.status_code == 200, page.get_data(as_text=True)
    fields = form_fields(page.get_data(as_text=True))
    answer = client.post("/authorize", data={**fields, "username": login, "password": PASSWORD})
    if totp_secret is not None:
        assert answer.status_code == 200, answer.get_data(as_text=True)
        fields = form_fields(answer.get_data(as_text=True))
        answer = client.post(
            "/authorize/second-factor", data={**fields, "code": next_totp(totp_secret)}
        )
    assert answer.status_code == 303, answer.get_data(as_text=True)
    location = answer.headers["Location"]
    assert "/console/callback?" in location, location
    return path_of(location)


def console_sign_in(
    client: FlaskClient, tenant_id: str, login: str = "alice", totp_secret: str | None = None
) -> Any:
    """The whole round trip; the callback's answer (303 to the console when admitted)."""
    return client.get(callback_location(client, tenant_id, login, totp_secret))


def csrf_of(html: str) -> str:
    return form_fields(html)["csrf_token"]


def browser_sign_in(
    page: Any,
    live_server: str,
    tenant_id: str,
    login: str = "alice",
    totp_secret: str | None = None,
) -> None:
    """In a Playwright page: open the console, sign in on the hosted login page (and the
    code of `totp_secret`), land on the dashboard."""
    page.goto(f"{live_server}/console?tenant={tenant_id}")
    page.get_by_label(re.compile("Username")).fill(login)
    page.locator("#password").fill(PASSWORD)
    page.locator("#password").press("Enter")
    if totp_secret is not None:
        page.wait_for_load_state()
        page.locator("input[name=code]").fill(next_totp(totp_secret))
        page.locator("input[name=code]").press("Enter")
    page.wait_for_url(re.compile(r"/console\?tenant="))


def assert_axe_clean(page: Any) -> None:
    """axe-core finds no WCAG 2.1 A/AA violation on the page."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options=WCAG_AA)
    assert results.violations_count == 0, results.generate_report()


def signed_in_admin(
    app: Flask, client: FlaskClient, tenant_id: str, role: str = "console:admin"
) -> str:
    """Alice, signed in to the console with `role`; her id."""
    alice = make_alice(app, tenant_id)
    grant(app, tenant_id, alice, role)
    assert console_sign_in(client, tenant_id).status_code == 303
    return alice


def post_form(client: FlaskClient, path: str, data: dict[str, Any], page: str | None = None) -> Any:
    """POST a console form with the CSRF token read from `page` (default: `path`)."""
    csrf = csrf_of(client.get(page or path).get_data(as_text=True))
    return client.post(path, data={"csrf_token": csrf, **data})


def shown_secret(html: str) -> str:
    """The secret a console page shows once (a key, a client or signing secret)."""
    found = re.search(r'id="secret-value"[^>]*value="([^"]+)"', html)
    assert found, html
    return found.group(1)
