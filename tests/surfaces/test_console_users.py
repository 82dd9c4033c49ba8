"""The console's Users pages over HTTP: the search (prefix terms, keyset pages, a bad query
shown again), a user's page, and the actions (block, delete after typing the address,
reset mail, second factors, sessions, metadata) with their audit actor; a viewer sees no
action and the server refuses its POSTs; another tenant's user is a 404 page."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.core.db import db
from app.core.tenancy import Principal, tenant_scope
from app.credentials import mfa as mfa_service
from app.users import service as user_service
from tests import factories
from tests.console_support import console_sign_in, csrf_of, grant
from tests.factories import PASSWORD, TenantHandle, bearer
from tests.oauth_support import assert_oauth_error, confirmed_totp, make_alice, refresh, sign_in

CAROL = "carol-1"


@pytest.fixture()
def mail_tenant(app: Flask) -> TenantHandle:
    return factories.make_tenant(
        app, "acme", email_from="noreply@example.com", postmark_server_token="pm-token-1"
    )


@pytest.fixture()
def admin(app: Flask, client: FlaskClient, mail_tenant: TenantHandle) -> FlaskClient:
    """`client` signed in to the console as alice, console:admin; carol is the user acted on."""
    grant(app, mail_tenant.id, make_alice(app, mail_tenant.id))
    factories.make_user(
        app,
        mail_tenant.id,
        user_id=CAROL,
        username="carol",
        email="carol@example.com",
        display_name="Carol Danvers",
        password=PASSWORD,
        app_metadata={"plan": "pro", "seats": 3},
    )
    assert console_sign_in(client, mail_tenant.id).status_code == 303
    return client


def _csrf(client: FlaskClient, path: str = f"/console/users/{CAROL}") -> str:
    return csrf_of(client.get(path).get_data(as_text=True))


def _events(client: FlaskClient, tenant: TenantHandle, action: str) -> list[dict[str, Any]]:
    answer = client.get("/audit-events", query_string={"action": action}, headers=tenant.headers)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["items"]


def _user(app: Flask, tenant_id: str, user_id: str = CAROL) -> Any:
    with app.app_context(), tenant_scope(tenant_id):
        user = user_service.find_user(user_id)
        if user is not None:
            db.session.expunge(user)
        return user


def _enrol_totp_and_codes(app: Flask, client: FlaskClient, tenant_id: str) -> None:
    """Carol confirms a TOTP over the me surface, then gets her ten recovery codes."""
    confirmed_totp(client, sign_in(client, tenant_id, "carol")["access_token"])
    with app.app_context(), tenant_scope(tenant_id):
        mfa_service.regenerate_recovery_codes(
            actor=Principal(tenant_id=tenant_id, kind="system"), user=user_service.get_user(CAROL)
        )
        db.session.commit()


def test_the_search_finds_users_by_the_beginning_of_any_field_and_pages_on(
    app: Flask, admin: FlaskClient, mail_tenant: TenantHandle
) -> None:
    for n in range(55):
        factories.make_user(
            app, mail_tenant.id, user_id=f"p-{n:02d}", email=f"p{n:02d}@example.org"
        )

    newest = admin.get("/console/users")
    html = newest.get_data(as_text=True)
    assert newest.status_code == 200 and "Newest users" in html
    assert html.index("p54@example.org") < html.index("p53@example.org")  # newest first
    assert 'href="/console/users/alice-1"' not in html  # the oldest, on the next page
    assert 'rel="next"' in html
    next_url = html.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0]
    second = admin.get(next_url.replace("&amp;", "&")).get_data(as_text=True)
    assert 'href="/console/users/alice-1"' in second and "p54@example.org" not in second
    assert 'rel="next"' not in second and "First page" in second

    for q in (
        "caro",
        "carol@EXAMPLE",
        "name:CAROL",
        '"carol danvers"',
        "carol-",
        "email:carol@example.com",
    ):
        found = admin.get("/console/users", query_string={"q": q}).get_data(as_text=True)
        assert f'href="/console/users/{CAROL}"' in found, q
        assert "p00@example.org" not in found, q
    exact = admin.get("/console/users", query_string={"q": '"caro"'}).get_data(as_text=True)
    assert "No user matches." in exact


def test_a_bad_query_or_cursor_shows_the_form_again(admin: FlaskClient) -> None:
    bad = admin.get("/console/users", query_string={"q": "phone:123"})
    html = bad.get_data(as_text=True)
    assert bad.status_code == 400
    assert 'aria-describedby="q-hint q-error"' in html and 'id="q-error"' in html
    assert "Cannot search on" in html and 'value="phone:123"' in html
    cursor = admin.get("/console/users", query_string={"cursor": "not-a-cursor"})
    assert cursor.status_code == 400 and "cursor is not valid" in cursor.get_data(as_text=True)


def test_a_users_page_shows_profile_metadata_factors_sessions_and_events(
    app: Flask, admin: FlaskClient, mail_tenant: TenantHandle
) -> None:
    _enrol_totp_and_codes(app, admin, mail_tenant.id)

    page = admin.get(f"/console/users/{CAROL}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "<h1>carol@example.com</h1>" in html
    assert "Carol Danvers" in html and "<code>carol-1</code>" in html
    assert "&#34;plan&#34;: &#34;pro&#34;" in html and "&#34;seats&#34;: 3" in html
    assert "Username-Password-Authentication" in html
    assert "Authenticator app (TOTP)" in html and "Recovery codes: 10 left" in html
    assert "API" in html or "api" in html  # the password grant's session
    assert "mfa.enrolled" in html and "user.signed_in" in html
    assert f'href="/console/audit?user_id={CAROL}"' in html
    assert "Block</button>" in html and "Sign out of every session" in html
    assert page.headers["Cache-Control"] == "no-store"


def test_block_and_unblock_refuse_then_admit_the_users_tokens(
    app: Flask, admin: FlaskClient, mail_tenant: TenantHandle
) -> None:
    before = sign_in(admin, mail_tenant.id, "carol")["access_token"]
    blocked = admin.post(
        f"/console/users/{CAROL}/block", data={"csrf_token": _csrf(admin), "blocked": "true"}
    )
    assert blocked.status_code == 303
    assert blocked.headers["Location"] == f"/console/users/{CAROL}?done=blocked"
    landed = admin.get(blocked.headers["Location"]).get_data(as_text=True)
    assert "The user is blocked" in landed and "Unblock</button>" in landed
    assert admin.get("/userinfo", headers=bearer(before)).status_code == 401

    unblocked = admin.post(
        f"/console/users/{CAROL}/block", data={"csrf_token": _csrf(admin), "blocked": "false"}
    )
    assert unblocked.status_code == 303 and _user(app, mail_tenant.id).blocked is False
    after = sign_in(admin, mail_tenant.id, "carol")["access_token"]
    assert admin.get("/userinfo", headers=bearer(after)).status_code == 200
    events = _events(admin, mail_tenant, "user.blocked")
    assert [(e["data"]["blocked"], e["actor"]) for e in events] == [
        (False, "user:alice-1"),
        (True, "user:alice-1"),
    ]


def test_delete_needs_the_exact_email_address(
    app: Flask, admin: FlaskClient, mail_tenant: TenantHandle
) -> None:
    confirm = admin.get(f"/console/users/{CAROL}/delete")
    assert confirm.status_code == 200
    csrf = csrf_of(confirm.get_data(as_text=True))

    wrong = admin.post(
        f"/console/users/{CAROL}/delete", data={"csrf_token": csrf, "confirm": "Carol@example.com"}
    )
    html = wrong.get_data(as_text=True)
    assert wrong.status_code == 400 and "not the user&#39;s email address" in html
    assert 'value="Carol@example.com"' in html and 'aria-invalid="true"' in html
    assert _user(app, mail_tenant.id) is not None

    done = admin.post(
        f"/console/users/{CAROL}/delete", data={"csrf_token": csrf, "confirm": "carol@example.com"}
    )
    assert done.status_code == 303 and done.headers["Location"] == "/console/users?done=deleted"
    assert "The user was deleted." in admin.get(done.headers["Location"]).get_data(as_text=True)
    assert _user(app, mail_tenant.id) is None
    assert [e["actor"] for e in _events(admin, mail_tenant, "user.deleted")] == ["user:alice-1"]
    assert admin.get(f"/console/users/{CAROL}").status_code == 404


def test_a_reset_mail_goes_to_the_user_through_the_reset_service(
    app: Flask, admin: FlaskClient, mail_tenant: TenantHandle
) -> None:
    sent = admin.post(f"/console/users/{CAROL}/password-reset", data={"csrf_token": _csrf(admin)})
    assert sent.status_code == 303 and sent.headers["Location"].endswith("done=reset_sent")
    deliveries = factories.email_deliveries(app, mail_tenant.id)
    assert [(d.kind, d.to_address) for d in deliveries] == [("password_reset", "carol@example.com")]
    events = _events(admin, mail_tenant, "password_reset.requested")
    assert [(e["user_id"], e["actor"]) for e in events] == [(CAROL, "user:alice-1")]


def test_second_factors_and_recovery_codes_are_removed(
    app: Flask, admin: FlaskClient, mail_tenant: TenantHandle
) -> None:
    _enrol_totp_and_codes(app, admin, mail_tenant.id)
    methods = admin.get(
        f"/api/v2/users/{CAROL}/authentication-methods", headers=mail_tenant.headers
    ).get_json()
    totp_id = methods[0]["id"]

    codes = admin.post(
        f"/console/users/{CAROL}/recovery-codes/delete", data={"csrf_token": _csrf(admin)}
    )
    assert codes.status_code == 303
    assert "Recovery codes: 0 left" in admin.get(codes.headers["Location"]).get_data(as_text=True)
    removed = admin.post(
        f"/console/users/{CAROL}/authentication-methods/{totp_id}/delete",
        data={"csrf_token": _csrf(admin)},
    )
    assert removed.status_code == 303
    assert (
        admin.get(
            f"/api/v2/users/{CAROL}/authentication-methods", headers=mail_tenant.headers
        ).get_json()
        == []
    )
    again = admin.post(
        f"/console/users/{CAROL}/authentication-methods/{totp_id}/delete",
        data={"csrf_token": _csrf(admin)},
    )
    assert again.status_code == 404 and "<h1>carol@example.com</h1>" in again.get_data(as_text=True)
    events = _events(admin, mail_tenant, "mfa.removed")
    assert [(e["data"]["provider"], e["actor"]) for e in events] == [
        ("google-authenticator", "user:alice-1"),
        ("recovery-code", "user:alice-1"),
    ]


def test_signing_out_everywhere_kills_the_refresh_token(
    app: Flask, admin: FlaskClient, mail_tenant: TenantHandle
) -> None:
    tokens = sign_in(admin, mail_tenant.id, "carol")
    out = admin.post(f"/console/users/{CAROL}/sessions/delete", data={"csrf_token": _csrf(admin)})
    assert out.status_code == 303
    assert "No live session." in admin.get(out.headers["Location"]).get_data(as_text=True)
    assert_oauth_error(
        refresh(admin, tokens["refresh_token"], mail_tenant.id), 401, "invalid_grant"
    )
    assert admin.get("/userinfo", headers=bearer(tokens["access_token"])).status_code == 401
    events = _events(admin, mail_tenant, "session.revoked")
    assert [(e["user_id"], e["actor"], e["target"]) for e in events] == [
        (CAROL, "user:alice-1", "all")
    ]


@pytest.mark.parametrize(
    ("app_text", "message"),
    [
        ('{"plan": ', "This is not valid JSON"),
        ("[1, 2]", "Enter a JSON object"),
        ('{"n": NaN}', "This is not valid JSON"),
        ('{"big": "' + "x" * 17000 + '"}', "larger than"),
    ],
)
def test_metadata_that_is_not_a_json_object_is_shown_again_with_the_error(
    app: Flask, admin: FlaskClient, mail_tenant: TenantHandle, app_text: str, message: str
) -> None:
    csrf = _csrf(admin, f"/console/users/{CAROL}/metadata")
    answer = admin.post(
        f"/console/users/{CAROL}/metadata",
        data={"csrf_token": csrf, "app_metadata": app_text, "user_metadata": '{"ok": 1}'},
    )
    html = answer.get_data(as_text=True)
    assert answer.status_code == 400 and message in html
    assert 'aria-describedby="app_metadata-hint app_metadata-error"' in html
    assert 'aria-describedby="user_metadata-hint"' in html
    assert app_text[:20].replace('"', "&#34;") in html and "&#34;ok&#34;: 1" in html
    assert _user(app, mail_tenant.id).app_metadata == {"plan": "pro", "seats": 3}


def test_metadata_saved_replaces_the_objects(
    app: Flask, admin: FlaskClient, mail_tenant: TenantHandle
) -> None:
    form = admin.get(f"/console/users/{CAROL}/metadata").get_data(as_text=True)
    assert "&#34;seats&#34;: 3" in form
    saved = admin.post(
        f"/console/users/{CAROL}/metadata",
        data={
            "csrf_token": csrf_of(form),
            "app_metadata": '{"plan": "team", "tags": ["a"]}',
            "user_metadata": '{"theme": "dark"}',
        },
    )
    assert saved.status_code == 303 and saved.headers["Location"].endswith("metadata_saved")
    user = _user(app, mail_tenant.id)
    assert user.app_metadata == {"plan": "team", "tags": ["a"]}  # seats removed
    assert user.user_metadata == {"theme": "dark"}
    assert [e["actor"] for e in _events(admin, mail_tenant, "user.updated")] == ["user:alice-1"]


def test_a_viewer_sees_no_action_and_the_server_refuses_them(
    app: Flask, client: FlaskClient, mail_tenant: TenantHandle
) -> None:
    grant(app, mail_tenant.id, make_alice(app, mail_tenant.id), "console:viewer")
    factories.make_user(app, mail_tenant.id, user_id=CAROL, email="carol@example.com")
    console_sign_in(client, mail_tenant.id)

    page = client.get(f"/console/users/{CAROL}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "carol@example.com" in html
    assert "<button" not in html.split("</header>")[1]  # only the header's sign-out
    assert "/delete" not in html and "/metadata" not in html
    csrf = csrf_of(html)
    posts = {
        "block": {"blocked": "true"},
        "password-reset": {},
        "recovery-codes/delete": {},
        "authentication-methods/x/delete": {},
        "sessions/delete": {},
        "delete": {"confirm": "carol@example.com"},
        "metadata": {"app_metadata": "{}", "user_metadata": "{}"},
    }
    for path, data in posts.items():
        refused = client.post(f"/console/users/{CAROL}/{path}", data={"csrf_token": csrf, **data})
        assert refused.status_code == 403, path
        assert "does not allow" in refused.get_data(as_text=True), path
    for path in ("delete", "metadata"):
        assert client.get(f"/console/users/{CAROL}/{path}").status_code == 403
    assert _user(app, mail_tenant.id) is not None


def test_another_tenants_user_is_a_404_page(
    app: Flask, admin: FlaskClient, mail_tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    stranger = factories.make_user(app, other_tenant.id, user_id="dave-1", email="d@example.com")
    csrf = _csrf(admin)
    assert admin.get(f"/console/users/{stranger}").status_code == 404
    assert admin.get(f"/console/users/{stranger}/delete").status_code == 404
    for path in ("block", "sessions/delete", "delete", "password-reset"):
        answer = admin.post(
            f"/console/users/{stranger}/{path}",
            data={"csrf_token": csrf, "blocked": "true", "confirm": "d@example.com"},
        )
        assert answer.status_code == 404, path
        assert "User not found" in answer.get_data(as_text=True) or "not found" in answer.get_data(
            as_text=True
        )
    assert "d@example.com" not in admin.get("/console/users?q=d").get_data(as_text=True)
    assert _user(app, other_tenant.id, stranger).blocked is False
