"""What a password sign-in costs on the wire and what it still writes (issue 29): one read
and one write statement to PostgreSQL (no BEGIN/COMMIT of its own), the limits in one
Redis round trip; the ID token only when `openid` is asked for; the login counted and
audited as before; and a sign-in racing a block or a password change, on real threads,
refused with nothing written."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text

from app.audit.models import AuditEvent
from app.core.db import db
from app.core.tenancy import Principal, tenant_scope
from app.credentials import service as credential_service
from app.tokens.models import AuthSession, RefreshToken
from app.users import profile as profile_service
from app.users import service as user_service
from bench.roundtrips import traced
from tests import factories
from tests.factories import PASSWORD, TenantHandle, bearer
from tests.oauth_support import assert_oauth_error, claims

READ = "SELECT tenant"
WRITE = "WITH UPDATE user_account, INSERT auth_session, INSERT audit_event, INSERT refresh_token …"


def _grant(username: str, **extra: str) -> dict[str, str]:
    return {"grant_type": "password", "username": username, "password": PASSWORD, **extra}


def _token(client: FlaskClient, tenant_id: str, body: dict[str, str]) -> Any:
    return client.post("/oauth/token", data=body, headers={"X-Tenant-ID": tenant_id})


def _statements(trips: list[list[str]]) -> list[str]:
    return [statement for trip in trips for statement in trip]


def test_a_password_sign_in_is_one_read_and_one_write(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    factories.make_user(app, tenant.id, user_id="ann", username="ann", password=PASSWORD)
    factories.sign_in(client, tenant.id, "ann")  # the signing key is made, then cached
    with app.app_context():
        engine = db.engine
    with traced(engine) as wire:
        answer = _token(client, tenant.id, _grant("ann"))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    # A connection that has not run a statement yet prepares it first (a round trip with
    # no statement): what is sent to run is exactly the two statements.
    assert _statements(wire.postgres) == [READ, WRITE]
    assert len([trip for trip in wire.postgres if trip]) == 2
    # The IP, the login and the account's limits: one pipeline.
    assert wire.redis == 1


def test_the_id_token_comes_only_with_openid(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    factories.make_user(app, tenant.id, user_id="ann", username="ann", password=PASSWORD)
    for extra, expected in (
        ({}, True),  # SPEC §4: a grant that names no scope is answered with one
        ({"scope": "openid"}, True),
        ({"scope": "read:current_user"}, False),
        ({"scope": "offline_access read:current_user"}, False),
    ):
        body = _token(client, tenant.id, _grant("ann", **extra)).get_json()
        assert ("id_token" in body) is expected, (extra, body)
        assert body["access_token"] and body["refresh_token"]
        # A scope does not narrow a grant without an application: everything it holds.
        assert "read:current_user" in body["scope"].split()
    spa = factories.make_application(app, tenant.id)
    with_app = _grant("ann", client_id=spa.client_id)
    assert "id_token" in _token(client, tenant.id, with_app).get_json()  # asks for openid
    body = _token(client, tenant.id, {**with_app, "scope": "email"}).get_json()
    assert "id_token" not in body and body["scope"] == "email"
    body = _token(client, tenant.id, {**with_app, "scope": "openid email"}).get_json()
    assert claims(body["id_token"])["aud"] == spa.client_id


def test_the_login_is_counted_and_audited_and_its_tokens_work(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    user_id = factories.make_user(
        app, tenant.id, user_id="ann", username="ann", password=PASSWORD, email="a@example.com"
    )
    tokens = _token(client, tenant.id, _grant("ann", scope="openid")).get_json()
    session_id = claims(tokens["access_token"])["sid"]
    assert claims(tokens["id_token"])["sid"] == session_id
    shown = client.get(f"/api/v2/users/{user_id}", headers=bearer(tenant.key)).get_json()
    assert shown["logins_count"] == 1 and shown["last_login"] is not None
    assert client.get("/user/profile", headers=bearer(tokens["access_token"])).status_code == 200
    again = client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        headers={"X-Tenant-ID": tenant.id},
    )
    assert again.status_code == 200, again.get_data(as_text=True)
    with app.app_context(), tenant_scope(tenant.id):
        session = db.session.get(AuthSession, session_id)
        assert session is not None and session.user_id == user_id and session.amr == ["pwd"]
        assert session.ip == "127.0.0.1" and session.generation == 0
        events = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "user.signed_in")
        ).all()
        assert [(e.actor, e.user_id, e.ip, e.data) for e in events] == [
            (f"user:{user_id}", user_id, "127.0.0.1", {"method": "password"})
        ]


def _block(user: Any) -> None:
    actor = Principal(tenant_id=user.tenant_id, scopes=frozenset({"*"}), credential_id="k")
    profile_service.set_blocked(actor=actor, user=user, blocked=True)


def _change_password(user: Any) -> None:
    actor = Principal(tenant_id=user.tenant_id, scopes=frozenset({"*"}), credential_id="k")
    credential_service.change_password(actor=actor, user=user, new_password="another one 42!")


def _waiting_on_a_lock(app: Flask) -> bool:
    with app.app_context(), db.engine.connect() as connection:
        waiting = connection.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database() AND query LIKE 'WITH counted%'"
            )
        )
    return bool(waiting)


@pytest.mark.parametrize("change", [_block, _change_password], ids=["block", "password change"])
def test_a_sign_in_racing_a_change_of_the_account_is_refused_with_nothing_written(
    app: Flask, tenant: TenantHandle, change: Callable[[Any], None]
) -> None:
    user_id = factories.make_user(app, tenant.id, user_id="ann", username="ann", password=PASSWORD)
    answers: list[Any] = []
    signing_in = threading.Thread(
        target=lambda: answers.append(_token(app.test_client(), tenant.id, _grant("ann")))
    )
    with app.app_context(), tenant_scope(tenant.id):
        # The change holds the user's row until it commits; the sign-in reads the row as
        # it was (no lock for a read), verifies the password, and its one write waits.
        change(user_service.get_user(user_id))
        db.session.flush()
        signing_in.start()
        assert factories.wait_until(lambda: _waiting_on_a_lock(app)), "the write never waited"
        db.session.commit()
    signing_in.join(timeout=30)
    assert answers, "the sign-in did not answer"
    assert_oauth_error(answers[0], 401, "invalid_grant")
    with app.app_context(), tenant_scope(tenant.id):
        for model in (AuthSession, RefreshToken):
            assert db.session.scalar(select(func.count()).select_from(model)) == 0
        actions = db.session.execute(
            select(AuditEvent.action, AuditEvent.data).where(AuditEvent.action.like("user.sign%"))
        ).all()
        assert [tuple(row) for row in actions] == [
            ("user.signin_failed", {"reason": "account_changed"})
        ]
        assert user_service.get_user(user_id).logins_count == 0
