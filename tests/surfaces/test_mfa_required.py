"""Required MFA on the hosted login (issue 25): a tenant's or an application's
`mfa_required` makes a user without a second factor enrol TOTP in place (QR code and key,
then ten recovery codes shown once); a recovery code works once on the second-factor
page and as the password grant's `otp`, against the one second-factor budget; the
second-factor page offers "Use a recovery code" and "Cancel"."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.applications import service as application_service
from app.core.db import db, utcnow
from app.core.tenancy import tenant_scope
from app.credentials.models import Passkey, RecoveryCode
from app.tenants import service as tenant_service
from tests import factories
from tests.factories import AppHandle, TenantHandle
from tests.oauth_support import (
    PASSWORD,
    audit_events,
    authorize_query,
    claims,
    confirmed_totp,
    exchange,
    form_fields,
    make_alice,
    pkce_pair,
    query_of,
    rate_limited_app,
    sign_in,
    submit_login,
    token_request,
)

ROOMY = {"RATELIMIT_SIGNIN_PER_ACCOUNT": "1000 per minute"}
CODE_SHAPE = re.compile(r"^[a-z2-7]{5}-[a-z2-7]{5}$")


def require_mfa_for_tenant(app: Flask, tenant_id: str) -> None:
    with app.app_context(), tenant_scope(tenant_id):
        tenant_service.update_tenant(tenant_id=tenant_id, settings={"mfa_required": True})
        db.session.commit()


def require_mfa_for_app(app: Flask, handle: AppHandle) -> None:
    with app.app_context(), tenant_scope(handle.tenant_id):
        application_service.update_application(
            tenant_id=handle.tenant_id, client_id=handle.client_id, fields={"mfa_required": True}
        )
        db.session.commit()


@pytest.fixture()
def web(app: Flask, tenant: TenantHandle) -> AppHandle:
    return factories.make_application(app, tenant.id, name="Acme Web")


def open_and_sign_in(browser: FlaskClient, web: AppHandle, login: str = "alice") -> tuple:
    """Open the login page, give the password: (answer, PKCE verifier, request query)."""
    verifier, challenge = pkce_pair()
    query = authorize_query(web, challenge)
    page = browser.get("/authorize", query_string=query)
    assert page.status_code == 200, page.get_data(as_text=True)
    return submit_login(browser, page, login), verifier, query


def shown_secret(html: str) -> str:
    found = re.search(r'<code id="totp-secret"[^>]*>([A-Z2-7 ]+)</code>', html)
    assert found, html
    return found.group(1).replace(" ", "")


def shown_codes(html: str) -> list[str]:
    return re.findall(r"<li><code>([a-z2-7-]+)</code></li>", html)


def post_form(browser: FlaskClient, page: Any, action: str, **fields: str) -> Any:
    return browser.post(action, data={**form_fields(page.get_data(as_text=True)), **fields})


def enrol_through_login(browser: FlaskClient, web: AppHandle) -> tuple[str, list[str], Any, str]:
    """alice signs in to an app requiring MFA and enrols: (secret, recovery codes, the
    codes page, PKCE verifier)."""
    page, verifier, _ = open_and_sign_in(browser, web)
    assert page.status_code == 200
    secret = shown_secret(page.get_data(as_text=True))
    codes_page = post_form(browser, page, "/authorize/enrol", code=factories.totp_code(secret))
    assert codes_page.status_code == 200, codes_page.get_data(as_text=True)
    return secret, shown_codes(codes_page.get_data(as_text=True)), codes_page, verifier


def test_a_tenant_requiring_mfa_enrols_totp_in_place_then_shows_recovery_codes(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle
) -> None:
    make_alice(app, tenant.id)
    require_mfa_for_tenant(app, tenant.id)

    page, verifier, query = open_and_sign_in(client, web)

    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "<h1" in html and "Set up two-step verification" in html and "Acme Web" in html
    assert '<svg width="' in html and 'class="qr"' in html and "<title>" in html
    assert "data:" not in html and "<script" not in html and "style=" not in html
    assert '<label for="code">Code from the app</label>' in html
    secret = shown_secret(html)
    assert len(secret) == 32
    assert "gh_sso_" not in str(page.headers)  # not signed in yet

    wrong = post_form(client, page, "/authorize/enrol", code="000000")
    assert wrong.status_code == 400
    wrong_html = wrong.get_data(as_text=True)
    assert 'role="alert"' in wrong_html and 'data-code="mfa_code_invalid"' in wrong_html
    assert shown_secret(wrong_html) == secret  # the same authenticator, shown again
    assert 'aria-invalid="true"' in wrong_html

    codes_page = post_form(client, wrong, "/authorize/enrol", code=factories.totp_code(secret))

    assert codes_page.status_code == 200, codes_page.get_data(as_text=True)
    codes_html = codes_page.get_data(as_text=True)
    assert "Save these recovery codes" in codes_html
    codes = shown_codes(codes_html)
    assert len(codes) == 10 == len(set(codes)) and all(CODE_SHAPE.match(c) for c in codes)
    assert "gh_sso_" in str(codes_page.headers)  # signed in
    done = post_form(client, codes_page, "/authorize/continue")
    assert done.status_code == 303
    answer = query_of(done.headers["Location"])
    assert answer["state"] == query["state"]
    tokens = exchange(client, web, answer["code"], verifier).get_json()
    assert claims(tokens["id_token"])["amr"] == ["pwd", "otp", "mfa"]
    enrolled = audit_events(client, tenant.headers, "mfa.enrolled")
    assert [e["user_id"] for e in enrolled] == ["alice-1"]
    # Only keyed hashes are stored, never the codes.
    with app.app_context(), tenant_scope(tenant.id):
        stored = list(db.session.scalars(select(RecoveryCode.code_hash)))
    assert len(stored) == 10 and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in stored)
    assert not {c.replace("-", "") for c in codes} & set(stored)

    # Next time: the second-factor step, as for any user with TOTP.
    again, _, _ = open_and_sign_in(app.test_client(), web)
    assert again.status_code == 200 and "Two-step verification" in again.get_data(as_text=True)


def test_an_application_requiring_mfa_enrols_while_another_app_does_not(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle
) -> None:
    make_alice(app, tenant.id)
    plain = factories.make_application(
        app, tenant.id, name="Plain", redirect_uris=["http://127.0.0.1:8766/cb"]
    )
    require_mfa_for_app(app, web)

    direct, _, _ = open_and_sign_in(client, plain)
    assert direct.status_code == 303  # no second factor needed there

    # The browser's sign-in session (password only) does not let it into the MFA app.
    _, challenge = pkce_pair()
    page = client.get("/authorize", query_string=authorize_query(web, challenge))
    assert page.status_code == 200 and 'name="password"' in page.get_data(as_text=True)
    enrolment = submit_login(client, page, "alice")
    assert "Set up two-step verification" in enrolment.get_data(as_text=True)


def test_a_recovery_code_signs_in_once_with_its_own_amr(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle
) -> None:
    make_alice(app, tenant.id)
    require_mfa_for_tenant(app, tenant.id)
    _, codes, _, _ = enrol_through_login(client, web)

    browser = app.test_client()
    step, verifier, _ = open_and_sign_in(browser, web)
    html = step.get_data(as_text=True)
    assert ">Use a recovery code</a>" in html and ">Cancel</button>" in html
    link = re.search(r'href="([^"]+)">Use a recovery code', html).group(1).replace("&amp;", "&")
    recovery_page = browser.get(link)
    assert recovery_page.status_code == 200
    assert '<label for="code">Recovery code</label>' in recovery_page.get_data(as_text=True)

    typed = codes[0].upper().replace("-", " ")  # case, dashes and spaces do not matter
    done = post_form(browser, recovery_page, "/authorize/second-factor", code=typed)

    assert done.status_code == 303, done.get_data(as_text=True)
    tokens = exchange(browser, web, query_of(done.headers["Location"])["code"], verifier)
    assert claims(tokens.get_json()["id_token"])["amr"] == ["pwd", "mfa"]
    used = audit_events(client, tenant.headers, "mfa.recovery_code_used")
    assert [e["data"]["remaining"] for e in used] == [9]

    third = app.test_client()
    step, _, _ = open_and_sign_in(third, web)
    refused = post_form(third, step, "/authorize/second-factor", code=codes[0], method="recovery")
    assert refused.status_code == 401
    refused_html = refused.get_data(as_text=True)
    assert 'role="alert"' in refused_html and "recovery code is not valid" in refused_html
    assert '<label for="code">Recovery code</label>' in refused_html  # the same form again
    failed = audit_events(client, tenant.headers, "user.signin_failed")
    assert [e["data"]["reason"] for e in failed] == ["wrong_recovery_code"]


def test_the_password_grant_takes_a_recovery_code_as_otp(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    make_alice(app, tenant.id)
    secret = confirmed_totp(client, sign_in(client, tenant.id, "alice")["access_token"])
    del secret
    codes = _issue_codes(app, tenant.id)

    first = token_request(
        client, tenant.id, grant_type="password", username="alice", password=PASSWORD, otp=codes[1]
    )
    again = token_request(
        client, tenant.id, grant_type="password", username="alice", password=PASSWORD, otp=codes[1]
    )

    assert first.status_code == 200, first.get_json()
    assert claims(first.get_json()["id_token"])["amr"] == ["pwd", "mfa"]
    assert again.status_code in (400, 401) and again.get_json()["error"] == "invalid_grant"


def _issue_codes(app: Flask, tenant_id: str) -> list[str]:
    from app.credentials import recovery
    from app.users import service as user_service

    with app.app_context(), tenant_scope(tenant_id):
        codes = recovery.issue_first(user_service.get_user("alice-1"))
        db.session.commit()
    return codes


def test_wrong_recovery_codes_and_wrong_totp_codes_share_the_budget(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle
) -> None:
    make_alice(app, tenant.id)
    confirmed_totp(client, sign_in(client, tenant.id, "alice")["access_token"])
    codes = _issue_codes(app, tenant.id)
    step, _, _ = open_and_sign_in(client, web)
    for code in ("000000", "aaaaa-aaaaa", "000000", "bbbbb-bbbbb", "000000"):
        step = post_form(client, step, "/authorize/second-factor", code=code)
        assert step.status_code == 401

    locked = post_form(client, step, "/authorize/second-factor", code=codes[0])

    assert locked.status_code == 429
    assert 'data-code="second_factor_locked"' in locked.get_data(as_text=True)
    with app.app_context(), tenant_scope(tenant.id):
        unused = db.session.scalar(
            select(db.func.count()).select_from(RecoveryCode).where(RecoveryCode.used_at.is_(None))
        )
    assert unused == 10  # the lock refused the right code without spending it


def test_one_recovery_code_used_by_concurrent_requests_signs_in_once(
    app: Flask, client: FlaskClient, database_url: str, tmp_path: Path, tenant: TenantHandle
) -> None:
    """Real threads on PostgreSQL: the UPDATE … WHERE used_at IS NULL lets one through."""
    make_alice(app, tenant.id)
    confirmed_totp(client, sign_in(client, tenant.id, "alice")["access_token"])
    code = _issue_codes(app, tenant.id)[3]
    racers = 5  # the budget's size: each is checked (none is refused by a lock)
    # The same SECRET_KEY as the app that issued the codes (their hashes are keyed with it).
    secret_key = app.config["SECRET_KEY"]
    with rate_limited_app(app, database_url, tmp_path, SECRET_KEY=secret_key, **ROOMY) as limited:
        start = threading.Barrier(racers)
        statuses: list[int] = []

        def run() -> None:
            browser = limited.test_client()
            start.wait()
            answer = token_request(
                browser,
                tenant.id,
                grant_type="password",
                username="alice",
                password=PASSWORD,
                otp=code,
            )
            statuses.append(answer.status_code)

        threads = [threading.Thread(target=run) for _ in range(racers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)

    assert sorted(statuses) == [200, 401, 401, 401, 401], statuses
    used = audit_events(client, tenant.headers, "mfa.recovery_code_used")
    assert len(used) == 1 and used[0]["data"]["remaining"] == 9


def test_cancel_at_the_second_step_tells_the_app_access_denied(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle
) -> None:
    make_alice(app, tenant.id)
    require_mfa_for_tenant(app, tenant.id)
    page, _, query = open_and_sign_in(client, web)
    fields = form_fields(page.get_data(as_text=True))

    cancelled = client.post(
        "/authorize/second-factor/cancel",
        data={"csrf_token": fields["csrf_token"], "pending": fields["pending"], "step": "enrol"},
    )

    assert cancelled.status_code == 302
    answer = query_of(cancelled.headers["Location"])
    assert answer["error"] == "access_denied" and answer["state"] == query["state"]


def test_bad_input_gets_a_clear_page(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle
) -> None:
    make_alice(app, tenant.id)
    require_mfa_for_tenant(app, tenant.id)
    page, _, _ = open_and_sign_in(client, web)

    forged = client.get("/authorize/second-factor", query_string={"pending": "x" * 5000})
    assert forged.status_code == 400 and "form_expired" in forged.get_data(as_text=True)
    empty = post_form(client, page, "/authorize/enrol", code="")
    assert empty.status_code == 400 and 'role="alert"' in empty.get_data(as_text=True)
    long = post_form(client, page, "/authorize/enrol", code="1" * 500)
    assert long.status_code == 400
    no_csrf = client.post("/authorize/enrol", data={"pending": "x", "code": "123456"})
    assert no_csrf.status_code == 400
    cancel = client.post("/authorize/second-factor/cancel", data={"pending": "garbage"})
    assert cancel.status_code in (400, 403)


def test_a_user_with_only_a_passkey_gets_the_second_step_not_the_enrolment(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle
) -> None:
    make_alice(app, tenant.id)
    require_mfa_for_tenant(app, tenant.id)
    with app.app_context(), tenant_scope(tenant.id):
        db.session.add(
            Passkey(
                id="pk_1",
                tenant_id=tenant.id,
                user_id="alice-1",
                credential_id="cred",
                public_key="key",
                device_type="multi_device",
                name="Phone",
                created_at=utcnow(),
                transports=[],
            )
        )
        db.session.commit()
    codes = _issue_codes(app, tenant.id)

    step, verifier, _ = open_and_sign_in(client, web)

    html = step.get_data(as_text=True)
    assert step.status_code == 200 and "Two-step verification" in html
    assert "Set up two-step verification" not in html and "Authentication code" not in html
    assert ">Use a recovery code</a>" in html and ">Cancel</button>" in html
    link = re.search(r'href="([^"]+)">Use a recovery code', html).group(1).replace("&amp;", "&")
    recovery_page = client.get(link)
    done = post_form(client, recovery_page, "/authorize/second-factor", code=codes[0])
    assert done.status_code == 303, done.get_data(as_text=True)
