"""Test session: a PostgreSQL database built by the migrations, Redis db 15 as the Celery
broker, one app, one real Celery worker thread; a test that used the database leaves
empty tables behind.

The servers are the local ones (or TEST_DATABASE_URL / TEST_REDIS_URL), else embedded ones
started from wheels for this run (tests/services.py); the pytest header names the mode.
A server that is named but unreachable stops the run with a message instead of skipping.
"""

from __future__ import annotations

import compileall
import ipaddress
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import flask_migrate
import psycopg
import pytest
import redis
from celery.contrib.testing.worker import start_worker
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from app import create_app
from app.core.db import db
from config import Config
from tests import factories, services
from tests.postmark_fake import FakePostmark, start_fake_postmark

ROOT_KEY = "gh_root_test-root-key-" + uuid.uuid4().hex
RUN_ID = f"gh-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
HOW_TO_START = (
    "Start them with:\n"
    "  pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n"
    '  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no\n'
    "or point TEST_DATABASE_URL / TEST_REDIS_URL at running servers."
)


_services: services.Services | None = None


def _loopback_only(event: str, args: tuple[Any, ...]) -> None:
    """No test sends traffic beyond this machine (webhook targets a fuzzer or a test names,
    a name a patched resolver maps elsewhere): a connection to any other address fails
    here, in every thread of the run, as the machine's own rules would make it."""
    if event != "socket.connect":
        return
    sock, address = args
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
        return
    try:
        allowed = ipaddress.ip_address(str(address[0]).split("%", 1)[0]).is_loopback
    except ValueError:
        allowed = str(address[0]) == "localhost"
    if not allowed:
        raise PermissionError(f"tests connect only to loopback, not {address[0]}")


def _write_bytecode() -> None:
    """Compile the project's modules once, before the run: the suite starts the app in
    dozens of other processes (the CLI, gunicorn's master and workers, celery), and where
    PYTHONDONTWRITEBYTECODE is set, as in this workplace's shells, each of them compiled
    every module from source again (~0.3 s of CPU apiece). Up-to-date files cost a stat."""
    for folder in ("app", "worker"):
        compileall.compile_dir(factories.PROJECT_ROOT / folder, quiet=1)
    for name in ("config.py", "wsgi.py"):
        compileall.compile_file(factories.PROJECT_ROOT / name, quiet=1)


def pytest_configure(config: pytest.Config) -> None:
    global _services
    sys.addaudithook(_loopback_only)
    _write_bytecode()
    try:
        _services = services.start()
    except services.ServiceError as exc:
        raise pytest.UsageError(str(exc)) from exc


def pytest_unconfigure(config: pytest.Config) -> None:
    if _services is not None:
        _services.stop()


def pytest_report_header(config: pytest.Config) -> str:
    return _services.describe() if _services else "gatehouse test services: not started"


def admin_url() -> str:
    """The maintenance database of the run's PostgreSQL (CREATE DATABASE works there)."""
    assert _services is not None
    return _services.database_url


def redis_url() -> str:
    assert _services is not None
    return _services.redis_url


def _require_services() -> None:
    try:
        psycopg.connect(admin_url(), connect_timeout=3).close()
    except Exception as exc:
        pytest.exit(f"PostgreSQL is not reachable at {admin_url()}: {exc}\n{HOW_TO_START}", 3)
    try:
        redis.Redis.from_url(redis_url(), socket_connect_timeout=3).ping()
    except Exception as exc:
        pytest.exit(f"Redis is not reachable at {redis_url()}: {exc}\n{HOW_TO_START}", 3)


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def create_database(name: str, template: str | None = None) -> str:
    """Create database `name` (a copy of `template` if given) and return its URL."""
    clause = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{clause}')
    return _with_database(admin_url(), name)


def drop_database(name: str) -> None:
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    _require_services()
    name = f"gatehouse_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    yield create_database(name)
    drop_database(name)


@pytest.fixture(scope="session")
def template_database(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An empty database at the head migration, copied by `isolated_database_url`."""
    name = f"gatehouse_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    builder = create_app(make_config(create_database(name), tmp_path_factory.mktemp("tpl")))
    with builder.app_context():
        flask_migrate.upgrade()
        db.engine.dispose()  # a template database must have no open connection
    yield name
    drop_database(name)


@pytest.fixture()
def isolated_database_url(template_database: str) -> Iterator[str]:
    """A database of its own for one test (key rotation rewrites the signing keys every
    other test of the session relies on)."""
    name = f"gatehouse_iso_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    yield create_database(name, template=template_database)
    drop_database(name)


def make_config(database_url: str, tmp: Path, **extra: str) -> Config:
    environ = {
        "APP_ENV": "testing",
        "INSTANCE_PATH": str(tmp),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url(),
        "SECRET_KEY": "test-secret-key-" + uuid.uuid4().hex,
        "ENCRYPTION_KEYS": factories.new_encryption_key(),
        "ROOT_API_KEY": ROOT_KEY,
        "ISSUER": "http://gatehouse.test",
        # Own queue and Redis keys: concurrent test runs on one Redis do not mix.
        "CELERY_QUEUE": RUN_ID,
        "REDIS_KEY_PREFIX": RUN_ID,
        **extra,
    }
    return Config(environ)


@pytest.fixture()
def deployment(isolated_database_url: str, tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """`make(**settings)` builds processes of one deployment on a database of its own:
    one SECRET_KEY, their own Celery queue and Redis keys; settings (ENCRYPTION_KEYS, …)
    differ per process as a rolling restart would have them."""
    run_id = f"gh-iso-{uuid.uuid4().hex[:10]}"
    secret_key = "iso-secret-" + uuid.uuid4().hex
    made: list[Flask] = []

    def make(**settings: str) -> Flask:
        config = make_config(
            isolated_database_url,
            tmp_path / f"process-{len(made)}",
            SECRET_KEY=secret_key,
            CELERY_QUEUE=run_id,
            REDIS_KEY_PREFIX=run_id,
            **settings,
        )
        made.append(create_app(config))
        return made[-1]

    yield make
    for process in made:
        with process.app_context():
            db.engine.dispose()


@pytest.fixture(scope="session")
def fake_postmark_server() -> Iterator[FakePostmark]:
    fake = start_fake_postmark()
    yield fake
    fake.stop()


@pytest.fixture()
def postmark(fake_postmark_server: FakePostmark) -> Iterator[FakePostmark]:
    """The local Postmark stand-in, emptied for each test."""
    fake_postmark_server.reset()
    yield fake_postmark_server
    fake_postmark_server.reset()


@pytest.fixture(scope="session")
def app(
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    fake_postmark_server: FakePostmark,
) -> Iterator[Flask]:
    application = create_app(
        make_config(
            database_url,
            tmp_path_factory.mktemp("instance"),
            POSTMARK_API_URL=fake_postmark_server.url,
            # Retries without waiting; the back-off arithmetic has its own test.
            MAIL_RETRY_BASE_SECONDS="0",
        )
    )
    with application.app_context():
        flask_migrate.upgrade()
    yield application
    with application.app_context():
        db.engine.dispose()


@pytest.fixture(scope="session")
def celery_worker(app: Flask) -> Iterator[Any]:
    """A real worker thread consuming from the Redis broker."""
    celery = app.extensions["celery"]
    factories.bounded_broker_reads(celery)
    with start_worker(celery, pool="solo", perform_ping_check=False, shutdown_timeout=10) as worker:
        yield worker


@pytest.fixture(autouse=True)
def clean_tables(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that used the database (it asked for `app`, directly or through another
    fixture), delete what it wrote; a test that never asked for it pays nothing."""
    if "app" not in request.fixturenames:
        yield
        return
    app: Flask = request.getfixturevalue("app")
    app.extensions["gatehouse.ratelimits"].reset()  # counters live in the shared Redis
    yield
    _delete_rows(app)


def _delete_rows(app: Flask) -> None:
    # Children before parents, in one round trip. Signing keys stay: processes cache the
    # current key, as a real deployment does. A DELETE takes row locks only and costs
    # ~0.4 ms on these near-empty tables, where a TRUNCATE of them all costs ~26 ms.
    statements = "; ".join(
        f'DELETE FROM "{table.name}"'
        for table in reversed(db.metadata.sorted_tables)
        if table.name != "signing_key"
    )
    with app.app_context():
        # The worker thread may still be writing (an audit event): retry on a deadlock.
        for attempt in range(5):
            try:
                db.session.execute(text(statements))
                db.session.commit()
                return
            except OperationalError:
                db.session.rollback()
                if attempt == 4:
                    raise
                time.sleep(0.2)


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture()
def root_headers() -> dict[str, str]:
    return {"X-APIKEY": ROOT_KEY}


@pytest.fixture()
def tenant(app: Flask) -> factories.TenantHandle:
    return factories.make_tenant(app, "acme")


@pytest.fixture()
def other_tenant(app: Flask) -> factories.TenantHandle:
    return factories.make_tenant(app, "globex")


@pytest.fixture(scope="session")
def live_server(app: Flask) -> Iterator[str]:
    """The session app served over real HTTP on a free loopback port, for standard
    clients (requests, Authlib) and the browser; its base URL."""
    with factories.serve(app) as url:
        yield url
