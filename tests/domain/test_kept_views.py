"""Kept profile views (issue 29): each worker keeps its callers' views under the row's
`profile_version`, yet every revocation holds on the next request and every change of what
a view prints shows on the next read — in another worker too. Two gunicorn servers of one
worker each (two processes, two caches) on the test database: a view is read in both,
the change is made through the first (or, where no surface makes it, by this process or
by SQL typed by hand), and the next request in the second must see it.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import pytest
import requests
from flask import Flask
from sqlalchemy import text

from app.core.db import db
from app.core.tenancy import tenant_scope
from app.tokens import sessions
from app.tokens.models import AuthSession
from app.users import service as user_service
from tests import factories
from tests.factories import PASSWORD, TenantHandle
from tests.oauth_support import claims, exchange, sign_in_through_page

HOST = "app.example.com"
RESET_LINK = re.compile(r"https://app\.example\.com/reset-password\?token=([^\s\"'<>&]+)")
NEW_PASSWORD = "a brand new staple 42"
POLICY = (
    "INSERT INTO policy (tenant_id, user_id, resource, resource_type, type)"
    " VALUES (:tenant, :id, :name, 'doc', 'read')"
)


class Answer:
    """A requests response with the parts of Flask's test response the helpers read."""

    def __init__(self, response: requests.Response) -> None:
        self.status_code = response.status_code
        self.headers = response.headers
        self._response = response

    def get_json(self) -> Any:
        return self._response.json()

    def get_data(self, as_text: bool = False) -> Any:
        return self._response.text if as_text else self._response.content


class Worker:
    """One gunicorn server over real HTTP, driven like Flask's test client (one
    connection kept alive, cookies kept, redirects not followed)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = requests.Session()

    def open(self, method: str, path: str, query_string: Any = None, **kw: Any) -> Answer:
        sent = self.http.request(
            method, self.base + path, params=query_string, allow_redirects=False, timeout=30, **kw
        )
        return Answer(sent)

    def get(self, path: str, **kw: Any) -> Answer:
        return self.open("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Answer:
        return self.open("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> Answer:
        return self.open("PUT", path, **kw)

    def patch(self, path: str, **kw: Any) -> Answer:
        return self.open("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> Answer:
        return self.open("DELETE", path, **kw)


@pytest.fixture(scope="module")
def workers(app: Flask, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Worker]]:
    """Two servers of one gunicorn worker each, as gunicorn.conf.py runs them; refresh
    tokens may not be reused at all (no grace), so a reuse ends its session at once."""
    env = factories.process_env(app, REFRESH_REUSE_GRACE_SECONDS="0", WEB_CONCURRENCY="1")
    log = tmp_path_factory.mktemp("kept-views") / "gunicorn.log"
    with factories.gunicorn(env, log) as first, factories.gunicorn(env, log) as second:
        workers = [Worker(first), Worker(second)]
        yield workers
        # A kept-alive idle connection holds a gthread worker's graceful stop ~2 s longer.
        for worker in workers:
            worker.http.close()


@dataclass
class Caller:
    tenant: TenantHandle
    user_id: str
    tokens: dict[str, Any]

    @property
    def key(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tenant.key}"}


@pytest.fixture()
def mail_tenant(app: Flask) -> TenantHandle:
    return factories.make_tenant(
        app,
        "keptco",
        email_from="noreply@example.com",
        postmark_server_token="pm-token-1",
        password_reset_hosts=[HOST],
    )


def _caller(app: Flask, tenant: TenantHandle, worker: Worker, **fields: Any) -> Caller:
    factories.make_user(
        app, tenant.id, user_id="kim-1", username="kim", email="kim@example.com", password=PASSWORD,
        **fields,
    )  # fmt: skip
    return Caller(tenant, "kim-1", factories.sign_in(worker, tenant.id, "kim"))


def _profile(worker: Worker, access_token: str) -> Answer:
    return worker.get("/user/profile", headers=factories.bearer(access_token))


def _read_in_both(workers: list[Worker], access_token: str) -> dict[str, Any]:
    """Read the profile in both workers (so each keeps the view); the answer."""
    answers = [_profile(worker, access_token) for worker in workers for _ in range(2)]
    assert [a.status_code for a in answers] == [200] * 4, answers[0].get_data(as_text=True)
    assert all(a.get_json() == answers[0].get_json() for a in answers)
    return answers[0].get_json()


def _update(app: Flask, caller: Caller, **changes: Any) -> None:
    """Change the user through the service, in this process (no surface sets these)."""
    with app.app_context(), tenant_scope(caller.tenant.id):
        user = user_service.get_user(caller.user_id)
        user_service.update_user(user=user, changes=changes, actor="test")
        db.session.commit()


def _ok(answer: Answer, status: int = 200) -> Answer:
    assert answer.status_code == status, answer.get_data(as_text=True)
    return answer


# --- the revocation paths (tests/domain/test_revocation.py, SPEC §10) -----------------------


def _password_change(app: Flask, worker: Worker, caller: Caller, request: Any) -> None:
    path = "/api/v1/users/kim/password"
    _ok(worker.put(path, json={"new_password": NEW_PASSWORD}, headers=caller.key))


def _password_reset(app: Flask, worker: Worker, caller: Caller, request: Any) -> None:
    request.getfixturevalue("celery_worker")
    postmark = request.getfixturevalue("postmark")
    asked = worker.post(
        "/auth/password-reset",
        json={"host": HOST, "email": "kim@example.com"},
        headers={"X-Tenant-ID": caller.tenant.id},
    )
    _ok(asked)
    [mail] = factories.wait_until(lambda: postmark.mails())
    token = unquote(RESET_LINK.search(html.unescape(mail.body["TextBody"])).group(1))  # type: ignore[union-attr]
    confirm = {"token": token, "password": NEW_PASSWORD}
    _ok(worker.post("/auth/password-reset/confirm", json=confirm))


def _block(app: Flask, worker: Worker, caller: Caller, request: Any) -> None:
    path = f"/api/v2/users/{caller.user_id}"
    _ok(worker.patch(path, json={"blocked": True}, headers=caller.key))


def _delete(app: Flask, worker: Worker, caller: Caller, request: Any) -> None:
    _ok(worker.delete(f"/api/v2/users/{caller.user_id}", headers=caller.key), 204)


def _session_revoke(app: Flask, worker: Worker, caller: Caller, request: Any) -> None:
    _ok(worker.post("/oauth/revoke", data={"token": caller.tokens["refresh_token"]}))


def _logout(app: Flask, worker: Worker, caller: Caller, request: Any) -> None:
    # Signing out the browser's sign-in session on the account page (from another device)
    # ends the application sessions issued through it. (RP-initiated /logout ends the
    # browser session only: an application's tokens live until revoked or signed out here.)
    with app.app_context(), tenant_scope(caller.tenant.id):
        session = db.session.get(AuthSession, claims(caller.tokens["access_token"])["sid"])
        assert session is not None and session.parent_id is not None
        user = user_service.get_user(caller.user_id)
        sessions.sign_out_session(user=user, session_id=session.parent_id, actor="test", ip=None)
        db.session.commit()


def _refresh_reuse(app: Flask, worker: Worker, caller: Caller, request: Any) -> None:
    # The test reads with the rotated access token; the reuse of the first refresh token
    # ends the whole session, the rotated token with it.
    reused = {"grant_type": "refresh_token", "refresh_token": caller.tokens["first_refresh"]}
    headers = {"X-Tenant-ID": caller.tenant.id}
    _ok(worker.post("/oauth/token", data=reused, headers=headers), 401)


def _policy_change(app: Flask, worker: Worker, caller: Caller, request: Any) -> None:
    policy = [{"resource": "orders", "resource_type": "table", "type": "read"}]
    _ok(worker.put("/api/v1/users/kim/policies", json=policy, headers=caller.key))


def _custom_scopes(app: Flask, worker: Worker, caller: Caller, request: Any) -> None:
    _update(app, caller, custom_scopes=["read:reports"])


def _group_change(app: Flask, worker: Worker, caller: Caller, request: Any) -> None:
    _update(app, caller, permissions_group=None)


REVOCATIONS: dict[str, Callable[[Flask, Worker, Caller, Any], None]] = {
    "password change": _password_change,
    "password reset": _password_reset,
    "block": _block,
    "delete": _delete,
    "session revoke": _session_revoke,
    "logout": _logout,
    "refresh reuse": _refresh_reuse,
    "policy change": _policy_change,
    "custom scopes": _custom_scopes,
    "group change": _group_change,
}


def _signed_in(app: Flask, tenant: TenantHandle, worker: Worker, path: str) -> Caller:
    """Kim signed in as the path needs: on the login page (a browser session for logout),
    through a refresh (for its reuse), or with her password."""
    if path == "logout":
        factories.make_user(
            app, tenant.id, user_id="kim-1", username="kim", email="kim@example.com",
            password=PASSWORD,
        )  # fmt: skip
        web = factories.make_application(app, tenant.id)
        answer, verifier, _ = sign_in_through_page(
            worker, web, "kim", scope="openid read:current_user"
        )  # type: ignore[arg-type]
        tokens = _ok(exchange(worker, web, answer["code"], verifier)).get_json()  # type: ignore[arg-type]
        return Caller(tenant, "kim-1", tokens)
    caller = _caller(app, tenant, worker, permissions_group="admin")
    if path == "refresh reuse":
        rotated = {"grant_type": "refresh_token", "refresh_token": caller.tokens["refresh_token"]}
        headers = {"X-Tenant-ID": tenant.id}
        fresh = _ok(worker.post("/oauth/token", data=rotated, headers=headers)).get_json()
        caller.tokens = {**fresh, "first_refresh": caller.tokens["refresh_token"]}
    return caller


@pytest.mark.parametrize("path", list(REVOCATIONS))
def test_a_revocation_through_one_worker_holds_on_the_next_request_in_the_other(
    app: Flask,
    workers: list[Worker],
    mail_tenant: TenantHandle,
    request: pytest.FixtureRequest,
    path: str,
) -> None:
    first, second = workers
    caller = _signed_in(app, mail_tenant, first, path)
    access = caller.tokens["access_token"]
    _read_in_both(workers, access)

    REVOCATIONS[path](app, first, caller, request)

    for worker in (second, first):
        answer = _profile(worker, access)
        assert answer.status_code == 401, (path, answer.get_data(as_text=True))
        assert answer.get_json()["error"] == "invalid_token"


# --- changes of what a view prints ----------------------------------------------------------


def test_profile_changes_show_on_the_next_read_in_the_other_worker(
    app: Flask, workers: list[Worker], tenant: TenantHandle
) -> None:
    first, second = workers
    caller = _caller(app, tenant, first)
    access = caller.tokens["access_token"]
    before = _read_in_both(workers, access)
    assert before["user_metadata"] == {} and before["permissions"] == []

    path = f"/api/v2/users/{caller.user_id}"
    _ok(first.patch(path, json={"user_metadata": {"plan": "gold"}}, headers=caller.key))
    assert _read_in_both(workers[::-1], access)["user_metadata"] == {"plan": "gold"}

    # An identity linked: another user folded into kim's.
    factories.make_user(app, tenant.id, user_id="kim-2", username="kim2")
    link = {"provider": "gatehouse", "user_id": "kim-2"}
    _ok(first.post(f"{path}/identities", json=link, headers=caller.key), 201)
    shown = _read_in_both(workers[::-1], access)["identities"]
    assert [i["user_id"] for i in shown] == ["kim-1", "kim-2"]

    # SQL typed by hand: no application code knows of it.
    with app.app_context():
        db.session.execute(
            text("UPDATE user_account SET first_name = 'Kimberly' WHERE id = :id"),
            {"id": caller.user_id},
        )
        db.session.commit()
    assert _read_in_both(workers[::-1], access)["first_name"] == "Kimberly"

    # A policy added (its own statement, no scope change): also by hand.
    with app.app_context():
        db.session.execute(
            text(POLICY), {"tenant": tenant.id, "id": caller.user_id, "name": "orders"}
        )
        db.session.commit()
    [policy] = _read_in_both(workers[::-1], access)["permissions"]
    assert policy["resource"] == "orders"

    # Through the surface, policies change the token's scopes too: a refreshed token reads
    # the new list in the other worker, where the old view is kept.
    policies = [{"resource": "invoices", "resource_type": "table", "type": "write"}]
    _ok(first.put("/api/v1/users/kim/policies", json=policies, headers=caller.key))
    renewed = {"grant_type": "refresh_token", "refresh_token": caller.tokens["refresh_token"]}
    fresh = first.post("/oauth/token", data=renewed, headers={"X-Tenant-ID": tenant.id})
    access = _ok(fresh).get_json()["access_token"]
    assert "write:table:invoices" in claims(access)["scope"].split()
    [policy] = _read_in_both(workers[::-1], access)["permissions"]
    assert policy["resource"] == "invoices"


def test_a_user_deleted_and_made_again_is_read_afresh(
    app: Flask, workers: list[Worker], tenant: TenantHandle
) -> None:
    """A new row under a kept user's id starts unnumbered (0, never kept) and its sign-in
    numbers it from the sequence: never the number the old row's view was kept under."""
    first, second = workers
    caller = _caller(app, tenant, first, first_name="Old")
    assert _read_in_both(workers, caller.tokens["access_token"])["first_name"] == "Old"
    _ok(first.delete(f"/api/v2/users/{caller.user_id}", headers=caller.key), 204)
    again = _caller(app, tenant, second, first_name="New")
    assert _read_in_both(workers, again.tokens["access_token"])["first_name"] == "New"


def test_versions_move_on_every_write_of_the_row_and_its_children(
    app: Flask, tenant: TenantHandle
) -> None:
    """The triggers themselves, statement by statement (Core, bulk, cascade)."""
    user_id = factories.make_user(app, tenant.id, user_id="v-1", email="v@example.com")

    def version() -> int:
        with app.app_context():
            return db.session.scalar(
                text("SELECT profile_version FROM user_account WHERE id = :id"), {"id": user_id}
            )

    assert version() == 0  # never numbered: no view of it is kept
    with app.app_context():  # so a child's change needs no touch (a bulk import's case)
        db.session.execute(text(POLICY), {"id": user_id, "tenant": tenant.id, "name": "first"})
        db.session.commit()
    seen = [version()]
    assert seen == [0]
    statements = [
        "UPDATE user_account SET last_activity_at = now() WHERE id = :id",
        "INSERT INTO policy (tenant_id, user_id, resource, resource_type, type)"
        " SELECT :tenant, :id, 'r' || n, 'doc', 'read' FROM generate_series(1, 3) AS n",
        "UPDATE policy SET type = 'write' WHERE user_id = :id",
        "DELETE FROM policy WHERE user_id = :id",
        "INSERT INTO identity (tenant_id, user_id, provider, provider_user_id, connection,"
        " is_social, profile_data, created_at)"
        " VALUES (:tenant, :id, 'github', 'gh-1', 'github', true, '{}', now())",
        "UPDATE identity SET profile_data = '{\"a\": 1}' WHERE user_id = :id",
        "DELETE FROM identity WHERE user_id = :id",
    ]
    for statement in statements:
        with app.app_context():
            db.session.execute(text(statement), {"id": user_id, "tenant": tenant.id})
            db.session.commit()
        seen.append(version())
    assert len(set(seen)) == len(seen), seen
    with app.app_context():  # a cascade from the user's delete touches a row already gone
        db.session.execute(text(POLICY), {"id": user_id, "tenant": tenant.id, "name": "last"})
        db.session.execute(text("DELETE FROM user_account WHERE id = :id"), {"id": user_id})
        db.session.commit()
    assert factories.count_users(app, tenant.id) == 0
