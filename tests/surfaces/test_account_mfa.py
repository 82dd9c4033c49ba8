"""The account's two-step verification page, `/account/mfa` (issue 25): the signed-in user
sees whether TOTP is on and how many recovery codes are left, turns TOTP on (QR code and
key, then ten recovery codes shown once) or off (the codes go with the last second
factor), and regenerates the codes (the old ones stop working)."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.core.db import db
from app.core.tenancy import tenant_scope
from app.credentials.models import RecoveryCode
from tests import factories
from tests.factories import AppHandle, TenantHandle
from tests.oauth_support import (
    PASSWORD,
    audit_events,
    form_fields,
    make_alice,
    sign_in_through_page,
    token_request,
)
from tests.surfaces.test_mfa_required import shown_codes, shown_secret


@pytest.fixture()
def web(app: Flask, tenant: TenantHandle) -> AppHandle:
    return factories.make_application(app, tenant.id, name="Acme Web")


@pytest.fixture()
def signed_in(app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle) -> FlaskClient:
    make_alice(app, tenant.id)
    sign_in_through_page(client, web, "alice")
    return client


def post_form(browser: FlaskClient, page, action: str, **fields: str):
    data = {**form_fields(page.get_data(as_text=True)), **fields}
    return browser.post(action, data=data)


def code_rows(app: Flask, tenant_id: str) -> int:
    with app.app_context(), tenant_scope(tenant_id):
        return len(list(db.session.scalars(select(RecoveryCode.id))))


def test_turn_totp_on_see_codes_regenerate_and_turn_it_off(
    app: Flask, signed_in: FlaskClient, tenant: TenantHandle
) -> None:
    client = signed_in
    overview = client.get("/account/mfa", query_string={"tenant": tenant.id})
    assert overview.status_code == 200, overview.get_data(as_text=True)
    html = overview.get_data(as_text=True)
    assert html.count("<h1") == 1 and 'id="totp-status">Off.' in html
    assert f'name="tenant" value="{tenant.id}"' in html

    setup = post_form(client, overview, "/account/mfa/totp")
    assert setup.status_code == 200, setup.get_data(as_text=True)
    setup_html = setup.get_data(as_text=True)
    assert (
        'class="qr"' in setup_html and '<label for="code">Code from the app</label>' in setup_html
    )
    secret = shown_secret(setup_html)

    wrong = post_form(client, setup, "/account/mfa/totp/confirm", code="000000")
    assert wrong.status_code == 400 and 'role="alert"' in wrong.get_data(as_text=True)
    assert shown_secret(wrong.get_data(as_text=True)) == secret

    shown = post_form(client, wrong, "/account/mfa/totp/confirm", code=factories.totp_code(secret))
    assert shown.status_code == 200, shown.get_data(as_text=True)
    codes = shown_codes(shown.get_data(as_text=True))
    assert len(codes) == 10 and "Save these recovery codes" in shown.get_data(as_text=True)
    assert f"/account/mfa?tenant={tenant.id}" in shown.get_data(as_text=True)  # Continue

    overview = client.get("/account/mfa", query_string={"tenant": tenant.id})
    html = overview.get_data(as_text=True)
    assert "On:" in html and "10 recovery codes left." in html

    fresh = post_form(client, overview, "/account/mfa/recovery-codes")
    assert fresh.status_code == 200
    new_codes = shown_codes(fresh.get_data(as_text=True))
    assert len(new_codes) == 10 and not set(new_codes) & set(codes)
    assert len(audit_events(client, tenant.headers, "mfa.recovery_codes_regenerated")) == 1
    old = token_request(
        client, tenant.id, grant_type="password", username="alice", password=PASSWORD, otp=codes[0]
    )
    assert old.status_code in (400, 401)  # replaced: refused
    new = token_request(
        client,
        tenant.id,
        grant_type="password",
        username="alice",
        password=PASSWORD,
        otp=new_codes[0],
    )
    assert new.status_code == 200
    overview = client.get("/account/mfa", query_string={"tenant": tenant.id})
    assert "9 recovery codes left." in overview.get_data(as_text=True)

    off = post_form(client, overview, "/account/mfa/totp/remove")
    assert off.status_code == 303
    assert 'id="totp-status">Off.' in client.get(off.headers["Location"]).get_data(as_text=True)
    assert code_rows(app, tenant.id) == 0  # the codes went with the last second factor
    assert len(audit_events(client, tenant.headers, "mfa.removed")) == 1


def test_changes_need_the_form_token_and_recovery_codes_need_a_factor(
    app: Flask, signed_in: FlaskClient, tenant: TenantHandle
) -> None:
    client = signed_in
    overview = client.get("/account/mfa", query_string={"tenant": tenant.id})

    forged = client.post("/account/mfa/totp", data={"tenant": tenant.id, "csrf_token": "x"})
    assert forged.status_code == 403 and "csrf_failed" in forged.get_data(as_text=True)
    none = post_form(client, overview, "/account/mfa/recovery-codes")
    assert none.status_code == 400 and 'data-code="mfa_not_enrolled"' in none.get_data(as_text=True)
    confirm = post_form(client, overview, "/account/mfa/totp/confirm", code="123456")
    assert confirm.status_code == 400
    assert code_rows(app, tenant.id) == 0


def test_another_tenant_s_page_does_not_serve_this_session(
    app: Flask, signed_in: FlaskClient, tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    page = signed_in.get("/account/mfa", query_string={"tenant": other_tenant.id})
    # AccountSignInRequired: the other tenant's sign-in form, not this session's user.
    body = page.get_data(as_text=True)
    assert 'action="/account/login"' in body
    assert "alice" not in body and "Two-step verification" not in body
