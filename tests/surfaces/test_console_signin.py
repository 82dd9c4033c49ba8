"""Signing in to /console over HTTP, as an OIDC client of this Gatehouse: the redirect to
/authorize (PKCE S256, state, nonce), the callback, a replayed state, no role, the
tenant's MFA requirement, a session or role ended between two requests, a viewer's POST
refused by the server, tenants kept apart, sign-out, and the pages' headers."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from app.core.db import db
from app.core.tenancy import tenant_scope
from app.tenants import service as tenant_service
from tests import factories
from tests.console_support import callback_location, console_sign_in, csrf_of, grant, to_login
from tests.factories import TenantHandle
from tests.oauth_support import confirmed_totp, make_alice, query_of, sign_in

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def _require_mfa(app: Flask, tenant_id: str) -> None:
    with app.app_context():
        tenant_service.update_tenant(tenant_id=tenant_id, settings={"console_require_mfa": True})
        db.session.commit()


def test_an_admin_signs_in_through_the_hosted_login_and_sees_the_dashboard(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    grant(app, tenant.id, make_alice(app, tenant.id))

    sent = client.get("/console/", query_string={"tenant": tenant.id})
    assert sent.status_code == 302
    query = query_of(sent.headers["Location"])
    assert query["response_type"] == "code" and query["code_challenge_method"] == "S256"
    assert query["redirect_uri"] == "http://gatehouse.test/console/callback"
    assert query["scope"] == "openid profile email"
    assert len(query["state"]) > 20 and len(query["nonce"]) > 20 and "prompt" not in query
    cookie = client.get_cookie("gh_console_signin")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"
    assert query["state"] not in cookie.value  # signed, not a copy to compare against

    answer = console_sign_in(client, tenant.id)
    assert (
        answer.status_code == 303 and answer.headers["Location"] == f"/console?tenant={tenant.id}"
    )
    session_cookie = client.get_cookie("gh_console")
    assert session_cookie is not None and session_cookie.http_only
    assert client.get_cookie("gh_console_signin") is None

    home = client.get("/console")
    html = home.get_data(as_text=True)
    assert home.status_code == 200
    assert "<h1>Dashboard</h1>" in html and "acme" in html and "alice@example.com" in html
    assert "console:admin" in html and 'href="/console/members"' in html
    assert home.headers["Content-Security-Policy"] == CSP
    assert home.headers["X-Frame-Options"] == "DENY"
    assert home.headers["Cache-Control"] == "no-store"
    assert home.headers["Referrer-Policy"] == "no-referrer"
    assert "<script" not in html


def test_a_replayed_state_is_refused(app: Flask, client: FlaskClient, tenant: TenantHandle) -> None:
    grant(app, tenant.id, make_alice(app, tenant.id))
    location = callback_location(client, tenant.id)
    pending = client.get_cookie("gh_console_signin")
    assert pending is not None
    assert client.get(location).status_code == 303

    client.set_cookie("gh_console_signin", pending.value)  # the same answer, once more
    replayed = client.get(location)
    assert replayed.status_code == 400
    assert "not valid any more" in replayed.get_data(as_text=True)
    # And a callback with no sign-in pending in this browser.
    stranger = factories_client(app).get(location)
    assert stranger.status_code == 400 and "took too long" in stranger.get_data(as_text=True)


def factories_client(app: Flask) -> FlaskClient:
    return app.test_client()


def test_a_user_without_a_console_role_gets_a_403_page(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    make_alice(app, tenant.id)
    answer = console_sign_in(client, tenant.id)
    assert answer.status_code == 403
    assert "No console access" in answer.get_data(as_text=True)
    assert client.get_cookie("gh_console") is None


def test_a_tenant_requiring_mfa_refuses_a_password_only_sign_in(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    grant(app, tenant.id, make_alice(app, tenant.id))
    _require_mfa(app, tenant.id)

    sent = client.get("/console/", query_string={"tenant": tenant.id})
    assert query_of(sent.headers["Location"])["prompt"] == "login"
    answer = console_sign_in(client, tenant.id)
    html = answer.get_data(as_text=True)
    assert answer.status_code == 403
    assert "two-step verification" in html and 'href="/account"' in html
    assert client.get_cookie("gh_console") is None


def test_a_tenant_requiring_mfa_admits_a_sign_in_with_a_code(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    grant(app, tenant.id, make_alice(app, tenant.id))
    secret = confirmed_totp(client, sign_in(client, tenant.id, "alice")["access_token"])
    _require_mfa(app, tenant.id)

    assert console_sign_in(client, tenant.id, totp_secret=secret).status_code == 303
    assert client.get("/console").status_code == 200


def test_an_ended_sign_in_session_sends_the_member_to_sign_in_again(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    alice = make_alice(app, tenant.id)
    grant(app, tenant.id, alice)
    console_sign_in(client, tenant.id)
    assert client.get("/console/members").status_code == 200

    # Blocking the user ends every session (as a password reset or an API revoke would).
    assert (
        client.patch(
            f"/api/v2/users/{alice}", json={"blocked": True}, headers=tenant.headers
        ).status_code
        == 200
    )
    again = client.get("/console/members")
    assert again.status_code == 302 and again.headers["Location"].startswith("/authorize?")
    assert query_of(again.headers["Location"])["client_id"]


def test_a_revoked_role_takes_effect_on_the_next_request(
    app: Flask, client: FlaskClient, tenant: TenantHandle, root_headers: dict[str, str]
) -> None:
    alice = make_alice(app, tenant.id)
    grant(app, tenant.id, alice)
    console_sign_in(client, tenant.id)
    assert client.get("/console").status_code == 200

    client.delete(f"/tenants/{tenant.id}/console-members/{alice}", headers=root_headers)
    refused = client.get("/console")
    assert refused.status_code == 403 and "No console access" in refused.get_data(as_text=True)


def test_a_viewer_sees_the_members_but_the_server_refuses_its_actions(
    app: Flask, client: FlaskClient, tenant: TenantHandle, root_headers: dict[str, str]
) -> None:
    alice = make_alice(app, tenant.id)
    bob = factories.make_user(app, tenant.id, user_id="bob-1", email="bob@example.com")
    grant(app, tenant.id, alice, "console:viewer")
    grant(app, tenant.id, bob, "console:admin")
    console_sign_in(client, tenant.id)

    listed = client.get("/console/members")
    html = listed.get_data(as_text=True)
    assert listed.status_code == 200 and "bob@example.com" in html
    assert "Grant a role" not in html and "/revoke" not in html
    csrf = csrf_of(html)

    granted = client.post(
        "/console/members",
        data={"csrf_token": csrf, "email": "alice@example.com", "role": "console:admin"},
    )
    assert granted.status_code == 403 and "does not allow" in granted.get_data(as_text=True)
    revoked = client.post(f"/console/members/{bob}/revoke", data={"csrf_token": csrf})
    assert revoked.status_code == 403
    assert client.get(f"/console/members/{bob}/revoke").status_code == 403
    roles = client.get(f"/tenants/{tenant.id}/console-members", headers=root_headers).get_json()
    assert sorted((m["user_id"], m["role"]) for m in roles) == [
        (alice, "console:viewer"),
        (bob, "console:admin"),
    ]


def test_an_admin_grants_and_revokes_on_the_members_page(
    app: Flask, client: FlaskClient, tenant: TenantHandle, root_headers: dict[str, str]
) -> None:
    alice = make_alice(app, tenant.id)
    bob = factories.make_user(app, tenant.id, user_id="bob-1", email="bob@example.com")
    grant(app, tenant.id, alice)
    console_sign_in(client, tenant.id)
    csrf = csrf_of(client.get("/console/members").get_data(as_text=True))

    no_token = client.post(
        "/console/members", data={"email": "bob@example.com", "role": "console:support"}
    )
    assert no_token.status_code == 403
    unknown = client.post(
        "/console/members",
        data={"csrf_token": csrf, "email": "nobody@example.com", "role": "console:support"},
    )
    assert unknown.status_code == 404 and "No user of this tenant" in unknown.get_data(as_text=True)
    granted = client.post(
        "/console/members",
        data={"csrf_token": csrf, "email": "bob@example.com", "role": "console:support"},
    )
    assert granted.status_code == 303
    assert "The role was granted." in client.get(granted.headers["Location"]).get_data(as_text=True)

    confirm = client.get(f"/console/members/{bob}/revoke")
    assert confirm.status_code == 200 and "bob@example.com" in confirm.get_data(as_text=True)
    revoked = client.post(
        f"/console/members/{bob}/revoke",
        data={"csrf_token": csrf_of(confirm.get_data(as_text=True))},
    )
    assert revoked.status_code == 303
    roles = client.get(f"/tenants/{tenant.id}/console-members", headers=root_headers).get_json()
    assert [m["user_id"] for m in roles] == [alice]
    events = client.get(
        "/audit-events",
        query_string={"action": "console.member_revoked"},
        headers={**root_headers, "X-Tenant-ID": tenant.id},
    ).get_json()["items"]
    assert [(e["user_id"], e["actor"]) for e in events] == [(bob, f"user:{alice}")]


def test_a_tenant_a_admin_cannot_revoke_a_tenant_b_member(
    app: Flask, client: FlaskClient, tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    grant(app, tenant.id, make_alice(app, tenant.id))
    bob = factories.make_user(app, other_tenant.id, user_id="bob-1", email="bob@example.com")
    grant(app, other_tenant.id, bob)
    console_sign_in(client, tenant.id)
    csrf = csrf_of(client.get("/console/members").get_data(as_text=True))

    assert client.get(f"/console/members/{bob}/revoke").status_code == 404
    answer = client.post(f"/console/members/{bob}/revoke", data={"csrf_token": csrf})
    assert answer.status_code == 404
    with app.app_context(), tenant_scope(other_tenant.id):
        from app.console import service as console_service

        assert console_service.role_of(tenant_id=other_tenant.id, user_id=bob) == "console:admin"
    # Naming tenant B in the URL asks for a sign-in to B, not B's data.
    other = client.get("/console/members", query_string={"tenant": other_tenant.id})
    assert other.status_code == 302 and other.headers["Location"].startswith("/authorize?")


def test_sign_out_ends_the_hosted_session_and_the_console_session(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    grant(app, tenant.id, make_alice(app, tenant.id))
    console_sign_in(client, tenant.id)
    csrf = csrf_of(client.get("/console").get_data(as_text=True))

    out = client.post("/console/logout", data={"csrf_token": csrf})
    assert out.status_code == 200 and "Signed out" in out.get_data(as_text=True)
    assert client.get_cookie("gh_console") is None
    # The hosted sign-in is over too: the login form is shown again.
    page = to_login(client, tenant.id)
    assert page.status_code == 200 and 'name="password"' in page.get_data(as_text=True)


def test_without_a_tenant_to_guess_a_form_asks_for_it(
    app: Flask, client: FlaskClient, tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    sent = client.get("/console")
    assert sent.status_code == 303 and sent.headers["Location"] == "/console/sign-in"
    form = client.get("/console/sign-in")
    html = form.get_data(as_text=True)
    assert form.status_code == 200 and 'name="tenant"' in html and "<label" in html
