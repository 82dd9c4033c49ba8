"""The first sign-in of an imported bcrypt user (issue 24): `make bench-rehash` (also run
by `make bench`).

Issue 24's floor: the first sign-in of an imported bcrypt user costs at most one bcrypt
verification plus one argon2id hash; later sign-ins cost what a native user's does. This
times, in-process (the app's WSGI callable, no HTTP server, so only the sign-in's own work
is measured), interleaved user by user so a busy machine slows all three alike:

- a native user's password sign-in (`POST /oauth/token`);
- the first sign-in of an imported bcrypt user (cost 10, Auth0's default): bcrypt verify,
  argon2id hash, the conditional UPDATE and the `user.password_rehashed` audit row;
- that user's second sign-in (argon2id by then);

and, alone in the same process, one `bcrypt.checkpw` at cost 10, one argon2id hash and one
argon2id verification. Without wrapping anything it then checks the count of primitives
by time: first − native should equal bcrypt verify + argon2id hash − argon2id verify (the
native sign-in's verification is the one the first sign-in does not do), and second −
native should be about zero. Thread CPU (`time.thread_time`) is reported beside wall
time: it leaves out waiting on PostgreSQL and other processes, so it holds up better on
a shared machine.

It builds its own database (`gatehouse_bench_rehash`, dropped at the end) on
BENCH_DATABASE_URL; BENCH_REHASH_USERS (default 30) users of each kind.
"""

from __future__ import annotations

import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import psycopg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import seed  # noqa: E402

ADMIN_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
DB_NAME = "gatehouse_bench_rehash"
USERS = int(os.environ.get("BENCH_REHASH_USERS", "30"))
BCRYPT_COST = 10
PASSWORD = seed.PASSWORD


def _database(drop_only: bool = False) -> str:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    return seed.db_url(ADMIN_URL, DB_NAME)


def _timed(function: Callable[[], Any]) -> tuple[float, float]:
    """(wall ms, thread CPU ms) of one call."""
    wall, cpu = time.perf_counter(), time.thread_time()
    function()
    return (time.perf_counter() - wall) * 1000, (time.thread_time() - cpu) * 1000


def _sign_in(app: Any, tenant_id: str, login: str) -> Callable[[], None]:
    from werkzeug.test import EnvironBuilder

    body = f"grant_type=password&username={login}&password={PASSWORD.replace(' ', '+')}"
    environ = EnvironBuilder(
        path="/oauth/token",
        method="POST",
        headers={"X-Tenant-ID": tenant_id},
        content_type="application/x-www-form-urlencoded",
        data=body,
    ).get_environ()

    def run() -> None:
        request = dict(environ)
        request["wsgi.input"] = io.BytesIO(body.encode())
        statuses: list[str] = []
        b"".join(app(request, lambda status, *_: statuses.append(status)))
        assert statuses[0].startswith("200"), statuses

    return run


def _seed(app: Any) -> str:
    """A tenant with USERS native users and USERS users holding an imported bcrypt hash
    (each its own salt), built through the services; the tenant id."""
    import bcrypt

    from app.core.db import db
    from app.core.tenancy import tenant_scope
    from app.credentials import foreign_hashes
    from app.tenants import service as tenant_service
    from app.users import service as user_service

    with app.app_context():
        tenant = tenant_service.create_tenant(name="rehash")
        with tenant_scope(tenant.id):
            for n in range(USERS):
                user_service.create_user(username=f"native{n}", password=PASSWORD)
                imported = user_service.create_user(username=f"imported{n}")
                raw = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(BCRYPT_COST)).decode()
                imported.password_hash = foreign_hashes.from_string(raw)
        db.session.commit()
        return tenant.id


def _alone() -> dict[str, list[tuple[float, float]]]:
    import bcrypt

    from app.core import security

    stored_bcrypt = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(BCRYPT_COST))
    stored_argon2 = security.hash_password(PASSWORD)
    runs: dict[str, list[tuple[float, float]]] = {"bcrypt": [], "hash": [], "verify": []}
    for _ in range(USERS):
        runs["bcrypt"].append(_timed(lambda: bcrypt.checkpw(PASSWORD.encode(), stored_bcrypt)))
        runs["hash"].append(_timed(lambda: security.hash_password(PASSWORD)))
        runs["verify"].append(_timed(lambda: security.verify_password(stored_argon2, PASSWORD)))
    return runs


def _median(samples: list[tuple[float, float]], index: int) -> float:
    return statistics.median(sample[index] for sample in samples)


def _check(app: Any, tenant_id: str) -> None:
    """Every imported user now holds argon2id, and one audit event each says so."""
    from sqlalchemy import func, select

    from app.audit.models import AuditEvent
    from app.core.db import db
    from app.core.tenancy import tenant_scope
    from app.users.models import User

    with app.app_context(), tenant_scope(tenant_id):
        hashes = db.session.scalars(
            select(User.password_hash).where(User.username.like("imported%"))
        ).all()
        events = db.session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "user.password_rehashed")
        )
    assert len(hashes) == USERS and all(h.startswith("$argon2id$") for h in hashes), hashes
    assert events == USERS, events


def main() -> None:
    url = _database()
    env = {**seed.app_env(ADMIN_URL, REDIS_URL, tempfile.mkdtemp()), "DATABASE_URL": url}
    seed._flask(env, "db", "upgrade")
    os.environ.update(env)
    sys.path.insert(0, str(seed.ROOT))
    from app import create_app

    app = create_app()
    try:
        tenant_id = _seed(app)
        _sign_in(app, tenant_id, "native0")()  # warm up: keys, prepared statements
        runs: dict[str, list[tuple[float, float]]] = {"native": [], "first": [], "second": []}
        for n in range(1, USERS):
            runs["native"].append(_timed(_sign_in(app, tenant_id, f"native{n}")))
            runs["first"].append(_timed(_sign_in(app, tenant_id, f"imported{n}")))
            runs["second"].append(_timed(_sign_in(app, tenant_id, f"imported{n}")))
        _sign_in(app, tenant_id, "imported0")()
        _check(app, tenant_id)
        alone = _alone()
        _report(runs, alone)
    finally:
        with app.app_context():
            from app.core.db import db

            db.engine.dispose()
        _database(drop_only=True)
        seed.drop_queue(REDIS_URL)


def _report(
    runs: dict[str, list[tuple[float, float]]], alone: dict[str, list[tuple[float, float]]]
) -> None:
    print(
        f"\nImported bcrypt (cost {BCRYPT_COST}) sign-in, {USERS - 1} users each, medians "
        f"(load average {os.getloadavg()[0]:.2f}):"
    )
    print(f"{'':46s} {'wall ms':>9s} {'CPU ms':>9s}")
    labels = {
        "native": "native user's sign-in",
        "first": "imported user's first sign-in (rehash)",
        "second": "imported user's second sign-in",
        "bcrypt": "alone: one bcrypt.checkpw (cost 10)",
        "hash": "alone: one argon2id hash",
        "verify": "alone: one argon2id verification",
    }
    figures = {**runs, **alone}
    for key, label in labels.items():
        print(f"{label:46s} {_median(figures[key], 0):9.1f} {_median(figures[key], 1):9.1f}")
    for index, unit in ((0, "wall"), (1, "CPU")):
        native, first, second = (_median(runs[k], index) for k in ("native", "first", "second"))
        bcrypt_ms, hash_ms, verify_ms = (_median(alone[k], index) for k in alone)
        expected = bcrypt_ms + hash_ms - verify_ms
        print(
            f"{unit:>4s}: first − native = {first - native:6.1f} ms; one bcrypt verify + one "
            f"argon2id hash − one argon2id verify = {expected:6.1f} ms "
            f"(ratio {(first - native) / expected:.2f}); second ÷ native = {second / native:.2f}"
        )


if __name__ == "__main__":
    main()
