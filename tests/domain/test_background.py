"""Background work: last activity and API-key use cost no database write per request and
are flushed in batches (embedded mode writes through once a minute); the cleanup job
deletes only expired or old rows; beat schedules every periodic task at its interval."""

from __future__ import annotations

import importlib
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, select, update

from app import create_app
from app.core.db import db, utcnow
from app.core.tenancy import tenant_scope
from app.credentials.models import PasswordResetRequest
from app.mail import service as mail_service
from app.mail.models import EmailDelivery
from app.periodic import beat_schedule
from app.tokens.models import CustomTokenUse, RefreshToken
from tests import factories
from tests.conftest import make_config
from tests.factories import PASSWORD, TenantHandle
from tests.oauth_support import bearer, claims, refresh

HOST = "app.example.com"
WRITES = ("INSERT", "UPDATE", "DELETE")
PERIODIC_TASKS = {
    "users.flush_last_activity": "ACTIVITY_FLUSH_INTERVAL_SECONDS",
    "tenants.flush_key_usage": "ACTIVITY_FLUSH_INTERVAL_SECONDS",
    "mail.requeue_stuck": "MAIL_REQUEUE_INTERVAL_SECONDS",
    "portability.requeue_stale_imports": "MAIL_REQUEUE_INTERVAL_SECONDS",
    "portability.requeue_stale_exports": "MAIL_REQUEUE_INTERVAL_SECONDS",
    "tokens.cleanup_expired": "CLEANUP_INTERVAL_SECONDS",
    "credentials.cleanup_resets": "CLEANUP_INTERVAL_SECONDS",
    "mail.cleanup_deliveries": "CLEANUP_INTERVAL_SECONDS",
    "applications.cleanup_codes": "CLEANUP_INTERVAL_SECONDS",
    "portability.cleanup_exports": "CLEANUP_INTERVAL_SECONDS",
    "webhooks.dispatch_due": "WEBHOOK_DISPATCH_INTERVAL_SECONDS",
    "webhooks.cleanup_messages": "CLEANUP_INTERVAL_SECONDS",
}


@contextmanager
def counting_writes(app: Flask) -> Iterator[list[str]]:
    """The INSERT/UPDATE/DELETE statements this thread sends through `app`'s engine."""
    writes: list[str] = []
    me = threading.get_ident()

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if threading.get_ident() == me and statement.lstrip().upper().startswith(WRITES):
            writes.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        yield writes
    finally:
        event.remove(engine, "before_cursor_execute", seen)


def run_periodic(app: Flask, *names: str) -> str:
    result = app.test_cli_runner().invoke(args=["run-periodic", *names])
    assert result.exit_code == 0, result.output
    return result.output


def get_me(client: FlaskClient, access_token: str) -> dict[str, Any]:
    response = client.get("/users/me", headers=bearer(access_token))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def shared_secrets(app: Flask) -> dict[str, str]:
    return {
        "SECRET_KEY": app.config["SECRET_KEY"],
        "ENCRYPTION_KEYS": ",".join(app.config["ENCRYPTION_KEYS"]),
    }


# --- last activity and key use ----------------------------------------------------------------


def test_user_activity_costs_no_database_write(app, client, tenant):
    user_id = factories.make_user(
        app, tenant.id, user_id="u-ann", username="ann", password=PASSWORD
    )
    access = factories.sign_in(client, tenant.id, "ann", PASSWORD)["access_token"]
    before = time.time()
    with counting_writes(app) as writes:
        for _ in range(5):
            get_me(client, access)
    assert writes == []
    me = get_me(client, access)
    assert me["last_activity"] is None
    assert me["last_activity_date"] is not None  # the sign-in set last_login only

    assert "users.flush_last_activity" in run_periodic(app, "flush-activity")
    last_activity = get_me(client, access)["last_activity"]
    assert isinstance(last_activity, int)
    assert int(before) - 1 <= last_activity <= time.time() + 1
    profile = client.get(f"/user/{user_id}/profile", headers=tenant.headers)
    assert profile.status_code == 200, profile.get_data(as_text=True)
    assert profile.get_json()["last_activity_at"] is not None


def test_api_key_use_costs_no_database_write(app, client, tenant, root_headers):
    def last_used_at() -> Any:
        response = client.get(f"/tenants/{tenant.id}/api-keys", headers=root_headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        return {key["id"]: key["last_used_at"] for key in response.get_json()}[tenant.key_id]

    with counting_writes(app) as writes:
        for _ in range(5):
            response = client.get("/auth/user?userId=x", headers=tenant.m2_headers)
            assert response.status_code == 200, response.get_data(as_text=True)
    assert writes == []
    assert last_used_at() is None

    assert "tenants.flush_key_usage" in run_periodic(app, "flush-activity")
    assert last_used_at() is not None


def test_embedded_mode_writes_through_once_a_minute(app, database_url, tmp_path: Path, tenant):
    factories.make_user(app, tenant.id, user_id="u-bea", username="bea", password=PASSWORD)
    embedded = create_app(
        make_config(
            database_url, tmp_path, REDIS_URL="", CELERY_BROKER_URL="", **shared_secrets(app)
        )
    )
    try:
        client = embedded.test_client()
        access = factories.sign_in(client, tenant.id, "bea", PASSWORD)["access_token"]
        with counting_writes(embedded) as first:
            get_me(client, access)
        assert len(first) == 1, first
        assert first[0].lstrip().upper().startswith("UPDATE") and "user_account" in first[0]
        with counting_writes(embedded) as later:
            for _ in range(4):
                get_me(client, access)
        assert later == []
        assert get_me(client, access)["last_activity"] is not None
    finally:
        with embedded.app_context():
            db.engine.dispose()


# --- cleanup ----------------------------------------------------------------------------------


def test_cleanup_removes_only_expired_tokens(app, client):
    enabled = factories.make_tenant(app, "initech", allow_user_token_management=True)
    factories.make_user(app, enabled.id, user_id="u-cy", username="cy", password=PASSWORD)
    stale = factories.sign_in(client, enabled.id, "cy", PASSWORD)
    live = factories.sign_in(client, enabled.id, "cy", PASSWORD)
    for user_id in ("c-old", "c-new"):
        made = client.post("/token/generate", json={"userId": user_id}, headers=enabled.m2_headers)
        assert made.status_code == 200, made.get_data(as_text=True)
        used = client.post(
            "/token/signin", json={"token": made.get_json()["token"]}, headers=enabled.m2_headers
        )
        assert used.status_code == 200, used.get_data(as_text=True)
    past = utcnow() - timedelta(days=1)
    stale_family = claims(stale["access_token"])["sid"]
    live_family = claims(live["access_token"])["sid"]
    with app.app_context(), tenant_scope(enabled.id):
        db.session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == stale_family)
            .values(expires_at=past)
        )
        db.session.execute(
            update(CustomTokenUse).where(CustomTokenUse.user_id == "c-old").values(expires_at=past)
        )
        db.session.commit()

    assert "tokens.cleanup_expired -> 2" in run_periodic(app, "cleanup")
    with app.app_context(), tenant_scope(enabled.id):
        families = set(db.session.scalars(select(RefreshToken.family_id)))
        used_ids = set(db.session.scalars(select(CustomTokenUse.user_id)))
    assert live_family in families and stale_family not in families
    assert used_ids == {"c-new"}
    assert refresh(client, live["refresh_token"], enabled.id).status_code == 200


def _ask_reset(client: FlaskClient, tenant: TenantHandle, address: str) -> None:
    response = client.post(
        "/auth/password-reset",
        json={"email": address, "host": HOST},
        headers={"X-Tenant-ID": tenant.id},
    )
    assert response.status_code == 200, response.get_data(as_text=True)


def _statuses(app: Flask, tenant_id: str) -> dict[str, str]:
    return {d.to_address: d.status for d in factories.email_deliveries(app, tenant_id)}


def _settle(app: Flask, tenant_id: str, expected: dict[str, str]) -> None:
    factories.wait_until(lambda: _statuses(app, tenant_id) == expected)
    assert _statuses(app, tenant_id) == expected


def test_cleanup_removes_expired_resets_and_old_deliveries(app, client, postmark, celery_worker):
    mailco = factories.make_tenant(
        app,
        "mailco",
        email_from="noreply@example.com",
        postmark_server_token="pm-token-1",
        password_reset_hosts=[HOST],
    )
    for name in ("alice", "bob", "carol"):
        factories.make_user(app, mailco.id, user_id=name, username=name, email=f"{name}@ex.org")
    _ask_reset(client, mailco, "alice@ex.org")
    _settle(app, mailco.id, {"alice@ex.org": "sent"})
    postmark.answer_with(422)
    _ask_reset(client, mailco, "bob@ex.org")
    _settle(app, mailco.id, {"alice@ex.org": "sent", "bob@ex.org": "failed"})
    _ask_reset(client, mailco, "carol@ex.org")
    expected = {"alice@ex.org": "sent", "bob@ex.org": "failed", "carol@ex.org": "sent"}
    _settle(app, mailco.id, expected)

    long_ago = utcnow() - timedelta(days=40)
    old = ["alice@ex.org", "bob@ex.org", "dora@ex.org"]
    with app.app_context(), tenant_scope(mailco.id):
        # A delivery still queued (never handed to the broker) is kept however old it is.
        mail_service.create_delivery(
            tenant_id=mailco.id,
            kind="password_reset",
            to="dora@ex.org",
            sender="noreply@example.com",
            subject="Reset your password",
            text="text",
            html="<p>html</p>",
        )
        db.session.execute(
            update(EmailDelivery)
            .where(EmailDelivery.to_address.in_(old))
            .values(created_at=long_ago)
        )
        db.session.execute(
            update(PasswordResetRequest)
            .where(PasswordResetRequest.user_id == "alice")
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()

    output = run_periodic(app, "cleanup")
    assert "credentials.cleanup_resets -> 1" in output
    assert "mail.cleanup_deliveries -> 2" in output
    with app.app_context(), tenant_scope(mailco.id):
        reset_users = set(db.session.scalars(select(PasswordResetRequest.user_id)))
    assert reset_users == {"bob", "carol"}
    assert _statuses(app, mailco.id) == {"carol@ex.org": "sent", "dora@ex.org": "queued"}


# --- beat and the CLI -------------------------------------------------------------------------


def test_beat_schedules_every_periodic_task(app, database_url, tmp_path: Path, celery_worker):
    intervals = {
        "ACTIVITY_FLUSH_INTERVAL_SECONDS": "17",
        "MAIL_REQUEUE_INTERVAL_SECONDS": "23",
        "CLEANUP_INTERVAL_SECONDS": "29",
        "WEBHOOK_DISPATCH_INTERVAL_SECONDS": "7",
    }
    variant = create_app(make_config(database_url, tmp_path, **intervals))
    for flask_app, expected in (
        (variant, {task: float(intervals[key]) for task, key in PERIODIC_TASKS.items()}),
        (app, {task: float(app.config[key]) for task, key in PERIODIC_TASKS.items()}),
    ):
        schedule = beat_schedule(flask_app)
        assert len(schedule) == len(PERIODIC_TASKS)
        assert {entry["task"]: entry["schedule"] for entry in schedule.values()} == expected
    for task_name in PERIODIC_TASKS:
        assert task_name in app.extensions["celery"].tasks
        assert task_name in celery_worker.app.tasks


def test_the_worker_module_carries_the_schedule(
    app, database_url, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """`celery -A worker beat` reads `worker.celery.conf.beat_schedule`."""
    config = make_config(database_url, tmp_path, CLEANUP_INTERVAL_SECONDS="31")
    for name in ("APP_ENV", "INSTANCE_PATH", "SECRET_KEY", "ROOT_API_KEY", "REDIS_URL"):
        monkeypatch.setenv(name, str(getattr(config, name)))
    monkeypatch.setenv("DATABASE_URL", database_url)
    # The session's key ring: the worker module proves it opens the data at start-up.
    monkeypatch.setenv("ENCRYPTION_KEYS", ",".join(app.config["ENCRYPTION_KEYS"]))
    monkeypatch.setenv("CLEANUP_INTERVAL_SECONDS", "31")
    worker = sys.modules.get("worker")
    worker = importlib.reload(worker) if worker else importlib.import_module("worker")
    try:
        assert worker.app is worker.celery is worker.flask_app.extensions["celery"]
        entries = worker.celery.conf.beat_schedule.values()
        assert {entry["task"] for entry in entries} == set(PERIODIC_TASKS)
        assert all(e["schedule"] == 31.0 for e in entries if "cleanup" in e["task"])
        assert all(name in worker.celery.tasks for name in PERIODIC_TASKS)
    finally:
        with worker.flask_app.app_context():
            db.engine.dispose()


def test_run_periodic_runs_every_job_and_refuses_unknown_names(app):
    output = run_periodic(app)
    for task_name in PERIODIC_TASKS:
        assert task_name in output
    unknown = app.test_cli_runner().invoke(args=["run-periodic", "no-such-job"])
    assert unknown.exit_code != 0
    assert "no-such-job" in unknown.output
