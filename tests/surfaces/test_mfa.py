"""TOTP second factor: enrol and confirm on the me surface, the password grant's `otp`, the
enrolments and their removal through the Auth0 SDK, single-use codes, secrets encrypted."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest
from auth0.management.core.api_error import ApiError
from sqlalchemy import select

from app.core.db import db
from app.core.tenancy import tenant_scope
from app.credentials.models import MfaEnrolment
from tests import factories
from tests.factories import PASSWORD, auth0_client, bearer, totp_code
from tests.oauth_support import assert_oauth_error, audit_events, token_request


@pytest.fixture(scope="module")
def base_url(app) -> Iterator[str]:
    with factories.serve(app) as url:
        yield url


def password_grant(client, tenant_id: str, **extra: str):
    return token_request(
        client, tenant_id, grant_type="password", username="tess", password=PASSWORD, **extra
    )


def enrol(client, token: str) -> str:
    """Start a TOTP enrolment as the user; return its secret."""
    started = client.post("/users/me/mfa/totp", headers=bearer(token))
    assert started.status_code == 201, started.get_data(as_text=True)
    return started.get_json()["secret"]


def next_step_code(secret: str) -> str:
    """The code of the next time-step: accepted (one step of drift) and later than a
    code of the current step, whichever step a request lands in."""
    return totp_code(secret, time.time() + 30)


@pytest.fixture()
def tess(app, client, tenant) -> str:
    factories.make_user(
        app, tenant.id, user_id="tess", username="tess", email="tess@example.com", password=PASSWORD
    )
    return factories.sign_in(client, tenant.id, "tess", PASSWORD)["access_token"]


def test_enrol_confirm_then_signin_needs_otp_until_removed(app, client, base_url, tenant, tess):
    started = client.post("/users/me/mfa/totp", headers=bearer(tess))
    assert started.status_code == 201
    body = started.get_json()
    assert body["status"] == "pending" and body["type"] == "totp"
    uri = urlparse(body["otpauth_uri"])
    assert uri.scheme == "otpauth" and uri.netloc == "totp"
    assert parse_qs(uri.query)["secret"] == [body["secret"]]
    assert parse_qs(uri.query)["issuer"] == ["acme"]
    secret = body["secret"]

    # Pending: sign-in still works without a code.
    assert password_grant(client, tenant.id).status_code == 200
    sdk = auth0_client(base_url, tenant.key)
    [pending] = sdk.users.enrollments.get("tess")
    assert pending.status == "pending" and pending.auth_method == "authenticator"

    wrong = client.post("/users/me/mfa/totp/confirm", json={"code": "000000"}, headers=bearer(tess))
    assert wrong.status_code == 400 and wrong.get_json()["error"] == "MFA_CODE_INVALID"
    used = totp_code(secret)
    confirmed = client.post("/users/me/mfa/totp/confirm", json={"code": used}, headers=bearer(tess))
    assert confirmed.status_code == 200, confirmed.get_data(as_text=True)
    assert confirmed.get_json()["status"] == "confirmed"
    [enrolment] = sdk.users.enrollments.get("tess")
    assert enrolment.status == "confirmed" and enrolment.enrolled_at is not None

    assert_oauth_error(password_grant(client, tenant.id), 403, "mfa_required")
    assert_oauth_error(password_grant(client, tenant.id, otp="123456"), 401, "invalid_grant")
    # The code that confirmed the enrolment was used: it does not sign in.
    assert_oauth_error(password_grant(client, tenant.id, otp=used), 401, "invalid_grant")
    code = next_step_code(secret)
    assert password_grant(client, tenant.id, otp=code).status_code == 200
    # ...and a code works once.
    assert_oauth_error(password_grant(client, tenant.id, otp=code), 401, "invalid_grant")
    assert sdk.users.enrollments.get("tess")[0].last_auth is not None

    sdk.users.multifactor.delete_provider("tess", "google-authenticator")
    assert sdk.users.enrollments.get("tess") == []
    assert password_grant(client, tenant.id).status_code == 200
    # Nothing enrolled: still 204.
    sdk.users.multifactor.delete_provider("tess", "google-authenticator")
    sdk.users.multifactor.delete_provider("tess", "duo")

    headers = {"Authorization": f"Bearer {tenant.key}"}
    assert [e["target"] for e in audit_events(client, headers, "mfa.enrolled")] == [body["id"]]
    assert [e["target"] for e in audit_events(client, headers, "mfa.removed")] == [body["id"]]
    failed = audit_events(client, headers, "user.signin_failed")
    assert {e["data"]["reason"] for e in failed} == {"wrong_otp"}


def test_require_twofactor_with_a_started_enrolment_needs_otp(app, client, tenant, tess):
    secret = enrol(client, tess)
    factories_update(app, tenant.id, "tess", require_twofactor_auth=True)
    assert_oauth_error(password_grant(client, tenant.id), 403, "mfa_required")
    assert password_grant(client, tenant.id, otp=next_step_code(secret)).status_code == 200
    with app.app_context(), tenant_scope(tenant.id):
        assert db.session.scalar(select(MfaEnrolment.status)) == "confirmed"


def test_require_twofactor_without_enrolment_lets_the_user_enrol(app, client, tenant):
    factories.make_user(
        app,
        tenant.id,
        user_id="tess",
        username="tess",
        password=PASSWORD,
        require_twofactor_auth=True,
    )
    assert password_grant(client, tenant.id).status_code == 200


def factories_update(app, tenant_id: str, user_id: str, **changes) -> None:
    from app.users import service as user_service

    with app.app_context(), tenant_scope(tenant_id):
        user_service.update_user(user=user_service.get_user(user_id), changes=changes, actor="test")
        db.session.commit()


def test_enrolment_rules_and_bad_input(app, client, base_url, tenant, tess):
    headers = bearer(tess)
    nothing = client.post("/users/me/mfa/totp/confirm", json={"code": "123456"}, headers=headers)
    assert nothing.status_code == 404
    first = enrol(client, tess)
    second = enrol(client, tess)  # restarting a pending enrolment replaces its secret
    assert first != second
    stale = client.post(
        "/users/me/mfa/totp/confirm", json={"code": totp_code(first)}, headers=headers
    )
    assert stale.status_code == 400
    for bad in ({}, {"code": "12345"}, {"code": 123456}, {"code": "123456", "x": 1}):
        response = client.post("/users/me/mfa/totp/confirm", json=bad, headers=headers)
        assert response.status_code == 400 and response.get_json()["error"] == "INVALID_BODY"
    ok = client.post(
        "/users/me/mfa/totp/confirm", json={"code": totp_code(second)}, headers=headers
    )
    assert ok.status_code == 200
    again = client.post("/users/me/mfa/totp", headers=headers)
    assert again.status_code == 409 and again.get_json()["error"] == "MFA_ALREADY_ENROLLED"
    api_key = client.post("/users/me/mfa/totp", headers=tenant.headers)
    assert api_key.status_code == 403
    with pytest.raises(ApiError) as caught:
        auth0_client(base_url, tenant.key).users.multifactor.delete_provider("tess", "sms")
    assert caught.value.status_code == 400 and caught.value.body["errorCode"] == "invalid_uri"


def test_totp_secret_is_encrypted_and_bound_to_its_row(app, client, tenant, tess):
    secret = enrol(client, tess)
    with app.app_context(), tenant_scope(tenant.id):
        row = db.session.scalar(select(MfaEnrolment))
        assert secret not in row.secret_encrypted and row.secret_encrypted.startswith("v1.")
        from app.core import security

        with pytest.raises(security.KeyRingError):
            security.keyring().decrypt(row.secret_encrypted, b"mfa:elsewhere")
    # The secret still verifies codes after a round trip through the database.
    assert pyotp.TOTP(secret).now() == totp_code(secret)


def test_user_removes_its_own_factor_with_the_sdk(client, base_url, tenant, tess):
    secret = enrol(client, tess)
    confirmed = client.post(
        "/users/me/mfa/totp/confirm", json={"code": totp_code(secret)}, headers=bearer(tess)
    )
    assert confirmed.status_code == 200
    sdk = auth0_client(base_url, tess)
    assert [e.status for e in sdk.users.enrollments.get("tess")] == ["confirmed"]
    sdk.users.multifactor.delete_provider("tess", "google-authenticator")
    assert sdk.users.enrollments.get("tess") == []
    assert password_grant(client, tenant.id).status_code == 200


def test_changing_the_second_factor_needs_a_recent_sign_in(app, client, base_url, tenant, tess):
    """Issue 22, item 1: a refreshed token whose sign-in is older than
    REAUTH_MAX_AGE_SECONDS removed TOTP and enrolled a new one."""
    stale = factories.stale_session(app, client, tenant.id, "tess", PASSWORD)["access_token"]
    secret = enrol(client, tess)
    confirmed = client.post(
        "/users/me/mfa/totp/confirm", json={"code": totp_code(secret)}, headers=bearer(tess)
    )
    assert confirmed.status_code == 200

    removed = auth0_client(base_url, stale).users.multifactor.delete_provider
    with pytest.raises(ApiError) as refused:
        removed("tess", "google-authenticator")
    assert refused.value.status_code == 401
    assert refused.value.body["errorCode"] == "reauthentication_required"
    assert [e.status for e in auth0_client(base_url, tenant.key).users.enrollments.get("tess")] == [
        "confirmed"
    ]
    for path, body in (
        ("/users/me/mfa/totp", None),
        ("/users/me/mfa/totp/confirm", {"code": "123456"}),
    ):
        answer = client.post(path, json=body, headers=bearer(stale))
        factories.assert_me_error(answer, 401, "REAUTHENTICATION_REQUIRED")
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert audit_events(client, tenant.headers, "mfa.removed") == []

    # A fresh sign-in (with its code) may; so may an API key, which is no self-service.
    fresh = password_grant(client, tenant.id, otp=next_step_code(secret))
    assert fresh.status_code == 200, fresh.get_data(as_text=True)
    auth0_client(base_url, fresh.get_json()["access_token"]).users.multifactor.delete_provider(
        "tess", "google-authenticator"
    )
    assert enrol(client, fresh.get_json()["access_token"])
    auth0_client(base_url, tenant.key).users.multifactor.delete_provider(
        "tess", "google-authenticator"
    )
    assert password_grant(client, tenant.id).status_code == 200


def test_recovery_codes_are_removed_through_the_multifactor_route(
    app, client, base_url, tenant, tess
):
    """An administrator's reset of a user who lost their codes: the console's "Remove
    recovery codes" is this public route (provider `recovery-code`)."""
    from app.credentials import recovery
    from app.users import service as user_service

    with app.app_context(), tenant_scope(tenant.id):
        codes = recovery.issue_first(user_service.get_user("tess"))
        db.session.commit()
    assert len(codes) == 10
    sdk = auth0_client(base_url, tenant.key)
    sdk.users.multifactor.delete_provider("tess", "recovery-code")
    with app.app_context(), tenant_scope(tenant.id):
        assert recovery.remaining(user_service.get_user("tess")) == 0
    [removed] = audit_events(client, tenant.headers, "mfa.removed")
    assert removed["user_id"] == "tess"
    assert removed["data"] == {"provider": "recovery-code", "codes": 10}
    # Nothing left: still 204, and nothing more is recorded.
    sdk.users.multifactor.delete_provider("tess", "recovery-code")
    assert len(audit_events(client, tenant.headers, "mfa.removed")) == 1
