"""Metrics at /metrics (requests by route and status, latency, sign-ins, mail deliveries
by state, Celery task outcomes; added up across gunicorn workers) and JSON log lines that
carry the request id, in the worker too (issue 17, finding 8)."""

from __future__ import annotations

import io
import json
import logging
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from app.audit import tasks as audit_tasks
from app.core.jobs import send_task
from app.core.logs import configure_logging
from tests import factories
from tests.conftest import ROOT_KEY, make_config
from tests.factories import PASSWORD, TenantHandle
from tests.postmark_fake import FakePostmark
from tests.webhook_receiver import Receiver

HOST = "app.example.com"


def scrape(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, keyed by (name, sorted labels)."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_are_counted_by_route_and_status_and_timed(
    client: FlaskClient, tenant: TenantHandle
) -> None:
    before = scrape(client)
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    assert client.get("/user/nobody", headers=tenant.headers).status_code == 404
    assert client.get("/no/such/path").status_code == 404
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "gatehouse_http_requests_total"
    assert delta(requests, method="GET", route="/healthz", status="200") == 3
    # The route template, never the raw path, so ids make no new series.
    assert delta(requests, method="GET", route="/user/<user_id>", status="404") == 1
    assert delta(requests, method="GET", route="<unmatched>", status="404") == 1
    latency = "gatehouse_http_request_duration_seconds"
    assert delta(f"{latency}_count", method="GET", route="/healthz") == 3
    assert delta(f"{latency}_bucket", method="GET", route="/healthz", le="+Inf") == 3
    assert delta(f"{latency}_sum", method="GET", route="/healthz") > 0


def test_sign_ins_and_failures_are_counted(
    app: Flask, client: FlaskClient, tenant: TenantHandle
) -> None:
    factories.make_user(app, tenant.id, user_id="m1", email="m1@example.com", password=PASSWORD)
    before = scrape(client)
    factories.sign_in(client, tenant.id, "m1@example.com", PASSWORD)
    for wrong in ("nope-1", "nope-2"):
        denied = client.post(
            "/oauth/token",
            headers={"X-Tenant-ID": tenant.id},
            data={"grant_type": "password", "username": "m1@example.com", "password": wrong},
        )
        assert denied.status_code == 401
    after = scrape(client)
    signins = "gatehouse_signins_total"
    assert value(after, signins, outcome="success") - value(before, signins, outcome="success") == 1
    assert value(after, signins, outcome="failure") - value(before, signins, outcome="failure") == 2


def _mail_tenant(app: Flask, user_id: str) -> TenantHandle:
    """A tenant that sends mail through the Postmark stand-in, with user `<id>@example.com`."""
    mailer = factories.make_tenant(
        app,
        "mailer",
        email_from="noreply@example.com",
        postmark_server_token="pm-metrics",
        password_reset_hosts=[HOST],
    )
    email = f"{user_id}@example.com"
    factories.make_user(app, mailer.id, user_id=user_id, email=email, password=PASSWORD)
    return mailer


def test_mail_deliveries_by_state_and_task_outcomes(
    app: Flask, client: FlaskClient, celery_worker, postmark: FakePostmark
) -> None:
    mailer = _mail_tenant(app, "r1")
    tasks = "gatehouse_celery_tasks_total"
    sent = {"task": "mail.send_delivery", "outcome": "succeeded"}
    failed = {"task": "audit.record_event", "outcome": "failed"}
    before = scrape(client)
    asked = client.post(
        "/auth/password-reset",
        json={"email": "r1@example.com", "host": HOST},
        headers={"X-Tenant-ID": mailer.id},
    )
    assert asked.get_json() == {"msg": "ok"}
    assert factories.wait_until(postmark.mails)
    # A task that fails in the worker: an audit event for a tenant that does not exist.
    with app.app_context():
        send_task(audit_tasks.record_event, "no-such-tenant", {"action": "user.created"})

    def counted() -> dict:
        now = scrape(client)
        done = value(now, tasks, **sent) > value(before, tasks, **sent)
        return now if done and value(now, tasks, **failed) > value(before, tasks, **failed) else {}

    after = factories.wait_until(counted)
    assert after, "the worker's task outcomes never reached /metrics"
    assert value(after, tasks, **sent) - value(before, tasks, **sent) == 1
    assert value(after, tasks, **failed) - value(before, tasks, **failed) == 1
    deliveries = "gatehouse_mail_deliveries"
    assert value(after, deliveries, state="sent") == 1
    assert value(after, deliveries, state="queued") == 0
    assert value(after, deliveries, state="failed") == 0


def test_webhook_messages_are_a_gauge_by_state(
    app: Flask, client: FlaskClient, celery_worker: object
) -> None:
    tenant = factories.make_tenant(app, "hooks")
    root = {"Authorization": f"Bearer {ROOT_KEY}"}
    receiver = Receiver().start()
    try:
        endpoint = client.post(
            f"/tenants/{tenant.id}/webhooks", json={"url": receiver.url}, headers=root
        ).get_json()
        assert (
            client.post(
                f"/tenants/{tenant.id}/webhooks/{endpoint['id']}/test", headers=root
            ).status_code
            == 202
        )
        gauge = "gatehouse_webhook_messages"
        after = factories.wait_until(
            lambda: (now := scrape(client)) and value(now, gauge, state="delivered") == 1 and now
        )
        assert after, "the delivered message never showed in /metrics"
        assert value(after, gauge, state="pending") == 0
        assert value(after, gauge, state="failed") == 0
    finally:
        receiver.stop()


@pytest.fixture()
def json_app(database_url: str, tmp_path: Path, app: Flask) -> Iterator[tuple[Flask, io.StringIO]]:
    """A development app (eager tasks, mail to the outbox) logging JSON into a buffer."""
    variant = factories_app(database_url, tmp_path, app)
    handler = next(h for h in logging.getLogger("app").handlers if h.filters)
    buffer = io.StringIO()
    original = handler.setStream(buffer)
    try:
        yield variant, buffer
    finally:
        handler.setStream(original)
        configure_logging(app)  # the session's format again


def factories_app(database_url: str, tmp_path: Path, app: Flask) -> Flask:
    from app import create_app

    config = make_config(
        database_url,
        tmp_path,
        APP_ENV="development",
        LOG_FORMAT="json",
        REDIS_URL="",
        CELERY_BROKER_URL="",
        SECRET_KEY=app.config["SECRET_KEY"],
        ENCRYPTION_KEYS=",".join(app.config["ENCRYPTION_KEYS"]),
    )
    return create_app(config)


def test_json_logs_are_one_object_per_line_with_the_request_id(json_app) -> None:
    variant, buffer = json_app
    tenant = factories.make_tenant(variant, "jsonlogs", password_reset_hosts=[HOST])
    factories.make_user(variant, tenant.id, user_id="j1", email="j1@example.com", password=PASSWORD)
    client = variant.test_client()
    asked = client.post(
        "/auth/password-reset",
        json={"email": "j1@example.com", "host": HOST},
        headers={"X-Tenant-ID": tenant.id, "X-Request-ID": "trace-json-1"},
    )
    assert asked.get_json() == {"msg": "ok"}

    def records() -> list[dict]:
        lines = [line for line in buffer.getvalue().splitlines() if line]
        return [json.loads(line) for line in lines]  # every line is one JSON object

    # The in-process task writes the mail after the answer, on its own thread.
    assert factories.wait_until(lambda: any(r["logger"] == "app.mail.tasks" for r in records()))
    mail = [r for r in records() if r["logger"].startswith("app.mail.")]
    assert len(mail) == 2 and all(r["request_id"] == "trace-json-1" for r in mail)
    assert {"time", "level", "logger", "message", "request_id"} <= set(mail[0])
    # The reset link (a token) and the password never reach the log.
    text = buffer.getvalue()
    assert "reset-password?token=" not in text and PASSWORD not in text


def test_the_worker_logs_carry_the_id_of_the_request_that_queued_the_task(
    app: Flask,
    client: FlaskClient,
    celery_worker,
    postmark: FakePostmark,
    caplog: pytest.LogCaptureFixture,
) -> None:
    mailer = _mail_tenant(app, "t1")
    with caplog.at_level(logging.INFO, logger="app"):
        client.post(
            "/auth/password-reset",
            json={"email": "t1@example.com", "host": HOST},
            headers={"X-Tenant-ID": mailer.id, "X-Request-ID": "trace-worker-7"},
        )
        assert factories.wait_until(postmark.mails)
        records = factories.wait_until(
            lambda: [r for r in caplog.records if r.name == "app.mail.tasks"]
        )
    assert records, "the worker logged nothing for the delivery"
    assert records[0].request_id == "trace-worker-7"
    assert "sent" in records[0].getMessage()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_metrics_add_up_across_gunicorn_workers(app: Flask) -> None:
    """gunicorn.conf.py turns on prometheus-client's multi-process mode: /metrics counts
    the requests every worker answered, not only its own."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "--workers", "3", "wsgi:app"],
        cwd=factories.PROJECT_ROOT,
        env=factories.process_env(app),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"

    def get(path: str) -> str | None:
        try:
            with urllib.request.urlopen(base + path, timeout=5) as response:
                return response.read().decode()
        except OSError:
            return None

    try:
        deadline = time.monotonic() + 30
        while get("/healthz") is None and time.monotonic() < deadline:
            time.sleep(0.2)  # not listening yet
        for _ in range(30):
            assert get("/healthz") is not None
        page = get("/metrics")
        assert page is not None
    finally:
        server.terminate()
        server.wait(timeout=30)
    counts = [
        s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
        if s.name == "gatehouse_http_requests_total" and s.labels["route"] == "/healthz"
    ]
    assert sum(counts) >= 31  # the 30 above plus the first successful poll


@pytest.mark.parametrize("process", ["worker", "beat"])
def test_worker_and_beat_write_json_lines(app: Flask, tmp_path: Path, process: str) -> None:
    command = ["celery", "-A", "worker", "--quiet", process, "--loglevel", "INFO"]
    if process == "beat":
        command += ["--schedule", str(tmp_path / "schedule")]
    else:
        command += ["--pool", "solo"]
    env = factories.process_env(app, LOG_FORMAT="json", CELERY_QUEUE=f"json-{process}")
    child = subprocess.Popen(
        [sys.executable, "-m", *command],
        cwd=factories.PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # Read up to the line saying the process is up (stdout ends if it dies first).
    marker = "Starting" if process == "beat" else "ready"
    lines: list[str] = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if line.strip():
                lines.append(line)
            if marker in line:
                break
    finally:
        child.terminate()
        child.wait(timeout=30)
    assert lines, f"{process} printed nothing"
    for line in lines:
        record = json.loads(line)
        assert record["logger"].startswith(("celery", "py.warnings")), record
        assert "request_id" in record
