"""The bench's databases, built once and kept between runs (`make bench-reset` drops them):
`gatehouse_bench` for Gatehouse and `gatehouse_bench_peer` for the fastapi-users peer.

Gatehouse's holds three tenants: `bench` (the user whose profile, API-key read and secret
value are measured), `scale-small` with 1 000 users and `scale-big` with BENCH_USERS users
(the list page and email lookup are timed in both, in the same run). Bulk users go in by
COPY: a fixture, not the service's path. What a later run needs (ids, the API key) is kept
in a `bench_state` table of the bench database itself.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
DB_NAME = "gatehouse_bench"
PEER_DB_NAME = "gatehouse_bench_peer"
PASSWORD = "bench-password-1"
SMALL_USERS = 1000
SEED_VERSION = "2"  # bump when what is seeded changes: the next run rebuilds


@dataclass
class State:
    tenant_id: str
    api_key: str
    user_id: str
    secret_id: str
    small_tenant_id: str
    big_tenant_id: str
    big_users: int
    seed_version: str


def db_url(admin_url: str, name: str) -> str:
    return admin_url.rpartition("/")[0] + "/" + name


def app_env(admin_url: str, redis_url: str, instance: str) -> dict[str, str]:
    """The service's environment in the bench (production mode, limits off)."""
    return {
        **os.environ,
        "APP_ENV": "production",
        "DATABASE_URL": db_url(admin_url, DB_NAME),
        "REDIS_URL": redis_url,
        "CELERY_QUEUE": "gatehouse-bench",  # no worker runs: reset() empties it
        "SECRET_KEY": "bench-secret-key-0123456789-0123456789",  # production wants >= 32 bytes
        "ENCRYPTION_KEYS": base64.urlsafe_b64encode(b"b" * 32).decode(),
        "ROOT_API_KEY": "gh_root_bench",
        "RATELIMIT_ENABLED": "false",
        "INSTANCE_PATH": instance,
        "LOG_LEVEL": "WARNING",
    }


def in_process(admin_url: str, redis_url: str) -> State:
    """Ready this process to build the app against the seeded bench database (its
    environment, the project on sys.path) and return the seed's state; stops when
    `make bench` has not seeded it yet. For the in-process tools (profile, instructions)."""
    state = _read_state(db_url(admin_url, DB_NAME))
    if state is None:
        sys.exit("run `make bench` once first: it seeds the bench database")
    os.environ.update(app_env(admin_url, redis_url, tempfile.mkdtemp()))
    sys.path.insert(0, str(ROOT))
    return state


def password_login(state: State) -> tuple[bytes, dict[str, str]]:
    """The bench user's password grant: its JSON body and its tenant header."""
    body = {"grant_type": "password", "username": "bench@example.com", "password": PASSWORD}
    return json.dumps(body).encode(), {"X-Tenant-ID": state.tenant_id}


def _exists(admin_url: str, name: str) -> bool:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        return row is not None


def _create(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def reset(admin_url: str, redis_url: str) -> None:
    """Drop both bench databases and the bench's Celery queue."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for name in (DB_NAME, PEER_DB_NAME):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    drop_queue(redis_url)
    print(f"dropped {DB_NAME} and {PEER_DB_NAME}")


def drop_queue(redis_url: str) -> None:
    import redis

    redis.Redis.from_url(redis_url).delete("gatehouse-bench")


STATE_TABLE = "CREATE TABLE IF NOT EXISTS bench_state (key text PRIMARY KEY, value text)"


def _read_state(url: str) -> State | None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(STATE_TABLE)
        values = dict(conn.execute("SELECT key, value FROM bench_state").fetchall())
    try:
        state = State(**{**values, "big_users": int(values.get("big_users", -1))})
    except TypeError:
        return None
    return state if state.seed_version == SEED_VERSION else None


def _write_state(url: str, state: State) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(STATE_TABLE)
        conn.execute("DELETE FROM bench_state")
        for key, value in asdict(state).items():
            conn.execute("INSERT INTO bench_state VALUES (%s, %s)", (key, str(value)))


def copy_users(url: str, tenant_id: str, count: int) -> None:
    """Bulk-load `count` users (userNNNNNNNN, userNNNNNNNN@example.com, no password) into
    a tenant with COPY: the bench's million, and the browser tests' thousands."""
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY user_account (tenant_id, id, username, username_normalized, email,"
            " email_normalized, email_verified, blocked, custom_scopes, settings,"
            " user_metadata, app_metadata, require_twofactor_auth, logins_count, version,"
            " created_at, updated_at) FROM STDIN"
        ) as copy:
            for n in range(count):
                name = f"user{n:08d}"
                mail = f"{name}@example.com"
                copy.write_row(
                    (tenant_id, name, name, name, mail, mail, True, False, "[]", "[]", "{}",
                     "{}", False, 0, 1, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z")
                )  # fmt: skip
        conn.commit()


def _seed_in_process(env: dict[str, str]) -> dict[str, Any]:
    """Tenants, key, the measured user and its secret, through the services."""
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    from app import create_app
    from app.core.db import db
    from app.core.tenancy import tenant_scope
    from app.secrets import service as secret_service
    from app.tenants import service as tenant_service
    from app.users import service as user_service

    app = create_app()
    with app.app_context():
        tenant = tenant_service.create_tenant(name="bench")
        small = tenant_service.create_tenant(name="scale-small")
        big = tenant_service.create_tenant(name="scale-big")
        with tenant_scope(tenant.id):
            key = tenant_service.issue_api_key(tenant_id=tenant.id, name="bench")
            user = user_service.create_user(
                user_id="bench-user", email="bench@example.com", password=PASSWORD
            )
            secret = secret_service.create_secret(
                user_id=user.id, name="bench-secret", value="s3cr3t-value " * 8
            )
        values = {
            "tenant_id": tenant.id,
            "api_key": key.raw_key,
            "user_id": user.id,
            "secret_id": secret.id,
            "small_tenant_id": small.id,
            "big_tenant_id": big.id,
        }
        db.session.commit()
        db.engine.dispose()
    return values


def _flask(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )


def prepare(admin_url: str, env: dict[str, str], big_users: int) -> State:
    """The bench database at the current migration head, seeded (once) for `big_users`."""
    url = db_url(admin_url, DB_NAME)
    fresh = not _exists(admin_url, DB_NAME)
    if fresh:
        _create(admin_url, DB_NAME)
    _flask(env, "db", "upgrade")
    state = None if fresh else _read_state(url)
    if state is not None and state.big_users == big_users:
        return state
    if not fresh:  # another size, an older seed or an unfinished one: start over
        reset(admin_url, env["REDIS_URL"])
        return prepare(admin_url, env, big_users)
    print(f"seeding {DB_NAME}: 1 000 + {big_users:,} users (kept for later runs) …", flush=True)
    values = _seed_in_process(env)
    copy_users(url, values["small_tenant_id"], SMALL_USERS)
    copy_users(url, values["big_tenant_id"], big_users)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")  # the bulk load's I/O must not land on the timings
    state = State(**values, big_users=big_users, seed_version=SEED_VERSION)
    _write_state(url, state)
    return state


def prepare_peer(admin_url: str, peer_python: str, peer_env: dict[str, str]) -> None:
    """The peer's database and table (its own `create_all`)."""
    if not _exists(admin_url, PEER_DB_NAME):
        _create(admin_url, PEER_DB_NAME)
    subprocess.run(
        [peer_python, "fastapi_users_app.py"],
        cwd=ROOT / "bench" / "peers",
        env=peer_env,
        check=True,
    )
