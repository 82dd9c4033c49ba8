"""Test session: a PostgreSQL database built by the migrations, Redis db 15 as the Celery
broker, one app, one real Celery worker thread; every test starts from empty tables.

PostgreSQL and Redis must be reachable (TEST_DATABASE_URL / TEST_REDIS_URL override the
local defaults); if they are not, the run stops with a message instead of skipping.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
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
from sqlalchemy.exc import OperationalError

from app import create_app
from app.core.db import db
from config import Config
from tests import factories
from tests.postmark_fake import FakePostmark, start_fake_postmark

ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
ROOT_KEY = "gh_root_test-root-key-" + uuid.uuid4().hex
RUN_ID = f"gh-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
HOW_TO_START = (
    "Start them with:\n"
    "  pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n"
    '  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no\n'
    "or point TEST_DATABASE_URL / TEST_REDIS_URL at running servers."
)


def _require_services() -> None:
    try:
        psycopg.connect(ADMIN_URL, connect_timeout=3).close()
    except Exception as exc:
        pytest.exit(f"PostgreSQL is not reachable at {ADMIN_URL}: {exc}\n{HOW_TO_START}", 3)
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except Exception as exc:
        pytest.exit(f"Redis is not reachable at {REDIS_URL}: {exc}\n{HOW_TO_START}", 3)


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    _require_services()
    name = f"gatehouse_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield _with_database(ADMIN_URL, name)
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_config(database_url: str, tmp: Path, **extra: str) -> Config:
    environ = {
        "APP_ENV": "testing",
        "INSTANCE_PATH": str(tmp),
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
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
    with start_worker(celery, pool="solo", perform_ping_check=False, shutdown_timeout=10) as worker:
        yield worker


@pytest.fixture(autouse=True)
def clean_tables(app: Flask) -> Iterator[None]:
    app.extensions["gatehouse.ratelimits"].reset()  # counters live in the shared Redis
    yield
    with app.app_context():
        # Signing keys stay: processes cache the current key, as a real deployment does.
        tables = ", ".join(
            f'"{t.name}"' for t in db.metadata.sorted_tables if t.name != "signing_key"
        )
        # The worker thread may still be writing (an audit event): retry on a deadlock.
        for attempt in range(5):
            try:
                db.session.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
                db.session.commit()
                break
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
