"""Small helpers that build state through the services (never raw rows)."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import func, select, text

from app.core import security
from app.core.db import db
from app.core.tenancy import tenant_scope
from app.tenants import service as tenant_service
from app.users import service as user_service
from app.users.models import User


def new_encryption_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


@dataclass
class TenantHandle:
    id: str
    key: str
    key_id: str

    @property
    def headers(self) -> dict[str, str]:
        """The user API's style: X-APIKEY + X-Tenant-ID."""
        return {"X-APIKEY": self.key, "X-Tenant-ID": self.id}

    @property
    def m2_headers(self) -> dict[str, str]:
        """The accounts (Firebase-style) API's style: x-api-key + x-m2-organization-id."""
        return {"x-api-key": self.key, "x-m2-organization-id": self.id}


def make_tenant(
    app: Flask, name: str, *, scopes: list[str] | None = None, **settings: Any
) -> TenantHandle:
    with app.app_context():
        tenant = tenant_service.create_tenant(name=name, settings=settings)
        with tenant_scope(tenant.id):
            issued = tenant_service.issue_api_key(tenant_id=tenant.id, name="test", scopes=scopes)
        handle = TenantHandle(tenant.id, issued.raw_key, issued.api_key.id)
        db.session.commit()
        return handle


def make_key(app: Flask, tenant_id: str, scopes: list[str]) -> str:
    with app.app_context(), tenant_scope(tenant_id):
        issued = tenant_service.issue_api_key(tenant_id=tenant_id, scopes=scopes)
        db.session.commit()
        return issued.raw_key


def make_user(app: Flask, tenant_id: str, **fields: Any) -> str:
    """Create a user through the service and return its id."""
    with app.app_context(), tenant_scope(tenant_id):
        user_id = user_service.create_user(**fields).id
        db.session.commit()
        return user_id


def password_matches(app: Flask, tenant_id: str, user_id: str, password: str) -> bool:
    """Whether the stored hash of a user verifies `password` (read through the service)."""
    with app.app_context(), tenant_scope(tenant_id):
        user = user_service.get_user(user_id)
        return security.verify_password(user.password_hash, password)


def count_users(app: Flask, tenant_id: str) -> int:
    """How many users the tenant has (to prove a rejected request created nothing)."""
    with app.app_context(), tenant_scope(tenant_id):
        return db.session.scalar(select(func.count()).select_from(User)) or 0


# The one password of test users (long enough for every tenant policy the tests set).
PASSWORD = "correct horse battery"

ERROR_KEYS = {"error", "message", "status", "request_id"}


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """Assert `response` is a JSON error of `status` and `code` in the default shape; return
    its body."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json, response.get_data(as_text=True)
    body = response.get_json()
    assert ERROR_KEYS <= body.keys(), body
    assert body["status"] == status
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["message"], str) and body["message"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert body["error"] == code, body
    return body


def assert_me_error(response: Any, status: int, key: str) -> dict[str, Any]:
    """An error in the me API's shape: both spellings of the success flag, the key, a message
    and the request id."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json, response.get_data(as_text=True)
    body = response.get_json()
    assert body["success"] is False and body["succes"] is False, body
    assert isinstance(body["error"], str) and body["error"], body
    assert isinstance(body["message"], str) and body["message"], body
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert body["error"] == key, body
    return body


def sign_in(client: Any, tenant_id: str, username: str, password: str = PASSWORD) -> dict[str, Any]:
    """Sign a user in through POST /oauth/token (password grant); return the token body."""
    response = client.post(
        "/oauth/token",
        headers={"X-Tenant-ID": tenant_id},
        data={"grant_type": "password", "username": username, "password": password},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def bearer(access_token: str, **extra: str) -> dict[str, str]:
    """The Authorization header for a user's access token (plus any `extra` headers)."""
    return {"Authorization": f"Bearer {access_token}", **extra}


def age_sessions(app: Flask, tenant_id: str, seconds: int) -> None:
    """Move the sign-in time of every session of a tenant `seconds` into the past."""
    with app.app_context(), tenant_scope(tenant_id):
        db.session.execute(
            text(
                "UPDATE auth_session SET auth_time = auth_time - make_interval(secs => :s) "
                "WHERE tenant_id = :t"
            ),
            {"s": seconds, "t": tenant_id},
        )
        db.session.commit()


def stale_session(
    app: Flask, client: Any, tenant_id: str, username: str, password: str, **extra: str
) -> dict[str, Any]:
    """Tokens of a session signed in an hour ago and kept going by a refresh (the token
    body): valid, but its `auth_time` is older than REAUTH_MAX_AGE_SECONDS. `extra` goes
    into the sign-in (an `otp`)."""
    response = client.post(
        "/oauth/token",
        headers={"X-Tenant-ID": tenant_id},
        data={"grant_type": "password", "username": username, "password": password, **extra},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    session = response.get_json()
    age_sessions(app, tenant_id, 3600)
    response = client.post(
        "/oauth/token",
        headers={"X-Tenant-ID": tenant_id},
        data={"grant_type": "refresh_token", "refresh_token": session["refresh_token"]},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def secret_rows(app: Flask, tenant_id: str) -> list[tuple[Any, ...]]:
    """Every stored secret of a tenant as plain tuples, to compare before and after."""
    from app.secrets.models import Secret

    with app.app_context(), tenant_scope(tenant_id):
        rows = db.session.scalars(select(Secret).order_by(Secret.id))
        return [
            (s.id, s.user_id, s.name, s.value_encrypted, s.version, s.created_at, s.updated_at)
            for s in rows
        ]


def property_rows(app: Flask, tenant_id: str) -> list[tuple[Any, ...]]:
    """Every stored property of a tenant as plain tuples, to compare before and after."""
    from app.properties.models import Property

    with app.app_context(), tenant_scope(tenant_id):
        rows = db.session.scalars(select(Property).order_by(Property.id))
        return [
            (p.id, p.user_id, p.name, p.value, p.version, p.created_at, p.updated_at) for p in rows
        ]


def wait_until(predicate: Any, timeout: float = 10.0) -> Any:
    """Poll `predicate` until it returns something truthy or `timeout` passes; its last value."""
    import time

    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(0.05)  # poll interval while the worker thread does its part
        value = predicate()
    return value


def email_deliveries(app: Flask, tenant_id: str) -> list[Any]:
    """A tenant's email delivery rows (detached), oldest first."""
    from app.mail.models import EmailDelivery

    with app.app_context(), tenant_scope(tenant_id):
        query = select(EmailDelivery).order_by(EmailDelivery.created_at, EmailDelivery.id)
        return list(db.session.scalars(query))


def counting_client(app: Flask) -> Any:
    """A test client whose `value_reads` counts successful secret value reads: each one
    queues an audit task, which a test waits for before its tables are truncated."""
    from flask.testing import FlaskClient

    class ValueReadCountingClient(FlaskClient):
        value_reads = 0

        def open(self, *args: Any, **kwargs: Any) -> Any:
            response = super().open(*args, **kwargs)
            if response.status_code == 200 and response.request.path.endswith("/value"):
                self.value_reads += 1
            return response

    return ValueReadCountingClient(app, app.response_class, use_cookies=True)


def wait_for_value_read_audits(app: Flask, count: int, timeout: float = 10.0) -> int:
    """Poll (all tenants) until the worker has written `count` secret.value_read events;
    return how many there are."""
    import time

    from app.audit.models import AuditEvent
    from app.core.tenancy import all_tenants

    deadline = time.monotonic() + timeout
    query = select(func.count()).where(AuditEvent.action == "secret.value_read")
    while True:
        with app.app_context(), all_tenants():
            found = db.session.scalar(query) or 0
        if found >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def assert_directory_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """Assert `response` is a directory-surface (the directory API) error of `status`:
    `{"error": "<message>", "code": "<UPPER_CASE_KEY>"}`; return its body."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json, response.get_data(as_text=True)
    body = response.get_json()
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("code"), str) and body["code"], body
    assert body["code"] == body["code"].upper(), body
    assert body["code"].replace("_", "").isalnum(), body
    assert body["code"] == code, body
    return body


@contextmanager
def serve(app: Flask) -> Iterator[str]:
    """Serve `app` over real HTTP on a free local port (in a thread) for clients that need
    a socket, such as the Auth0 SDK; yields the base URL."""
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def auth0_client(base_url: str, token: str, tenant_id: str | None = None) -> Any:
    """The official Auth0 management client pointed at Gatehouse (no retries, so an error
    answer surfaces at once)."""
    from auth0.management import Auth0

    headers = {"X-Tenant-ID": tenant_id} if tenant_id else None
    return Auth0(base_url=f"{base_url}/api/v2", token=token, headers=headers, max_retries=0)


def totp_code(secret: str, at: float | None = None) -> str:
    """The TOTP code of `secret` now (or at `at`, epoch seconds), as an authenticator app shows."""
    import time

    import pyotp

    return pyotp.TOTP(secret).at(at if at is not None else time.time())


def table_counts(app: Flask) -> dict[str, int]:
    """Rows per table, all tenants (to prove a refused request stored nothing)."""
    from app.core.tenancy import all_tenants

    with app.app_context(), all_tenants():
        return {
            table.name: db.session.scalar(select(func.count()).select_from(table)) or 0
            for table in db.metadata.sorted_tables
        }


def assert_surface_error(response: Any, status: int, surface: str, code: str) -> dict[str, Any]:
    """Assert `response` is an error of `status` in the shape the surface `surface`
    (platform, user, accounts, me, oauth, directory, ...) declares; return its body."""
    import importlib

    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json, response.get_data(as_text=True)
    body = response.get_json()
    problems = importlib.import_module(f"app.api.{surface}").ErrorSchema().validate(body)
    assert problems == {}, (body, problems)
    assert error_code(body, surface) == code, body
    return body


def error_code(body: dict[str, Any], surface: str) -> str:
    """The machine-readable code of an error body, wherever the surface puts it."""
    key = {"directory": "code", "management": "errorCode"}.get(surface, "error")
    return body[key]


def bounded_broker_reads(celery: Any) -> None:
    """A test worker stopped from another thread may be closing its Redis channel while its
    own thread reads the same BRPOP answer (a kombu race): the close then waits for an
    answer that never comes. A socket timeout (above BRPOP's 1 s) ends that wait."""
    celery.conf.broker_transport_options = {
        **celery.conf.broker_transport_options,
        "socket_timeout": 10,
    }


@contextmanager
def celery_worker_for(app: Flask) -> Iterator[Any]:
    """A real worker thread consuming `app`'s own queue (for apps of a `deployment`).

    The session's worker thread must survive it, and three process-wide things would
    stop it: celery's `start_worker` ends by setting the `should_terminate` flag; a
    second worker reuses (and on stopping, closes) the current kombu event loop; and a
    worker thread runs tasks from the *default* Celery app's registry, which starting a
    worker replaces. So this worker makes a loop of its own, and both are restored."""
    import threading

    from celery import _state
    from celery.contrib.testing.worker import TestWorkController, setup_app_for_worker
    from kombu.asynchronous import get_event_loop, set_event_loop

    session_loop, session_default = get_event_loop(), _state.default_app
    session_current = getattr(_state._tls, "current_app", None)
    set_event_loop(None)  # this worker makes a loop of its own
    celery = app.extensions["celery"]
    bounded_broker_reads(celery)
    setup_app_for_worker(celery, "WARNING", None)
    worker = TestWorkController(
        app=celery,
        concurrency=1,
        pool="solo",
        loglevel="WARNING",
        logfile=None,
        ready_callback=None,
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
    )
    thread = threading.Thread(target=worker.start, daemon=True)
    thread.start()
    worker.ensure_started()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(10)
        set_event_loop(session_loop)
        _state.set_default_app(session_default)
        _state._set_current_app(session_current)
        assert not thread.is_alive(), "the deployment's worker did not stop"


PROJECT_ROOT = Path(__file__).resolve().parent.parent
_PROCESS_SETTINGS = (
    "APP_ENV",
    "SECRET_KEY",
    "ROOT_API_KEY",
    "REDIS_URL",
    "CELERY_QUEUE",
    "REDIS_KEY_PREFIX",
    "ISSUER",
    "POSTMARK_API_URL",
)


def process_env(app: Flask, **overrides: str) -> dict[str, str]:
    """The environment of another process of `app`'s deployment (`flask --app wsgi …`,
    `celery -A worker …`, gunicorn), as an operator would set it; `overrides` win."""
    env = {k: v for k, v in os.environ.items() if k not in ("TEST_DATABASE_URL", "FLASK_APP")}
    env.update({name: str(app.config[name]) for name in _PROCESS_SETTINGS})
    env["DATABASE_URL"] = app.config["SQLALCHEMY_DATABASE_URI"]
    env["ENCRYPTION_KEYS"] = ",".join(app.config["ENCRYPTION_KEYS"])
    env["INSTANCE_PATH"] = app.instance_path
    env.update(overrides)
    return env


@contextmanager
def gunicorn(env: dict[str, str], log: Path, *args: str) -> Iterator[str]:
    """`gunicorn -b 127.0.0.1:<free port> wsgi:app [ARGS]` from the project root (so
    gunicorn.conf.py applies, as in production) with `env`; yields its base URL once
    /healthz answers. Everything it prints goes to `log`."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    with open(log, "ab") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", *args, "wsgi:app"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)  # not listening yet
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def run_command(
    args: list[str], env: dict[str, str], timeout: float = 60, cwd: Path | None = None
) -> Any:
    """Run a project command (`flask --app wsgi …`) from the project root (or `cwd`, with
    the project on PYTHONPATH), as an operator would; the completed process, output as
    text."""
    import subprocess
    import sys

    if cwd is not None:
        env = {**env, "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=cwd or PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class AppHandle:
    """A registered application as a test drives it."""

    client_id: str
    secret: str | None
    redirect_uri: str
    tenant_id: str


def make_application(
    app: Flask,
    tenant_id: str,
    *,
    type: str = "public",
    redirect_uris: list[str] | None = None,
    allowed_origins: list[str] | None = None,
    post_logout_redirect_uris: list[str] | None = None,
    name: str = "Web app",
    allowed_scopes: list[str] | None = None,
) -> AppHandle:
    """Register an application through the service; the first redirect URI is its own."""
    from app.applications import service as application_service

    uris = redirect_uris or ["http://127.0.0.1:8765/callback"]
    with app.app_context(), tenant_scope(tenant_id):
        issued = application_service.create_application(
            tenant_id=tenant_id,
            name=name,
            type=type,
            redirect_uris=uris,
            allowed_origins=allowed_origins or [],
            post_logout_redirect_uris=post_logout_redirect_uris or [],
            allowed_scopes=allowed_scopes,
        )
        handle = AppHandle(issued.application.id, issued.client_secret, uris[0], tenant_id)
        db.session.commit()
        return handle


def record_events(app: Flask, tenant_id: str, events: list[dict[str, Any]]) -> list[str]:
    """Record audit events through the audit service (each dict: action, actor, and
    optionally user_id, target, data, `at` for a past time); their ids."""
    from app.audit import service as audit_service

    with app.app_context(), tenant_scope(tenant_id):
        ids = [audit_service.record(**event).id for event in events]
        db.session.commit()
        return ids
