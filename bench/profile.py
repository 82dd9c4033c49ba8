"""Where a request's CPU goes, in-process (no HTTP server, no wrk): `make bench-profile`.

Runs against the bench database that `make bench` seeded and prints the thread CPU per
request of `GET /healthz`, of `GET /user/profile` split by phase, and of a password
sign-in split by phase (as the bench sends it, and with a `scope` that leaves out
`openid`), each followed by its round trips to PostgreSQL and Redis and the statements
they carried, counted on the wire by one more request (bench/roundtrips.py); then the
bearer check's select alone in its two forms (the whole view, read when a worker keeps
none or a stale one, and the revocation columns and version, read while the kept view
holds), interleaved. Thread CPU leaves out the time spent waiting on PostgreSQL, so the
split holds up on a busy machine better than wall time. For a sampling profile of
the real server under load, see bench/README.md (py-spy).
"""

from __future__ import annotations

import collections
import io
import os
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roundtrips  # noqa: E402
import seed  # noqa: E402

ADMIN_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
SPENT: collections.Counter[str] = collections.Counter()


def _timed(label: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time_ns()
        try:
            return function(*args, **kwargs)
        finally:
            SPENT[label] += time.thread_time_ns() - started

    return timed


def _instrument() -> None:
    """Wrap the phases worth naming (module attributes, looked up at call time); a phase
    this checkout does not have is left out."""
    import flask.ctx
    import flask_smorest.response
    import sqlalchemy.orm.scoping
    import werkzeug.wrappers

    from app.api import auth, dump
    from app.core import prepared, ratelimit, security
    from app.signin import flow
    from app.tokens import bearer, signing
    from app.tokens import service as token_service

    wrapped = [
        (flask.ctx.RequestContext, "push", "request context in (request object, routing)"),
        (flask.ctx.RequestContext, "pop", "request context out (teardown hooks in it)"),
        (werkzeug.wrappers.Response, "__call__", "answer out (status, headers, WSGI body)"),
        (prepared, "fetch_one", "  the one select (prepared)"),
        (bearer, "authenticate_access_token", " bearer check"),
        (auth, "authenticate", "authenticate (credential, bearer check, activity)"),
        (dump.CompiledOutputSchema, "dump", "schema dump"),
        (flask_smorest.response, "jsonify", "jsonify"),
        (security, "verify_password", " argon2id verify"),
        (flow, "password_grant", "password grant"),
        (signing, "sign", "  RS256 signatures"),
        (ratelimit, "check_all", " rate limits (one Redis pipeline)"),
        (ratelimit, "check", " rate limit (one at a time)"),
        # before: the ORM's statements one by one
        ("app.users.passwords", "login_candidates", " candidates select"),
        ("app.tenants.service", "find_tenant", " tenant select"),
        (token_service, "record_login", " login count + audit"),
        (token_service, "issue_session", " issue tokens"),
        (sqlalchemy.orm.scoping.scoped_session, "flush", " ORM flush (INSERTs)"),
        # after: one read, one write
        ("app.signin.lookup", "find", " the one read (tenant, candidates, TOTP, policies)"),
        ("app.tokens.login", "sign_in", " the one write, with the signing before it"),
        (prepared, "write", "  the write statement (prepared)"),
        (sqlalchemy.orm.scoping.scoped_session, "commit", "commit"),
    ]
    import importlib

    for owner, name, label in wrapped:
        try:
            target = importlib.import_module(owner) if isinstance(owner, str) else owner
        except ImportError:
            continue
        if hasattr(target, name):
            setattr(target, name, _timed(label, getattr(target, name)))


def _run(app: Any, path: str, headers: dict[str, str], count: int, body: bytes = b"") -> float:
    from werkzeug.test import EnvironBuilder

    method = "POST" if body else "GET"
    kind = "application/json" if body else None
    base = EnvironBuilder(path=path, method=method, headers=headers, content_type=kind, data=body)
    environ = base.get_environ()
    statuses: list[str] = []
    started = time.thread_time_ns()
    for _ in range(count):
        request = dict(environ)
        request["wsgi.input"] = io.BytesIO(body)
        b"".join(app(request, lambda status, *_: statuses.append(status)))
    assert statuses[-1].startswith("200"), statuses[-1]
    return (time.thread_time_ns() - started) / count / 1000


def _instrument_hooks(app: Any) -> None:
    """Wrap each of the app's request hooks (before, after, teardown), so the split names
    them one by one."""
    for kind, registry in (
        ("before", app.before_request_funcs),
        ("after", app.after_request_funcs),
        (" teardown", app.teardown_request_funcs),  # inside the context's pop
    ):
        for key, functions in registry.items():
            registry[key] = [
                _timed(f"{kind} hook {function.__qualname__.split('.')[-1]}", function)
                for function in functions
            ]
    app.teardown_appcontext_funcs[:] = [
        _timed(f" teardown hook {function.__qualname__.split('.')[-1]}", function)
        for function in app.teardown_appcontext_funcs
    ]


def _report(title: str, total_us: float, count: int) -> None:
    print(f"{title}: {total_us:,.0f} us CPU per request")
    for label, spent in sorted(SPENT.items(), key=lambda item: -item[1]):
        print(f"   {label:52s} {spent / count / 1000:8,.0f} us")
    # Labels without a leading space are not inside another: what they leave is Flask's
    # dispatch (the hook loops, making the response) and the view's own code and wrappers.
    named = sum(spent for label, spent in SPENT.items() if not label.startswith(" "))
    rest = total_us - named / count / 1000
    print(f"   {'the rest (dispatch, the view and its wrappers)':52s} {rest:8,.0f} us")
    SPENT.clear()


def _wire(app: Any, path: str, headers: dict[str, str], body: bytes = b"") -> None:
    """Print the round trips of one more request (traced: its CPU is not counted)."""
    from app.core.db import db

    with app.app_context():
        engine = db.engine
    with roundtrips.traced(engine) as wire:
        _run(app, path, headers, 1, body)
    SPENT.clear()
    print("   on the wire: " + wire.describe())


def _selects(app: Any, access_token: str) -> None:
    """The bearer check's select alone, whole against kept, in alternating blocks of 25
    (so both forms meet the same load): median thread CPU per select, client side."""
    import statistics

    import jwt

    from app.core import prepared
    from app.core.db import db
    from app.tokens import bearer

    claims = jwt.decode(access_token, options={"verify_signature": False})
    params = {"tenant_id": claims["tid"], "user_id": claims["sub"], "session_id": claims["sid"]}
    rounds, block = int(os.environ.get("BENCH_PROFILE_SELECT_ROUNDS", "200")), 25
    with app.app_context():
        dialect = db.engine.dialect.name
        forms = {
            "whole view (none kept, or stale)": bearer._caller_select(dialect, whole=True),
            "revocation columns + version (view kept)": bearer._caller_select(dialect, whole=False),
        }
        spent: dict[str, list[float]] = {label: [] for label in forms}
        for _ in range(rounds):
            for label, statement in forms.items():
                started = time.thread_time_ns()
                for _ in range(block):
                    prepared.fetch_one(statement, params)
                spent[label].append((time.thread_time_ns() - started) / block / 1000)
    SPENT.clear()
    print("the bearer check's select alone (client side, median of blocks)")
    for label, blocks in spent.items():
        print(f"   {label:52s} {statistics.median(blocks):8,.0f} us")


def main() -> None:
    state = seed.in_process(ADMIN_URL, REDIS_URL)
    _instrument()
    from app import create_app

    app = create_app()
    _instrument_hooks(app)
    login, tenant = seed.password_login(state)
    client = app.test_client()
    token = client.post("/oauth/token", data=login, headers=tenant, content_type="application/json")
    bearer = {"Authorization": f"Bearer {token.get_json()['access_token']}"}
    reads = int(os.environ.get("BENCH_PROFILE_READS", "3000"))
    for path, headers in (("/healthz", {}), ("/user/profile", bearer)):
        _run(app, path, headers, 100)
        SPENT.clear()
        _report(f"GET {path}", _run(app, path, headers, reads), reads)
        _wire(app, path, headers)
    _selects(app, token.get_json()["access_token"])
    signins = int(os.environ.get("BENCH_PROFILE_SIGNINS", "40"))
    without_openid = login[:-1] + b', "scope": "read:current_user"}'
    for title, body in (("", login), (", scope without openid", without_openid)):
        _run(app, "/oauth/token", tenant, 3, body)
        SPENT.clear()
        spent = _run(app, "/oauth/token", tenant, signins, body)
        _report(f"POST /oauth/token (password{title})", spent, signins)
        _wire(app, "/oauth/token", tenant, body)
    seed.drop_queue(REDIS_URL)


if __name__ == "__main__":
    main()
