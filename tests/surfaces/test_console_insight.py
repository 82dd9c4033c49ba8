"""The console's Dashboard, Audit log and Settings pages over HTTP: the dashboard's
figures (user count, today's sign-ins in the chart and its table, delivery health), the
audit log's filters, paging and CSV export (the API's CSV), the settings form (the same
checks as PATCH /tenants/{id}, refused values shown again, the change audited), a
viewer's read-only view with the server refusing its POST, and tenants kept apart."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.api.console import audit_routes
from app.core.db import db
from app.core.tenancy import tenant_scope
from app.tenants import service as tenant_service
from app.users import stats as user_stats
from tests import factories
from tests.console_support import console_sign_in, csrf_of, grant
from tests.factories import TenantHandle
from tests.oauth_support import PASSWORD, make_alice

ALICE = "alice-1"


@pytest.fixture()
def admin(app: Flask, client: FlaskClient, tenant: TenantHandle) -> str:
    """alice, console admin, signed in to the console on `client`."""
    grant(app, tenant.id, make_alice(app, tenant.id))
    assert console_sign_in(client, tenant.id).status_code == 303
    return ALICE


def _events(client: FlaskClient, **filters: str) -> str:
    """The audit page's table body for these filters (the action list names every action)."""
    answer = client.get("/console/audit", query_string=filters)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_data(as_text=True).split("<tbody>")[1].split("</tbody>")[0]


def _settings(app: Flask, tenant_id: str) -> dict:
    with app.app_context():
        return tenant_service.tenant_settings(tenant_service.get_tenant(tenant_id))


def test_the_dashboard_shows_users_todays_sign_ins_and_delivery_health(
    app: Flask, client: FlaskClient, tenant: TenantHandle, admin: str
) -> None:
    bob = factories.make_user(app, tenant.id, user_id="bob-1", email="bob@example.com")
    factories.record_events(
        app, tenant.id, [{"action": "user.created", "actor": "api_key:k", "user_id": bob}]
    )
    # A failed sign-in and a sign-in through the token endpoint, both today.
    bad = {"grant_type": "password", "username": "alice", "password": "wrong-password"}
    assert client.post("/oauth/token", json=bad, headers={"X-Tenant-ID": tenant.id}).status_code
    factories.sign_in(client, tenant.id, "alice", PASSWORD)

    answer = client.get("/console")
    html = answer.get_data(as_text=True)
    assert answer.status_code == 200
    assert re.search(r'id="user-count">2<', html)
    # alice signed in twice today (the console's own sign-in, then the token endpoint).
    assert re.search(r'id="signins-today">2<', html)
    today = datetime.now(UTC).date()
    row = f'<th scope="row">{today.isoformat()}</th><td>2</td><td>1</td><td>1</td></tr>'
    assert row in html
    assert html.count('<th scope="row">20') == 30  # 30 days in the table
    assert html.count('<rect class="bar') == 30
    assert f"{today.strftime('%d %b')}: sign-ins 2, failed sign-ins 1, sign-ups 1" in html
    assert '<rect class="bar today"' in html and "<details>" in html
    assert "<caption>Mail</caption>" in html and "<caption>Webhooks</caption>" in html
    assert "<script" not in html


def test_the_user_count_is_an_estimate_past_the_exact_limit(
    app: Flask, tenant: TenantHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(3):
        factories.make_user(app, tenant.id, user_id=f"u-{n}", email=f"u{n}@example.com")
    with app.app_context(), tenant_scope(tenant.id):
        assert user_stats.count_users(tenant_id=tenant.id) == user_stats.UserCount(3, True)
        monkeypatch.setattr(user_stats, "EXACT_UP_TO", 2)
        db.session.execute(db.text("ANALYZE user_account"))
        counted = user_stats.count_users(tenant_id=tenant.id)
        assert counted.exact is False and counted.value >= 3


def test_the_audit_log_filters_by_actor_action_user_and_time(
    app: Flask, client: FlaskClient, tenant: TenantHandle, admin: str
) -> None:
    bob = factories.make_user(app, tenant.id, user_id="bob-1", email="bob@example.com")
    csrf = csrf_of(client.get("/console/members").get_data(as_text=True))
    granted = client.post(
        "/console/members",
        data={"csrf_token": csrf, "email": "bob@example.com", "role": "console:viewer"},
    )
    assert granted.status_code == 303
    long_ago = datetime.now(UTC) - timedelta(days=40)
    factories.record_events(
        app,
        tenant.id,
        [{"action": "user.blocked", "actor": "cli", "user_id": bob, "at": long_ago}],
    )

    mine = _events(client, actor=f"user:{admin}")
    assert "console.member_granted" in mine and "user.blocked" not in mine
    assert "user:alice-1" in mine and "cli" not in mine
    everything = _events(client)
    assert "user.signed_in" in everything and "user.blocked" in everything
    blocked = _events(client, action="user.blocked", user_id=bob)
    assert blocked.count("<tr>") == 1 and "user.blocked" in blocked
    since = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    recent = _events(client, **{"from": since})
    assert "console.member_granted" in recent and "user.blocked" not in recent
    shown = client.get("/console/audit", query_string={"from": since}).get_data(as_text=True)
    assert f'value="{since}"' in shown  # the filter is shown as typed


def test_the_audit_log_pages_newest_first_with_a_cursor(
    app: Flask,
    client: FlaskClient,
    tenant: TenantHandle,
    admin: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(audit_routes, "PAGE_SIZE", 2)
    start = datetime.now(UTC) - timedelta(hours=1)
    factories.record_events(
        app,
        tenant.id,
        [
            {
                "action": "user.blocked",
                "actor": "cli",
                "user_id": f"u-{n}",
                "at": start + timedelta(minutes=n),
            }
            for n in range(5)
        ],
    )
    seen = []
    path = "/console/audit?action=user.blocked"
    for _ in range(3):
        html = client.get(path).get_data(as_text=True)
        seen += re.findall(r'user_id=(u-\d)"', html)
        older = re.search(r'href="([^"]+)">Older events<', html)
        if older is None:
            break
        path = older.group(1).replace("&amp;", "&")
        assert "action=user.blocked" in path and "cursor=" in path
    assert seen == ["u-4", "u-3", "u-2", "u-1", "u-0"]


def test_bad_audit_filters_show_the_form_again_with_errors(
    client: FlaskClient, tenant: TenantHandle, admin: str
) -> None:
    answer = client.get("/console/audit", query_string={"from": "yesterday", "actor": "cli"})
    html = answer.get_data(as_text=True)
    assert answer.status_code == 400
    assert 'id="from-error"' in html and 'aria-describedby="from-error"' in html
    assert 'aria-invalid="true"' in html and 'value="cli"' in html and 'value="yesterday"' in html
    unknown = client.get("/console/audit", query_string={"action": "no.such"})
    assert unknown.status_code == 400 and "Pick an action" in unknown.get_data(as_text=True)
    backwards = client.get(
        "/console/audit", query_string={"from": "2026-02-01T00:00", "to": "2026-01-01T00:00"}
    )
    assert backwards.status_code == 400
    assert "from must not be after to" in backwards.get_data(as_text=True)
    assert client.get("/console/audit", query_string={"cursor": "garbage"}).status_code == 400


def test_the_audit_csv_is_the_filtered_set_as_the_api_exports_it(
    app: Flask, client: FlaskClient, tenant: TenantHandle, admin: str, root_headers: dict
) -> None:
    factories.record_events(
        app,
        tenant.id,
        [
            {"action": "user.blocked", "actor": "cli", "user_id": "u-1", "data": {"note": "=1+1"}},
            {"action": "user.blocked", "actor": "root", "user_id": "u-2"},
        ],
    )
    filters = {"actor": "cli", "action": "user.blocked"}
    answer = client.get("/console/audit.csv", query_string=filters)
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    assert answer.headers["Content-Disposition"] == 'attachment; filename="audit-events.csv"'
    rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
    assert [(r["action"], r["actor"], r["user_id"]) for r in rows] == [
        ("user.blocked", "cli", "u-1")
    ]
    api = client.get(
        "/audit-events.csv",
        query_string=filters,
        headers={**root_headers, "X-Tenant-ID": tenant.id},
    )
    assert api.get_data(as_text=True) == answer.get_data(as_text=True)
    assert rows[0]["data"] == '{"note":"=1+1"}'


def test_an_admin_saves_the_settings_and_the_change_is_audited(
    app: Flask, client: FlaskClient, tenant: TenantHandle, admin: str
) -> None:
    page = client.get("/console/settings")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Save settings" in html
    form = {
        "csrf_token": csrf_of(html),
        "branding.display_name": "Acme",
        "branding.primary_color": "#123abc",
        "branding.logo_url": "",
        "branding.support_url": "https://help.example.com/",
        "signup_enabled": "on",
        "signup_fields": ["name", "nickname"],
        "password_policy.min_length": "12",
        "mfa_required": "on",
    }
    saved = client.post("/console/settings", data=form)
    assert saved.status_code == 303
    assert "The settings were saved." in client.get(saved.headers["Location"]).get_data(
        as_text=True
    )
    settings = _settings(app, tenant.id)
    assert settings["branding"] == {
        "display_name": "Acme",
        "logo_url": None,
        "primary_color": "#123abc",
        "support_url": "https://help.example.com/",
    }
    assert settings["signup_enabled"] is True and settings["signup_fields"] == ["name", "nickname"]
    assert settings["password_policy"] == {"min_length": 12, "block_common": False}
    assert settings["mfa_required"] is True and settings["console_require_mfa"] is False
    events = _events(client, action="tenant.settings_changed")
    assert f"user:{admin}" in events
    for name in ("branding", "mfa_required", "password_policy", "signup_enabled"):
        assert name in events
    # Saving again without a change records nothing new.
    assert client.post("/console/settings", data=form).status_code == 303
    assert _events(client, action="tenant.settings_changed").count("<tr>") == 1


def test_bad_settings_show_the_form_again_and_save_nothing(
    app: Flask, client: FlaskClient, tenant: TenantHandle, admin: str
) -> None:
    before = _settings(app, tenant.id)
    csrf = csrf_of(client.get("/console/settings").get_data(as_text=True))
    answer = client.post(
        "/console/settings",
        data={
            "csrf_token": csrf,
            "branding.display_name": "Still here",
            "branding.primary_color": "red",
            "branding.logo_url": "http://insecure.example.com/logo.png",
            "password_policy.min_length": "0",
            "signup_fields": ["shoe_size"],
            "mfa_required": "on",
        },
    )
    html = answer.get_data(as_text=True)
    assert answer.status_code == 400
    assert "Nothing was saved" in html
    for field in ("branding-primary_color", "branding-logo_url", "password_policy-min_length"):
        assert f'id="{field}-error"' in html
        assert re.search(f'aria-describedby="[^"]*{field}-error" aria-invalid="true"', html)
    assert 'id="signup_fields-error"' in html
    assert 'value="Still here"' in html and 'value="red"' in html and 'value="0"' in html
    assert 'id="mfa_required" name="mfa_required" type="checkbox" value="on" checked' in html
    assert _settings(app, tenant.id) == before
    no_csrf = client.post("/console/settings", data={"mfa_required": "on"})
    assert no_csrf.status_code == 403
    assert _settings(app, tenant.id) == before


def test_a_viewer_reads_every_page_and_the_server_refuses_its_settings(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    grant(app, tenant.id, make_alice(app, tenant.id), "console:viewer")
    console_sign_in(client, tenant.id)
    for path in ("/console", "/console/audit", "/console/audit.csv"):
        assert client.get(path).status_code == 200, path
    page = client.get("/console/settings")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Save settings" not in html and "<fieldset disabled>" in html
    before = _settings(app, tenant.id)
    refused = client.post(
        "/console/settings", data={"csrf_token": csrf_of(html), "mfa_required": "on"}
    )
    assert refused.status_code == 403 and "does not allow" in refused.get_data(as_text=True)
    assert _settings(app, tenant.id) == before


def test_another_tenants_events_and_settings_stay_apart(
    app: Flask, client: FlaskClient, tenant: TenantHandle, other_tenant: TenantHandle, admin: str
) -> None:
    factories.record_events(
        app, other_tenant.id, [{"action": "user.blocked", "actor": "cli", "user_id": "theirs"}]
    )
    listed = client.get("/console/audit", query_string={"user_id": "theirs"})
    assert listed.status_code == 200 and "No events match" in listed.get_data(as_text=True)
    csv_text = client.get("/console/audit.csv").get_data(as_text=True)
    assert "theirs" not in csv_text
    other = client.get("/console/settings", query_string={"tenant": other_tenant.id})
    assert other.status_code == 302 and other.headers["Location"].startswith("/authorize?")
