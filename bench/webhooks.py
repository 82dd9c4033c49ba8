"""Webhook figures (issue 26): `make bench-webhooks` (also run by `make bench`).

1. What webhooks add to a change: `PATCH /api/v2/users/{id}` in a tenant with three
   endpoints subscribed to `user.updated` against the same call in a tenant with none,
   interleaved call by call, through the app's WSGI callable in this process (no HTTP
   server, so only the request's own work is measured: the subscribed-endpoint select,
   the body, three outbox rows in the change's transaction, and one broker message after
   the commit). Median and p95 of wall time and of thread CPU, and the ratios; the goal
   is at most 1.1×.
2. Delivery throughput: a Celery worker (`celery -A worker worker`, default concurrency,
   the production settings) started against the messages part 1 left pending, sending to
   a local receiver (tests/webhook_receiver.py, 204 at once); messages/s between the
   receiver's first and last request, and from the worker's start to the last row booked.

It builds its own database (`gatehouse_bench_webhooks`, dropped at the end) on
BENCH_DATABASE_URL and uses its own queues in BENCH_REDIS_URL (deleted at the end).
BENCH_WEBHOOK_UPDATES (default 300) calls of each kind. Figures are printed, never
asserted.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import psycopg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import seed  # noqa: E402

sys.path.insert(0, str(seed.ROOT))
from tests.webhook_receiver import Receiver  # noqa: E402

ADMIN_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
DB_NAME = "gatehouse_bench_webhooks"
QUEUE = "gatehouse-bench-webhooks"
UPDATES = int(os.environ.get("BENCH_WEBHOOK_UPDATES", "300"))
ENDPOINTS = 3
ROOT_KEY = "gh_root_bench"


def _database(drop_only: bool = False) -> str:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    return seed.db_url(ADMIN_URL, DB_NAME)


def _drop_queues() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).delete(QUEUE, f"{QUEUE}.webhooks")


def _environment(url: str) -> dict[str, str]:
    return {
        **seed.app_env(ADMIN_URL, REDIS_URL, tempfile.mkdtemp()),
        "DATABASE_URL": url,
        "CELERY_QUEUE": QUEUE,  # webhook tasks go to QUEUE + ".webhooks"
        # The receiver is on loopback over http, which production refuses otherwise.
        "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
        "WEBHOOK_ALLOW_HTTP": "true",
    }


def _call(app: Any, method: str, path: str, headers: dict[str, str], body: Any) -> Any:
    """One request through the WSGI callable; its JSON answer (asserting a 2xx)."""
    from werkzeug.test import EnvironBuilder

    environ = EnvironBuilder(path=path, method=method, headers=headers, json=body).get_environ()
    statuses: list[str] = []
    raw = b"".join(app(environ, lambda status, *_: statuses.append(status)))
    assert statuses[0][:1] == "2", (statuses, raw[:300])
    return json.loads(raw) if raw else None


def _update(app: Any, key: str, user_id: str) -> Callable[[int], None]:
    from werkzeug.test import EnvironBuilder

    def run(n: int) -> None:
        body = json.dumps({"user_metadata": {"n": n}}).encode()
        environ = EnvironBuilder(
            path=f"/api/v2/users/{user_id}",
            method="PATCH",
            headers={"Authorization": f"Bearer {key}"},
            content_type="application/json",
            data=body,
        ).get_environ()
        environ["wsgi.input"] = io.BytesIO(body)
        statuses: list[str] = []
        b"".join(app(environ, lambda status, *_: statuses.append(status)))
        assert statuses[0].startswith("200"), statuses

    return run


def _seed(app: Any, receiver_url: str) -> dict[str, tuple[str, str]]:
    """Two tenants, `hooked` (ENDPOINTS endpoints for user.updated) and `plain` (none),
    each with an API key and one user; {name: (API key, user id)}."""
    from app.core.db import db
    from app.core.tenancy import tenant_scope
    from app.tenants import service as tenant_service
    from app.users import service as user_service

    made: dict[str, tuple[str, str, str]] = {}
    with app.app_context():
        for name in ("hooked", "plain"):
            tenant = tenant_service.create_tenant(name=name)
            with tenant_scope(tenant.id):
                key = tenant_service.issue_api_key(tenant_id=tenant.id, name=name, scopes=["*"])
                user = user_service.create_user(user_id=f"{name}-user", email=f"{name}@x.io")
            made[name] = (key.raw_key, user.id, tenant.id)
        db.session.commit()
    hooked_tenant = made["hooked"][2]
    for n in range(ENDPOINTS):
        _call(
            app,
            "POST",
            f"/tenants/{hooked_tenant}/webhooks",
            {"Authorization": f"Bearer {ROOT_KEY}"},
            {"url": f"{receiver_url}/{n}", "event_types": ["user.updated"]},
        )
    return {name: (key, user_id) for name, (key, user_id, _) in made.items()}


def _timed(function: Callable[[int], None], n: int) -> tuple[float, float]:
    """(wall ms, thread CPU ms) of one call."""
    wall, cpu = time.perf_counter(), time.thread_time()
    function(n)
    return (time.perf_counter() - wall) * 1000, (time.thread_time() - cpu) * 1000


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def _latency(app: Any, tenants: dict[str, tuple[str, str]]) -> dict[str, list[tuple[float, float]]]:
    calls = {name: _update(app, *tenants[name]) for name in tenants}
    for n in range(20):  # warm up: prepared statements, the pool, the broker connection
        for call in calls.values():
            call(n)
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in calls}
    for n in range(UPDATES):
        order = list(calls) if n % 2 == 0 else list(reversed(calls))  # neither always first
        for name in order:
            runs[name].append(_timed(calls[name], n))
    return runs


def _pending(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM webhook_message WHERE status = 'pending'"
        ).fetchone()[0]  # type: ignore[index]


def _throughput(env: dict[str, str], url: str, receiver: Receiver) -> dict[str, Any]:
    """Start one worker on the pending messages; figures of how fast they go out."""
    total = _pending(url)
    log = tempfile.NamedTemporaryFile(prefix="bench-webhooks-worker-", suffix=".log", delete=False)
    started = time.monotonic()
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker", "worker", "--loglevel", "WARNING",
         "-n", f"bench-webhooks-{os.getpid()}@%h"],
        cwd=seed.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while _pending(url) and time.monotonic() < deadline:
            time.sleep(0.05)
        done = time.monotonic()
        left = _pending(url)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    requests = receiver.requests()
    span = requests[-1].at - requests[0].at if len(requests) > 1 else float("nan")
    with psycopg.connect(url, autocommit=True) as conn:
        statuses = dict(
            conn.execute("SELECT status, count(*) FROM webhook_message GROUP BY status").fetchall()
        )
    return {
        "messages": total,
        "left": left,
        "requests": len(requests),
        "distinct_ids": len({r.webhook_id for r in requests}),
        "statuses": statuses,
        "per_second_receiver": (len(requests) - 1) / span if span else float("nan"),
        "span": span,
        "per_second_from_start": total / (done - started),
        "from_start": done - started,
        "log": log.name,
    }


def main() -> None:
    url = _database()
    env = _environment(url)
    seed._flask(env, "db", "upgrade")
    _drop_queues()
    os.environ.update(env)
    from app import create_app

    app = create_app()
    receiver = Receiver().start()
    try:
        tenants = _seed(app, receiver.url)
        runs = _latency(app, tenants)
        _report_latency(runs)
        figures = _throughput(env, url, receiver)
        _report_throughput(figures)
    finally:
        receiver.stop()
        with app.app_context():
            from app.core.db import db

            db.engine.dispose()
        _database(drop_only=True)
        _drop_queues()


def _report_latency(runs: dict[str, list[tuple[float, float]]]) -> None:
    print(
        f"\nWebhooks: PATCH /api/v2/users/{{id}}, {UPDATES} calls each, interleaved, "
        f"in-process (load average {os.getloadavg()[0]:.2f}):"
    )
    print(f"{'':40s} {'wall p50':>9s} {'wall p95':>9s} {'CPU p50':>9s} {'CPU p95':>9s}")
    labels = {"plain": "no endpoint", "hooked": f"{ENDPOINTS} endpoints subscribed"}
    figures: dict[str, list[float]] = {}
    for name, label in labels.items():
        wall = [sample[0] for sample in runs[name]]
        cpu = [sample[1] for sample in runs[name]]
        figures[name] = [statistics.median(wall), _p95(wall), statistics.median(cpu), _p95(cpu)]
        print(f"{label:40s} " + " ".join(f"{value:9.2f}" for value in figures[name]))
    ratios = [h / p for h, p in zip(figures["hooked"], figures["plain"], strict=True)]
    print(f"{'ratio (goal ≤ 1.1)':40s} " + " ".join(f"{value:9.2f}" for value in ratios))


def _report_throughput(figures: dict[str, Any]) -> None:
    print(
        f"\nWebhooks: delivery by one worker (default concurrency, {os.cpu_count()} cores) "
        f"to a local receiver answering 204:"
    )
    print(
        f"  {figures['messages']} messages: {figures['per_second_receiver']:.1f} messages/s "
        f"between the first and last request ({figures['span']:.2f} s), "
        f"{figures['per_second_from_start']:.1f} messages/s from the worker's start "
        f"({figures['from_start']:.2f} s, start-up included)"
    )
    print(
        f"  received {figures['requests']} requests, {figures['distinct_ids']} distinct "
        f"webhook-ids; rows {figures['statuses']}; {figures['left']} left pending"
        + (f" (worker log: {figures['log']})" if figures["left"] else "")
    )


if __name__ == "__main__":
    main()
