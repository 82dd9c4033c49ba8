"""The admin console's pages, timed on the server against the bench database:
`make bench-console` (also part of `make bench`).

In the `scale-big` tenant (BENCH_USERS users, default 1 000 000; bench/seed.py seeds it
once), the bench gives a console role to one user, adds BENCH_AUDIT_EVENTS audit events
over the last 30 days (once: sign-ins, failed sign-ins and sign-ups, as the dashboard
counts them), signs in through the console's real flow in-process (Flask's test client:
/console → /authorize → the login form → /console/callback), then requests every console
page BENCH_CONSOLE_REQUESTS times and prints the median and worst server time of each.
Goal: under 150 ms a page. No HTTP server and no wrk: this is the time one request spends
in the app and PostgreSQL, on a machine that may be busy with other work.

`BENCH_DB_NAME` names another bench database (seeded the same way), so a run at another
size does not drop the one `make bench` keeps.
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any
from urllib.parse import urlsplit

import psycopg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import seed  # noqa: E402

ADMIN_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
USERS = int(os.environ.get("BENCH_USERS", "1000000"))
AUDIT_EVENTS = int(os.environ.get("BENCH_AUDIT_EVENTS", "100000"))
REQUESTS = int(os.environ.get("BENCH_CONSOLE_REQUESTS", "20"))
GOAL_MS = 150
ADMIN_ID, ADMIN_EMAIL = "console-admin", "console-admin@example.com"
INPUT = re.compile(r"<input[^>]*>")
ATTRIBUTE = re.compile(r'(name|value)="([^"]*)"')


def _fields(html: str) -> dict[str, str]:
    """The named inputs of a page's form and their values."""
    fields = {}
    for tag in INPUT.findall(html):
        attributes = dict(ATTRIBUTE.findall(tag))
        if "name" in attributes:
            fields[attributes["name"]] = unescape(attributes.get("value", ""))
    return fields


def _local(location: str) -> str:
    parts = urlsplit(location)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def _add_audit_events(url: str, tenant_id: str, count: int) -> None:
    """`count` sign-in, failed sign-in and sign-up events spread over 30 days (by COPY, a
    fixture like the users), once per database."""
    with psycopg.connect(url) as conn:
        done = conn.execute(
            "SELECT count(*) FROM audit_event WHERE tenant_id = %s AND actor = 'bench'",
            (tenant_id,),
        ).fetchone()
        if done and done[0] >= count:
            return
        print(f"adding {count:,} audit events to scale-big …", flush=True)
        now = datetime.now(UTC)
        actions = ("user.signed_in",) * 8 + ("user.signin_failed", "user.created")
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY audit_event (id, tenant_id, action, actor, user_id, ip, data, created_at)"
                " FROM STDIN"
            ) as copy,
        ):
            for n in range(count):
                at = now - timedelta(seconds=n * 30 * 86400 / count)
                user = f"user{n % USERS:08d}"
                copy.write_row(
                    (f"bench{n:027d}", tenant_id, actions[n % 10], "bench", user, "10.0.0.1",
                     "{}", at)
                )  # fmt: skip
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE audit_event")


def _console_admin(app: Any, tenant_id: str) -> None:
    """The console's admin in scale-big: a user with a password, holding console:admin."""
    from app.console import service as console_service
    from app.core.db import db
    from app.core.tenancy import Principal, tenant_scope
    from app.users import service as user_service

    with app.app_context(), tenant_scope(tenant_id):
        if not user_service.find_by_email(ADMIN_EMAIL):
            user_service.create_user(user_id=ADMIN_ID, email=ADMIN_EMAIL, password=seed.PASSWORD)
        console_service.grant_member(
            tenant_id=tenant_id,
            user_id=ADMIN_ID,
            role=console_service.ADMIN,
            actor=Principal(tenant_id=tenant_id, kind="cli"),
        )
        db.session.commit()


def _sign_in(client: Any, tenant_id: str) -> None:
    """The console's sign-in as a browser makes it: console → hosted login → callback."""
    sent = client.get("/console", query_string={"tenant": tenant_id})
    assert sent.status_code == 302, sent.status_code
    login = client.get(_local(sent.headers["Location"]))
    fields = {**_fields(login.get_data(as_text=True)), "username": ADMIN_EMAIL}
    answer = client.post("/authorize", data={**fields, "password": seed.PASSWORD})
    assert answer.status_code == 303, answer.get_data(as_text=True)[:500]
    back = client.get(_local(answer.headers["Location"]))
    assert back.status_code == 303, back.get_data(as_text=True)[:500]


def _pages(app: Any) -> list[tuple[str, str]]:
    """(name, path) of every console page a GET shows: the argument-free ones found in the
    URL map, plus a search and a user's page when those pages exist."""
    skip = {"console.choose_tenant", "console.callback", "console.static", "console.audit_export"}
    pages = [("dashboard", "/console")]
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.endpoint.startswith("console.") or "GET" not in (rule.methods or ()):
            continue
        if rule.endpoint in skip or rule.arguments or rule.rule == "/console":
            continue
        pages.append((rule.rule.removeprefix("/console/"), rule.rule))
    pages.append(("audit, actor filter", f"/console/audit?actor=user:{ADMIN_ID}"))
    week_ago = (datetime.now(UTC) - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M")
    pages.append(
        ("audit, action, 7 days", f"/console/audit?action=user.signin_failed&from={week_ago}")
    )
    endpoints = {rule.endpoint: rule for rule in app.url_map.iter_rules()}
    if "console.users" in endpoints:
        pages.append(("users, email search", "/console/users?q=user0042"))
    user_id = f"user{min(424242, USERS - 1):08d}"  # a seeded user deep in the tenant
    for name, rule in endpoints.items():
        # The user's own page (not a confirmation page under it).
        if re.fullmatch(r"/console/users/<(?:string:)?user_id>", rule.rule):
            path = rule.rule.split("<")[0] + user_id
            pages.append((f"{name.removeprefix('console.')} (a user)", path))
    return pages


def _time(client: Any, path: str) -> tuple[float, float]:
    """Median and worst wall time (ms) of REQUESTS requests, after 3 unmeasured."""
    spent = []
    for n in range(REQUESTS + 3):
        started = time.perf_counter()
        answer = client.get(path)
        elapsed = (time.perf_counter() - started) * 1000
        assert answer.status_code == 200, (path, answer.status_code)
        if n >= 3:
            spent.append(elapsed)
    return statistics.median(spent), max(spent)


def main() -> None:
    if os.environ.get("BENCH_DB_NAME"):
        # Its own pair: a reset (another size) then never drops `make bench`'s peer database.
        seed.DB_NAME = os.environ["BENCH_DB_NAME"]
        seed.PEER_DB_NAME = f"{seed.DB_NAME}_peer"
    env = seed.app_env(ADMIN_URL, REDIS_URL, tempfile.mkdtemp())
    state = seed.prepare(ADMIN_URL, env, USERS)
    url = seed.db_url(ADMIN_URL, seed.DB_NAME)
    _add_audit_events(url, state.big_tenant_id, AUDIT_EVENTS)
    os.environ.update(env)
    sys.path.insert(0, str(seed.ROOT))
    from app import create_app

    app = create_app()
    _console_admin(app, state.big_tenant_id)
    client = app.test_client()
    _sign_in(client, state.big_tenant_id)
    print(
        f"console pages, scale-big tenant ({state.big_users:,} users, {AUDIT_EVENTS:,} audit "
        f"events), {REQUESTS} requests each, server time in-process:"
    )
    print(f"{'page':34s} {'median ms':>10s} {'worst ms':>9s}  goal < {GOAL_MS} ms")
    slow = []
    for name, path in _pages(app):
        median, worst = _time(client, path)
        verdict = "ok" if median < GOAL_MS else "SLOW"
        if median >= GOAL_MS:
            slow.append(name)
        print(f"{name:34s} {median:10.1f} {worst:9.1f}  {verdict}")
    seed.drop_queue(REDIS_URL)
    if slow:
        print(f"over the goal: {', '.join(slow)}")


if __name__ == "__main__":
    main()
