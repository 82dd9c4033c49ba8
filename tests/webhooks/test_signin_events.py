"""A sign-in's one write (app.tokens.login) joins the transaction of what the sign-in wrote
before it: a code that confirms a started TOTP enrolment raises `user.mfa_enrolled`, whose
outbox row the audit listener writes in the request's transaction, and the session, the
login count and `user.signed_in` commit with it (one BEGIN, one COMMIT)."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from app.core.db import db
from bench.roundtrips import traced
from tests import factories
from tests.factories import PASSWORD, bearer, totp_code
from tests.oauth_support import audit_events
from tests.webhook_receiver import Receiver
from tests.webhooks.support import WebhookApi


def test_a_sign_in_that_confirms_a_code_writes_the_event_and_the_login_in_one_transaction(
    app: Flask, client: FlaskClient, webhooks: WebhookApi, receiver: Receiver
) -> None:
    tenant = webhooks.tenant
    endpoint = webhooks.register(receiver.url, event_types=["user.mfa_enrolled"])
    factories.make_user(
        app, tenant.id, user_id="tess", username="tess", password=PASSWORD,
        require_twofactor_auth=True,
    )  # fmt: skip
    access = factories.sign_in(client, tenant.id, "tess")["access_token"]  # no factor yet
    started = client.post("/users/me/mfa/totp", headers=bearer(access))
    assert started.status_code == 201, started.get_data(as_text=True)
    code = totp_code(started.get_json()["secret"])
    grant = {"grant_type": "password", "username": "tess", "password": PASSWORD, "otp": code}
    with app.app_context():
        engine = db.engine
    with traced(engine) as wire:
        answer = client.post("/oauth/token", data=grant, headers={"X-Tenant-ID": tenant.id})
    assert answer.status_code == 200, answer.get_data(as_text=True)

    sent = [statement for trip in wire.postgres for statement in trip]
    begin, commit = sent.index("BEGIN"), sent.index("COMMIT")
    assert sent.count("BEGIN") == 1 and sent.count("COMMIT") == 1, sent
    written = sent[begin:commit]
    assert "INSERT webhook_message" in written, sent
    assert any(s.startswith("WITH UPDATE user_account") for s in written), sent
    assert [m["event_type"] for m in webhooks.messages(endpoint["id"])] == ["user.mfa_enrolled"]
    key = {"Authorization": f"Bearer {tenant.key}"}
    assert len(audit_events(client, key, "mfa.enrolled")) == 1
    signed_in = audit_events(client, key, "user.signed_in")
    assert [event["data"]["method"] for event in signed_in] == ["password", "password"]
