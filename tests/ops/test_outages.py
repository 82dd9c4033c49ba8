"""A dependency that is down: requests that do not need it still succeed, the rest answer
503 in the surface's shape. Redis here is a real address where nothing listens; the
harness in `reliability/` stops and starts real servers (`make test-reliability`)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from flask import Flask
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.engine import make_url

from app import create_app
from app.core import redis_client
from app.core.db import db
from app.core.ratelimit import RateLimits
from tests import factories
from tests.conftest import admin_url, make_config, redis_url
from tests.domain.test_background import counting_writes
from tests.oauth_support import PASSWORD, assert_oauth_error, bearer

DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@contextmanager
def app_without_redis(app: Flask, database_url: str, tmp: Path, **env: str) -> Iterator[Flask]:
    """A process of the deployment whose Redis (buffers, limits and broker) is down."""
    keys = ",".join(app.config["ENCRYPTION_KEYS"])
    variant = create_app(
        make_config(database_url, tmp, REDIS_URL=DEAD_REDIS, ENCRYPTION_KEYS=keys, **env)
    )
    try:
        yield variant
    finally:
        with variant.app_context():
            db.engine.dispose()


def redis_warnings(caplog: pytest.LogCaptureFixture, words: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if "Redis unavailable" in r.getMessage() and words in r.getMessage()
    ]


def test_reads_and_sign_in_go_on_while_redis_is_down(
    app, database_url, tmp_path: Path, tenant, caplog
):
    factories.make_user(app, tenant.id, user_id="u-ria", username="ria", password=PASSWORD)
    caplog.set_level(logging.WARNING, logger="app")
    with app_without_redis(app, database_url, tmp_path) as outage:
        client = outage.test_client()
        access = factories.sign_in(client, tenant.id, "ria", PASSWORD)["access_token"]
        # The first read writes the activity through (the buffer is down), later ones not.
        with counting_writes(outage) as first:
            response = client.get("/users/me", headers=bearer(access))
        assert response.status_code == 200, response.get_data(as_text=True)
        assert len(first) == 1 and "user_account" in first[0], first
        with counting_writes(outage) as later:
            for path in ("/users/me", "/user/profile", "/users/current"):
                response = client.get(path, headers=bearer(access))
                assert response.status_code == 200, (path, response.get_data(as_text=True))
        assert later == []
        assert client.get("/users/me", headers=bearer(access)).get_json()["last_activity"]
        # An API key's use is written through the same way.
        response = client.get("/user/u-ria", headers=tenant.headers)
        assert response.status_code == 200, response.get_data(as_text=True)
    assert len(redis_warnings(caplog, "activity is written to the database")) == 1
    assert len(redis_warnings(caplog, "rate limits fall back")) == 1


def test_rate_limits_hold_in_memory_while_redis_is_down(
    app, database_url, tmp_path: Path, tenant, caplog
):
    factories.make_user(app, tenant.id, user_id="u-rex", username="rex", password=PASSWORD)
    caplog.set_level(logging.WARNING, logger="app")
    with app_without_redis(
        app, database_url, tmp_path, RATELIMIT_SIGNIN_PER_ACCOUNT="3 per minute"
    ) as outage:
        client = outage.test_client()
        wrong = {"grant_type": "password", "username": "rex", "password": "not-it"}
        for _ in range(3):
            response = client.post("/oauth/token", headers={"X-Tenant-ID": tenant.id}, data=wrong)
            assert_oauth_error(response, 401, "invalid_grant")
        response = client.post("/oauth/token", headers={"X-Tenant-ID": tenant.id}, data=wrong)
        assert_oauth_error(response, 429, "temporarily_unavailable")
        assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert len(redis_warnings(caplog, "rate limits fall back")) == 1


def test_rate_limits_return_to_redis_when_it_is_back(monkeypatch, caplog):
    """The breaker keeps a failing Redis alone for a while, then tries it again."""
    caplog.set_level(logging.WARNING, logger="app")
    limits = RateLimits(redis_url().rpartition("/")[0] + "/13", True, f"breaker-{id(caplog)}")
    try:
        limits.breaker.failed(RedisConnectionError("refused"))
        assert not limits.breaker.should_try()
        limits.check("RATELIMIT_SIGNIN_PER_IP", "2 per minute", "10.0.0.1")  # counted in memory
        monkeypatch.setattr(redis_client, "RETRY_AFTER_SECONDS", 0)
        limits.breaker.failed(RedisConnectionError("refused"))  # still down: not logged again
        limits.check("RATELIMIT_SIGNIN_PER_IP", "2 per minute", "10.0.0.1")  # Redis again
        assert not limits.breaker.down
        limits.check("RATELIMIT_SIGNIN_PER_IP", "2 per minute", "10.0.0.1")
        with pytest.raises(Exception, match="Too many requests"):
            limits.check("RATELIMIT_SIGNIN_PER_IP", "2 per minute", "10.0.0.1")
    finally:
        limits.reset()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("Redis unavailable" in m for m in messages) == 1
    assert sum("Redis is back" in m for m in messages) == 1


DEAD_DATABASE = "postgresql://postgres@127.0.0.1:1/gatehouse"  # nothing listens on port 1


def test_every_surface_answers_503_in_its_shape_while_the_database_is_down(
    app, client, tmp_path: Path, tenant
):
    factories.make_user(app, tenant.id, user_id="u-dee", username="dee", password=PASSWORD)
    access = factories.sign_in(client, tenant.id, "dee", PASSWORD)["access_token"]
    keys = ",".join(app.config["ENCRYPTION_KEYS"])
    outage = create_app(make_config(DEAD_DATABASE, tmp_path, ENCRYPTION_KEYS=keys))
    down = outage.test_client()
    user = bearer(access)
    default = {"error": "database_unavailable", "status": 503}
    for path in ("/user/profile", "/users/current"):
        body = factories.assert_error(down.get(path, headers=user), 503, "database_unavailable")
        assert body.items() >= default.items(), (path, body)
    body = factories.assert_error(
        down.get("/user/u-dee", headers=tenant.headers), 503, "database_unavailable"
    )
    assert body.items() >= default.items()
    response = down.get("/users/me", headers=user)
    assert response.status_code == 503
    assert response.get_json()["error"] == "DATABASE_UNAVAILABLE"
    assert response.get_json()["success"] is False
    response = down.post(
        "/auth/password-reset",
        headers={"X-Tenant-ID": tenant.id},
        json={"email": "dee@example.com", "host": "app.example.com"},
    )
    assert response.status_code == 503
    assert response.get_json()["error"] == "DATABASE_UNAVAILABLE"
    response = down.get("/api/v1/users/me", headers=user)
    assert response.status_code == 503
    assert response.get_json()["code"] == "DATABASE_UNAVAILABLE"
    response = down.post(
        "/oauth/token",
        headers={"X-Tenant-ID": tenant.id},
        data={"grant_type": "password", "username": "dee", "password": PASSWORD},
    )
    assert_oauth_error(response, 503, "temporarily_unavailable")
    assert down.get("/healthz").status_code == 200


def test_a_pooled_connection_closed_by_the_server_is_replaced(
    app, database_url, tmp_path: Path, tenant
):
    """A database restart closes every pooled connection: the next request must not fail."""
    factories.make_user(app, tenant.id, user_id="u-pia", username="pia", password=PASSWORD)
    name = f"gh-pool-{uuid.uuid4().hex[:8]}"
    keys = ",".join(app.config["ENCRYPTION_KEYS"])
    variant = create_app(
        make_config(database_url, tmp_path, ENCRYPTION_KEYS=keys),
        SQLALCHEMY_ENGINE_OPTIONS={
            **app.config["SQLALCHEMY_ENGINE_OPTIONS"],
            "connect_args": {"application_name": name},
        },
    )
    client = variant.test_client()

    def backends() -> list[int]:
        with psycopg.connect(database_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (name,)
            )
            return [pid for (pid,) in rows]

    try:
        assert client.get("/user/u-pia", headers=tenant.headers).status_code == 200
        [before] = backends()
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (before,))
        factories.wait_until(lambda: before not in backends())
        for _ in range(3):
            response = client.get("/user/u-pia", headers=tenant.headers)
            assert response.status_code == 200, response.get_data(as_text=True)
        assert before not in backends() and len(backends()) == 1
    finally:
        with variant.app_context():
            db.engine.dispose()


def _refuse_connections(name: str, *, refuse: bool) -> None:
    """Make PostgreSQL refuse (or accept again) new connections to database `name` and,
    when refusing, close the ones open: the database is down for that deployment."""
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(not refuse).lower()}')
        if refuse:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )


def test_the_hot_read_answers_503_when_the_database_goes_away(
    deployment, isolated_database_url: str
) -> None:
    """Issue 22: during a database restart `GET /user/profile` answered 500: the prepared
    select's raw connection bypassed the mapping to 503. Here the process has verified the
    token and holds pooled connections; then its database goes away under it."""
    app = deployment()
    tenant = factories.make_tenant(app, "outage")
    factories.make_user(app, tenant.id, user_id="u-hot", username="hot", password=PASSWORD)
    client = app.test_client()
    user = bearer(factories.sign_in(client, tenant.id, "hot", PASSWORD)["access_token"])
    reads = ("/user/profile", "/users/me", "/users/current", "/api/v1/users/me")
    for path in reads:  # warm: signing keys cached, connections pooled
        assert client.get(path, headers=user).status_code == 200, path
    name = make_url(isolated_database_url).database
    _refuse_connections(name, refuse=True)
    try:
        for _ in range(2):  # the first finds its pooled connection dead, the next cannot connect
            factories.assert_error(
                client.get("/user/profile", headers=user), 503, "database_unavailable"
            )
            factories.assert_error(
                client.get("/users/current", headers=user), 503, "database_unavailable"
            )
            factories.assert_me_error(
                client.get("/users/me", headers=user), 503, "DATABASE_UNAVAILABLE"
            )
            factories.assert_directory_error(
                client.get("/api/v1/users/me", headers=user), 503, "DATABASE_UNAVAILABLE"
            )
    finally:
        _refuse_connections(name, refuse=False)
    assert client.get("/user/profile", headers=user).status_code == 200


def test_a_raw_driver_error_is_a_503_too() -> None:
    """Whatever path lets psycopg's own error through, the answer is 503, not 500."""
    from app.core.errors import to_app_error

    for raw in (psycopg.OperationalError("server closed"), psycopg.InterfaceError("closed")):
        err = to_app_error(raw)
        assert (err.status, err.code) == (503, "database_unavailable")
