"""A tenant's look on the hosted pages (settings.branding): its colour through a style
sheet of CSS custom properties (text colour chosen for contrast), its https logo at a
fixed size, its display name in the title and its support link; values that are not
valid are refused by the API and left out of the pages even if stored. And the security
headers every hosted page carries."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.api.hosted.branding import contrast, text_colour
from app.core.db import db
from app.tenants.models import Tenant
from tests import factories
from tests.factories import TenantHandle
from tests.oauth_support import PASSWORD, authorize_query, form_fields, login_page, pkce_pair
from tests.surfaces.hosted_pages import BRANDING, LOGO_SVG, VIEWPORT

CSS_LINK = re.compile(r'<link rel="stylesheet" href="(/hosted/branding/[^"]+)">')


@pytest.fixture()
def handle(app: Flask, tenant: TenantHandle) -> Any:
    factories.make_user(app, tenant.id, username="alice", password=PASSWORD)
    return factories.make_application(
        app, tenant.id, name="Acme Notes", redirect_uris=["https://app.example.com/cb"]
    )


def _brand(client: FlaskClient, root_headers: dict[str, str], tenant_id: str, **branding: Any):  # type: ignore[no-untyped-def]
    return client.patch(
        f"/tenants/{tenant_id}", json={"settings": {"branding": branding}}, headers=root_headers
    )


def _store_raw(app: Flask, tenant_id: str, branding: dict[str, Any]) -> None:
    """Branding written past the API's checks (an old row, a hand edit)."""
    with app.app_context():
        db.session.get(Tenant, tenant_id).branding = branding
        db.session.commit()


def test_the_colour_style_sheet(
    client: FlaskClient, root_headers: dict[str, str], tenant: TenantHandle, handle: Any
) -> None:
    assert _brand(client, root_headers, tenant.id, **BRANDING).status_code == 200
    body = login_page(client, handle).get_data(as_text=True)
    link = CSS_LINK.search(body)
    assert link, body
    sheet = client.get(html.unescape(link.group(1)))
    assert sheet.status_code == 200 and sheet.mimetype == "text/css"
    css = sheet.get_data(as_text=True)
    assert "--primary: #7b1fa2;" in css and "--primary-text: #ffffff;" in css
    assert sheet.headers["X-Content-Type-Options"] == "nosniff"

    # A light colour gets black text; the link changes with the colour.
    assert _brand(client, root_headers, tenant.id, primary_color="#FFEB3B").status_code == 200
    relinked = CSS_LINK.search(login_page(client, handle).get_data(as_text=True))
    assert relinked and relinked.group(1) != link.group(1)
    css = client.get(html.unescape(relinked.group(1))).get_data(as_text=True)
    assert "--primary: #ffeb3b;" in css and "--primary-text: #000000;" in css


BAD_VALUES = {
    "colour name": {"primary_color": "red"},
    "short colour": {"primary_color": "#fff"},
    "css injection": {"primary_color": "#000000;}body{display:none"},
    "http logo": {"logo_url": "http://cdn.example.com/logo.png"},
    "javascript logo": {"logo_url": "javascript:alert(1)"},
    "javascript support link": {"support_url": "javascript:alert(1)"},
    "empty display name": {"display_name": ""},
}


@pytest.mark.parametrize("bad", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_the_api_refuses_bad_values(
    client: FlaskClient, root_headers: dict[str, str], tenant: TenantHandle, bad: dict[str, str]
) -> None:
    answer = _brand(client, root_headers, tenant.id, **bad)
    assert answer.status_code == 400, answer.get_data(as_text=True)


def test_stored_bad_values_never_reach_a_page(
    app: Flask, client: FlaskClient, tenant: TenantHandle, handle: Any
) -> None:
    _store_raw(
        app,
        tenant.id,
        {
            "primary_color": "#000000;}body{display:none",
            "logo_url": "http://cdn.example.com/logo.png",
            "support_url": "javascript:alert(1)",
            "display_name": "Acme",
        },
    )
    body = login_page(client, handle).get_data(as_text=True)
    assert "/hosted/branding/" not in body and "<img" not in body
    assert "javascript:" not in body and "http://cdn" not in body
    assert "Acme" in body  # the name is text, escaped like any other
    sheet = client.get(f"/hosted/branding/{tenant.id}.css")
    assert sheet.status_code == 200 and "--primary" not in sheet.get_data(as_text=True)


def test_unknown_or_malformed_tenants_have_no_style_sheet(client: FlaskClient) -> None:
    assert client.get("/hosted/branding/0123456789abcdef0123456789abcdef.css").status_code == 404
    assert client.get("/hosted/branding/not..a..tenant.css").status_code == 404
    assert client.get("/hosted/branding/" + "a" * 40 + ".css").status_code == 404


def test_the_text_colour_always_has_aa_contrast() -> None:
    for value in range(0, 0x1000000, 0x010307):
        colour = f"#{value:06x}"
        assert contrast(colour, text_colour(colour)) >= 4.5, colour


@pytest.mark.browser
def test_a_branded_tenant_shows_its_logo_and_colour(
    client: FlaskClient,
    root_headers: dict[str, str],
    live_server: str,
    browser: Any,
    tenant: TenantHandle,
    handle: Any,
) -> None:
    assert _brand(client, root_headers, tenant.id, **BRANDING).status_code == 200
    context = browser.new_context(viewport=VIEWPORT)
    served: list[str] = []

    def logo(route: Any) -> None:
        served.append(route.request.url)
        route.fulfill(status=200, content_type="image/svg+xml", body=LOGO_SVG)

    context.route("https://cdn.example.com/**", logo)
    page = context.new_page()
    try:
        _, challenge = pkce_pair()
        page.goto(f"{live_server}/authorize?{urlencode(authorize_query(handle, challenge))}")
        assert page.title() == "Sign in to Acme Notes · Acme Corporation"
        image = page.get_by_role("img", name="Acme Corporation")
        assert image.get_attribute("src") == BRANDING["logo_url"]
        assert (image.get_attribute("width"), image.get_attribute("height")) == ("48", "48")
        box = image.bounding_box()
        assert box and (box["width"], box["height"]) == (48, 48)
        assert image.evaluate("img => img.complete && img.naturalWidth > 0")
        assert served == [BRANDING["logo_url"]]
        button = page.get_by_role("button", name="Sign in")
        style = button.evaluate(
            "b => [getComputedStyle(b).backgroundColor, getComputedStyle(b).color]"
        )
        assert style == ["rgb(123, 31, 162)", "rgb(255, 255, 255)"]
        support = page.get_by_role("link", name="Help and support")
        assert support.get_attribute("href") == BRANDING["support_url"]
    finally:
        context.close()


SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}
CSP = {
    "default-src": "'none'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' https: data:",
    "connect-src": "'self'",
    "frame-ancestors": "'none'",
    "base-uri": "'none'",
}


def _assert_page_headers(response: Any) -> None:
    assert response.mimetype == "text/html", response.status
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (name, response.headers)
    policy = dict(
        part.strip().split(" ", 1)
        for part in response.headers["Content-Security-Policy"].split(";")
    )
    assert policy == CSP  # and no form-action: a form's POST redirects to the app


def test_every_hosted_page_carries_the_security_headers(
    client: FlaskClient, tenant: TenantHandle, handle: Any
) -> None:
    pages = []
    login = login_page(client, handle)
    pages.append(login)
    fields = form_fields(login.get_data(as_text=True))
    pages.append(client.post("/authorize", data={**fields, "username": "alice", "password": "x"}))
    pages.append(client.post("/authorize", data={**fields, "authz": "tampered"}))
    pages.append(client.get("/authorize?client_id=nope"))
    pages.append(client.get("/verify-email?token=forged"))
    pages.append(client.get("/logout"))
    statuses = [page.status_code for page in pages]
    assert statuses == [200, 401, 400, 400, 400, 200], statuses
    for page in pages:
        _assert_page_headers(page)
