"""Mail delivery guarantees with the real worker: retries on Postmark 5xx with back-off, no
retry on 4xx, a bounded number of attempts, at most one send per delivery row, no mail
lost when the broker is down at request time, and the development outbox."""

from __future__ import annotations

import email
import email.policy
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import flask_migrate
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from app import create_app
from app.core.db import db, utcnow
from app.core.tenancy import tenant_scope
from app.mail import service as mail_service
from app.mail.models import EmailDelivery
from tests import factories
from tests.conftest import make_config
from tests.factories import TenantHandle
from tests.postmark_fake import FakePostmark

HOST = "app.example.com"
LINK_PREFIX = f"https://{HOST}/reset-password?token="


@pytest.fixture()
def mail_tenant(app: Flask) -> TenantHandle:
    return factories.make_tenant(
        app,
        "mailco",
        email_from="noreply@example.com",
        postmark_server_token="pm-token-1",
        password_reset_hosts=[HOST],
    )


@pytest.fixture()
def joe(app: Flask, mail_tenant: TenantHandle) -> str:
    return factories.make_user(
        app, mail_tenant.id, user_id="u-joe", username="joe", email="joe@example.com"
    )


def ask_reset(client: FlaskClient, tenant_id: str, address: str = "joe@example.com") -> None:
    response = client.post(
        "/auth/password-reset",
        json={"email": address, "host": HOST},
        headers={"X-Tenant-ID": tenant_id},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"msg": "ok"}


def settled_delivery(app: Flask, tenant_id: str, status: str) -> Any:
    """The tenant's only delivery row, once the worker has brought it to `status`."""

    def settled() -> Any:
        rows = factories.email_deliveries(app, tenant_id)
        return rows[0] if len(rows) == 1 and rows[0].status == status else None

    row = factories.wait_until(settled)
    rows = factories.email_deliveries(app, tenant_id)
    assert row is not None, [(r.status, r.attempts, r.last_error) for r in rows]
    return row


def test_5xx_answers_are_retried_until_accepted(
    app, client, mail_tenant, joe, postmark, celery_worker
):
    postmark.answer_with(500, 500)
    ask_reset(client, mail_tenant.id)
    row = settled_delivery(app, mail_tenant.id, "sent")
    assert postmark.attempts() == 3
    [mail] = postmark.mails()
    assert mail.body["To"] == "joe@example.com"
    assert row.attempts == 3
    assert row.provider_message_id
    assert row.sent_at is not None
    assert row.last_error is None


def test_a_4xx_answer_fails_the_row_without_retry(
    app, client, mail_tenant, joe, postmark, celery_worker
):
    postmark.answer_with(422)
    ask_reset(client, mail_tenant.id)
    row = settled_delivery(app, mail_tenant.id, "failed")
    assert row.attempts == 1
    assert row.last_error
    assert row.provider_message_id is None and row.sent_at is None
    assert postmark.attempts() == 1
    assert postmark.mails() == []


def test_attempts_stop_at_mail_max_attempts(app, client, mail_tenant, joe, postmark, celery_worker):
    limit = app.config["MAIL_MAX_ATTEMPTS"]
    assert limit == 8
    postmark.answer_with(*[500] * (limit + 2))
    ask_reset(client, mail_tenant.id)
    row = settled_delivery(app, mail_tenant.id, "failed")
    assert row.attempts == limit
    assert row.last_error
    assert postmark.attempts() == limit
    assert postmark.mails() == []


def test_back_off_doubles_from_the_base(app, database_url, tmp_path: Path):
    defaults = create_app(make_config(database_url, tmp_path))
    assert defaults.config["MAIL_RETRY_BASE_SECONDS"] == 5
    with defaults.app_context():
        assert [mail_service.retry_delay(n) for n in range(1, 5)] == [5, 10, 20, 40]
    with app.app_context():
        assert mail_service.retry_delay(3) == 0  # the test session's base is 0


def test_a_sent_row_is_never_sent_again(app, client, mail_tenant, joe, postmark, celery_worker):
    ask_reset(client, mail_tenant.id)
    row = settled_delivery(app, mail_tenant.id, "sent")
    assert len(postmark.mails()) == 1
    task = app.extensions["celery"].tasks["mail.send_delivery"]
    for _ in range(2):
        assert task.apply(args=(mail_tenant.id, row.id)).result == "skipped"
    assert len(postmark.mails()) == 1 and postmark.attempts() == 1
    again = factories.email_deliveries(app, mail_tenant.id)
    assert [(r.id, r.status, r.attempts) for r in again] == [(row.id, "sent", 1)]


def _shared_env(app: Flask, postmark: FakePostmark, **env: str) -> dict[str, str]:
    return {
        "SECRET_KEY": app.config["SECRET_KEY"],
        "ENCRYPTION_KEYS": ",".join(app.config["ENCRYPTION_KEYS"]),
        "POSTMARK_API_URL": postmark.url,
        **env,
    }


def test_a_broker_outage_loses_no_mail(
    app, database_url, tmp_path: Path, mail_tenant, joe, postmark, celery_worker
):
    env = _shared_env(app, postmark, CELERY_BROKER_URL="redis://127.0.0.1:1/0")
    outage = create_app(make_config(database_url, tmp_path / "outage", **env))
    requeuer = create_app(
        make_config(
            database_url,
            tmp_path / "requeue",
            **_shared_env(app, postmark),
            MAIL_REQUEUE_AFTER_SECONDS="0",
        )
    )
    try:
        started = time.monotonic()
        ask_reset(outage.test_client(), mail_tenant.id)
        assert time.monotonic() - started < 5, "a dead broker must not hold the request"
        [row] = factories.email_deliveries(app, mail_tenant.id)
        assert (row.status, row.attempts) == ("queued", 0)
        assert postmark.attempts() == 0

        result = requeuer.test_cli_runner().invoke(args=["run-periodic", "requeue-stuck"])
        assert result.exit_code == 0, result.output
        assert "mail.requeue_stuck -> 1" in result.output
        row = settled_delivery(app, mail_tenant.id, "sent")
        assert row.attempts == 1
        [mail] = postmark.mails()
        assert mail.body["To"] == "joe@example.com"
        assert LINK_PREFIX in mail.body["TextBody"]
    finally:
        for variant in (outage, requeuer):
            with variant.app_context():
                db.engine.dispose()


def test_a_row_is_not_requeued_before_its_time(
    app, database_url, tmp_path: Path, mail_tenant, joe, postmark
):
    outage = create_app(
        make_config(
            database_url,
            tmp_path,
            **_shared_env(app, postmark),
            CELERY_BROKER_URL="redis://127.0.0.1:1/0",
        )
    )
    try:
        ask_reset(outage.test_client(), mail_tenant.id)
    finally:
        with outage.app_context():
            db.engine.dispose()
    assert app.config["MAIL_REQUEUE_AFTER_SECONDS"] == 300
    result = app.test_cli_runner().invoke(args=["run-periodic", "requeue-stuck"])
    assert result.exit_code == 0, result.output
    assert "mail.requeue_stuck -> 0" in result.output
    [row] = factories.email_deliveries(app, mail_tenant.id)
    assert row.status == "queued"


def test_a_row_left_sending_by_a_dead_worker_is_sent_once_its_claim_runs_out(
    app, database_url, tmp_path: Path, mail_tenant, joe, postmark, celery_worker
):
    outage = create_app(
        make_config(
            database_url,
            tmp_path,
            **_shared_env(app, postmark),
            CELERY_BROKER_URL="redis://127.0.0.1:1/0",
        )
    )
    try:
        ask_reset(outage.test_client(), mail_tenant.id)
    finally:
        with outage.app_context():
            db.engine.dispose()
    [row] = factories.email_deliveries(app, mail_tenant.id)
    # A worker claimed the row and died mid-send, a fresh claim ago: nobody may touch it.
    with app.app_context(), tenant_scope(mail_tenant.id):
        claimed_at = utcnow() - timedelta(seconds=10)
        db.session.execute(
            update(EmailDelivery)
            .where(EmailDelivery.id == row.id)
            .values(status="sending", attempts=1, updated_at=claimed_at, next_attempt_at=claimed_at)
        )
        db.session.commit()
    result = app.test_cli_runner().invoke(args=["run-periodic", "requeue-stuck"])
    assert "mail.requeue_stuck -> 0" in result.output
    # Once the claim has run out, the periodic job sends it again: nothing is lost.
    with app.app_context(), tenant_scope(mail_tenant.id):
        expired = utcnow() - timedelta(seconds=app.config["MAIL_SENDING_LEASE_SECONDS"] + 5)
        db.session.execute(
            update(EmailDelivery).where(EmailDelivery.id == row.id).values(updated_at=expired)
        )
        db.session.commit()
    result = app.test_cli_runner().invoke(args=["run-periodic", "requeue-stuck"])
    assert "mail.requeue_stuck -> 1" in result.output, result.output
    sent = settled_delivery(app, mail_tenant.id, "sent")
    assert sent.attempts == 2
    assert len(postmark.mails()) == 1


def test_development_writes_mail_to_the_outbox(tmp_path: Path, postmark: FakePostmark):
    dev = create_app(
        make_config(
            f"sqlite:///{tmp_path}/dev.db",
            tmp_path,
            APP_ENV="development",
            CELERY_BROKER_URL="",
            REDIS_URL="",
        )
    )
    try:
        assert dev.config["CELERY_TASK_ALWAYS_EAGER"] is True
        with dev.app_context():
            flask_migrate.upgrade()
        tenant = factories.make_tenant(dev, "devco", password_reset_hosts=[HOST])
        factories.make_user(dev, tenant.id, user_id="d1", username="dee", email="dee@example.com")
        ask_reset(dev.test_client(), tenant.id, "dee@example.com")

        outbox = Path(dev.instance_path) / "outbox"
        files = factories.wait_until(lambda: sorted(outbox.glob("*.eml")))
        assert len(files) == 1, files
        message = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
        assert message["To"] == "dee@example.com"
        text = message.get_body(("plain",)).get_content()
        assert LINK_PREFIX in text
        rows = factories.wait_until(
            lambda: [r for r in factories.email_deliveries(dev, tenant.id) if r.status == "sent"]
        )
        assert len(rows) == 1
        assert postmark.attempts() == 0
    finally:
        with dev.app_context():
            db.engine.dispose()
