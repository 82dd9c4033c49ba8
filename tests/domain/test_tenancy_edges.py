"""Tenancy at the edge and the pieces that replace decisions made inside domain code
(issue 23): a tenant's task runs in the scope its first argument names; what must be kept
when a request fails is written on purpose in its own short transaction
(`independent_write`), in the caller's tenant; domain code raises domain codes that the
me API's renderer maps to its keys; `Unauthenticated` names its scheme and the surfaces
build the `WWW-Authenticate` challenge from it."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.audit import service as audit_service
from app.audit import tasks as audit_tasks
from app.core import security
from app.core.db import db, independent_write
from app.core.errors import Invalid, Unauthenticated, challenge_headers
from app.core.jobs import send_task
from app.core.tenancy import TenancyError, tenant_scope
from app.credentials import reset as password_reset
from app.mail import service as mail_service
from tests import factories
from tests.factories import TenantHandle, assert_me_error
from tests.oauth_support import audit_events


def _targets(client: FlaskClient, tenant: TenantHandle) -> list[str]:
    return [event["target"] for event in audit_events(client, tenant.headers, "user.created")]


def test_an_independent_write_is_kept_when_the_request_rolls_back(
    app: Flask, client: FlaskClient, tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    with app.app_context(), tenant_scope(tenant.id):
        audit_service.record(action="user.created", actor="test", target="rolled-back")
        with independent_write() as session:
            kept = audit_service.record(
                action="user.created", actor="test", target="kept", session=session
            )
        assert kept.tenant_id == tenant.id  # the caller's scope applies to the new session
        db.session.rollback()  # the request fails after writing on purpose
    assert _targets(client, tenant) == ["kept"]
    assert _targets(client, other_tenant) == []


def test_an_independent_write_outside_a_tenant_scope_keeps_nothing(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    with app.app_context():
        with pytest.raises(TenancyError), independent_write() as session:
            audit_service.record(
                action="user.created", actor="test", target="nowhere", session=session
            )
    assert _targets(client, tenant) == []


def test_a_tenant_task_runs_in_the_tenant_its_first_argument_names(
    app: Flask,
    client: FlaskClient,
    tenant: TenantHandle,
    other_tenant: TenantHandle,
    celery_worker: object,
) -> None:
    with app.app_context():
        # Queued from no scope at all: the worker enters the tenant itself.
        send_task(
            audit_tasks.record_event,
            tenant.id,
            {"action": "user.created", "actor": "worker", "target": "from-the-worker"},
        )
    assert factories.wait_until(lambda: _targets(client, tenant)) == ["from-the-worker"]
    assert _targets(client, other_tenant) == []


def test_the_reset_service_raises_domain_codes(app: Flask, tenant: TenantHandle) -> None:
    with app.app_context(), tenant_scope(tenant.id):
        with pytest.raises(Invalid) as refused:
            password_reset.request_reset(
                tenant_id=tenant.id, username="a", email=None, host="evil.example", ip=None
            )
        assert refused.value.code == "reset_host_not_allowed"
        with pytest.raises(Invalid) as forged:
            password_reset.confirm_reset(token="forged", password="x" * 12, ip=None)
        assert forged.value.code == "reset_token_invalid"
        with pytest.raises(Invalid) as no_mail:
            mail_service.mail_settings(tenant.id)  # no Postmark token outside development
        assert no_mail.value.code == "mail_not_configured"


def test_a_reset_confirmation_runs_in_the_tenant_its_token_names(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    claims = {"tid": tenant.id, "uid": "nobody", "rid": "no-request", "fp": "-"}
    with app.app_context():
        token = security.signed_dumps(app.config["SECRET_KEY"], password_reset.PURPOSE, claims)
        assert password_reset.token_tenant(token) == tenant.id
        assert password_reset.token_tenant("forged") is None
    # The edge enters the token's tenant; the service then refuses the unknown request in
    # the me API's key (a 500 here would mean a tenant-scoped read outside a scope).
    response = client.post(
        "/auth/password-reset/confirm", json={"token": token, "password": "a-new-password"}
    )
    assert_me_error(response, 400, "INVALID_TOKEN")


def test_unauthenticated_names_its_scheme_and_the_surface_builds_the_challenge(
    client: FlaskClient,
) -> None:
    assert challenge_headers(Unauthenticated()) == {"WWW-Authenticate": "Bearer"}
    basic = Unauthenticated("no", code="invalid_client", scheme="Basic", realm="gatehouse")
    assert challenge_headers(basic) == {"WWW-Authenticate": 'Basic realm="gatehouse"'}
    token = Unauthenticated(code="invalid_token", error="invalid_token")
    assert challenge_headers(token) == {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    assert token.headers == {}  # domain code carries the scheme, never the header
    # A refused token over HTTP: tokens/signing.py raises, the user API's handler writes.
    response = client.get("/user/profile", headers={"Authorization": "Bearer not-a-jwt"})
    factories.assert_error(response, 401, "invalid_token")
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
