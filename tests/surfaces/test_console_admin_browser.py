"""The console's admin pages in headless Chromium, by keyboard and mouse as an admin uses
them: register a confidential application and rotate its secret (the old one refused at
/oauth/token, the new one taken); create an API key with chosen scopes (it works where
its scope is needed and is refused elsewhere), then revoke it; replay a webhook delivery
that failed (a real worker, and a receiver that fails once, then succeeds); each journey
ends by reading its own trail in the console's audit log. axe-core
finds no WCAG 2.1 A/AA violation on any page met on the way (forms refused and shown
again included), and nothing breaks the pages' Content-Security-Policy."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests import factories
from tests.browser_support import csp_violations
from tests.console_support import grant
from tests.factories import TenantHandle
from tests.oauth_support import PASSWORD, app_password_grant, assert_oauth_error, make_alice
from tests.surfaces.test_hosted_a11y import WCAG_AA
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.browser


@pytest.fixture()
def console(
    app: Flask,
    live_server: str,
    browser: Any,
    tenant: TenantHandle,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Any]:
    """A Chromium page signed in to the tenant's console as alice, an admin."""
    # The console's callback is `{ISSUER}/console/callback`: here, the served app.
    monkeypatch.setitem(app.config, "ISSUER", live_server)
    grant(app, tenant.id, make_alice(app, tenant.id))
    context = browser.new_context(viewport={"width": 1024, "height": 768})
    page = context.new_page()
    csp_errors = csp_violations(page)
    page.goto(f"{live_server}/console?tenant={tenant.id}")
    page.get_by_label(re.compile("Username")).fill("alice")
    page.locator("#password").fill(PASSWORD)
    page.locator("#password").press("Enter")
    page.wait_for_url(re.compile(r"/console\?tenant="))
    try:
        yield page
        assert not csp_errors, csp_errors
    finally:
        context.close()


def passes_axe(page: Any) -> None:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options=WCAG_AA)
    assert results.violations_count == 0, results.generate_report()


def open_menu(page: Any, name: str) -> None:
    page.get_by_role("navigation", name="Console").get_by_role("link", name=name).click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == name
    passes_axe(page)


def submit(page: Any, button: str) -> None:
    page.get_by_role("button", name=button).click()
    page.wait_for_load_state()


def shown_secret(page: Any) -> str:
    return str(page.locator("#secret-value").input_value())


def trail_shows(page: Any, *actions: str) -> None:
    """The console's audit log, filtered to the signed-in admin's own actions (the actor
    its hint names as "you"), lists each of `actions`: the journey's trail, read where an
    admin reads it."""
    open_menu(page, "Audit log")
    you = re.search(r"e\.g\. (user:\S+) \(you\)", page.content())
    assert you is not None
    page.get_by_label("Actor").fill(you.group(1))
    submit(page, "Filter")
    rows = page.locator("table tbody").inner_text()
    for action in actions:
        assert action in rows, (action, rows)
    passes_axe(page)


def test_an_admin_registers_an_application_and_rotates_its_secret(
    console: Any, client: FlaskClient
) -> None:
    page = console
    open_menu(page, "Applications")
    page.get_by_label("Name", exact=True).fill("Billing backend")
    page.get_by_label(re.compile("^Confidential")).check()
    page.get_by_label("Redirect URIs").fill("http://billing.example.com/cb")
    submit(page, "Register")
    # Refused: shown again with the reason next to the field, nothing lost.
    assert page.locator("#redirect_uris-error").is_visible()
    assert page.get_by_label("Name", exact=True).input_value() == "Billing backend"
    passes_axe(page)
    page.get_by_label("Redirect URIs").fill("https://billing.example.com/cb")
    submit(page, "Register")
    assert page.locator("h1").inner_text() == "Application registered"
    passes_axe(page)
    old = shown_secret(page)
    client_id = page.locator("dd code").nth(1).inner_text()
    assert app_password_grant(client, client_id, old).status_code == 200

    page.get_by_role("link", name="Go to the application").click()
    page.wait_for_load_state()
    assert old not in page.content()
    passes_axe(page)
    page.get_by_role("link", name="Rotate the client secret").click()
    page.wait_for_load_state()
    passes_axe(page)
    submit(page, "Rotate the secret")
    new = shown_secret(page)
    assert new and new != old

    assert_oauth_error(app_password_grant(client, client_id, old), 401, "invalid_client")
    assert app_password_grant(client, client_id, new).status_code == 200
    trail_shows(page, "application.created", "application.secret_rotated")


def test_an_admin_creates_a_scoped_key_and_revokes_it(
    console: Any, client: FlaskClient, tenant: TenantHandle
) -> None:
    page = console
    open_menu(page, "API keys")
    page.get_by_label("Name", exact=True).fill("reporting")
    submit(page, "Create the key")
    assert "Pick at least one scope." in page.locator("#scopes-error").inner_text()
    passes_axe(page)
    page.get_by_role("checkbox", name="read:users", exact=True).check()
    submit(page, "Create the key")
    assert page.locator("h1").inner_text() == "API key created"
    passes_axe(page)
    key = shown_secret(page)

    headers = {"X-APIKEY": key, "X-Tenant-ID": tenant.id}
    assert client.get("/api/v2/users", headers=headers).status_code == 200
    assert client.get("/api/v2/connections", headers=headers).status_code == 403

    page.get_by_role("link", name="Back to the API keys").click()
    page.wait_for_load_state()
    assert key not in page.content()
    page.get_by_role("link", name="Revoke the key reporting").click()
    page.wait_for_load_state()
    passes_axe(page)
    submit(page, "Revoke the key")
    assert "was revoked" in page.get_by_role("status").inner_text()
    assert client.get("/api/v2/users", headers=headers).status_code == 401
    trail_shows(page, "api_key.created", "api_key.revoked")


def test_an_admin_replays_a_failed_delivery(
    app: Flask,
    console: Any,
    celery_worker: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One attempt, then the message is failed (no retries to wait for).
    monkeypatch.setitem(app.config, "WEBHOOK_RETRY_SCHEDULE", [])
    receiver = Receiver().start()
    receiver.answer_with(500)  # the first delivery fails; later ones get 204
    page = console
    try:
        open_menu(page, "Webhooks")
        page.get_by_label("URL", exact=True).fill(receiver.url)
        page.get_by_role("checkbox", name="user.created").check()
        submit(page, "Register")
        passes_axe(page)
        page.get_by_role("link", name="Go to the endpoint").click()
        page.wait_for_load_state()
        submit(page, "Send a test message")

        def shows(status: str) -> bool:
            page.reload()
            return status in page.locator("table tbody").inner_text()

        factories.wait_until(lambda: shows("Failed"))
        assert "HTTP 500" in page.locator("table tbody").inner_text()
        passes_axe(page)
        page.get_by_role("button", name=re.compile("^Replay")).click()
        page.wait_for_load_state()
        assert "queued again" in page.get_by_role("status").inner_text()
        factories.wait_until(lambda: shows("Delivered"))

        requests = receiver.requests()
        assert len(requests) == 2
        assert requests[0].webhook_id == requests[1].webhook_id
        assert requests[0].body == requests[1].body
        page.get_by_label("Status").select_option("delivered")
        submit(page, "Filter")
        assert "Delivered" in page.locator("table tbody").inner_text()
        passes_axe(page)
        trail_shows(page, "webhook.created", "webhook.message_replayed")
    finally:
        receiver.stop()


def test_the_connection_pages_pass_axe(console: Any) -> None:
    page = console
    open_menu(page, "Connections")
    page.get_by_role("link", name="Add a connection").click()
    page.wait_for_load_state()
    passes_axe(page)
    page.get_by_label("Name", exact=True).fill("corp")
    page.get_by_label("Client id").fill("rp-1")
    page.get_by_label("Issuer").fill("https://login.corp.example")
    submit(page, "Add the connection")
    assert page.locator("#options-client_secret-error").is_visible()
    passes_axe(page)
    page.get_by_label("Client secret").fill("s3cret")
    submit(page, "Add the connection")
    assert "was added" in page.get_by_role("status").inner_text()
    assert "s3cret" not in page.content()
    passes_axe(page)
