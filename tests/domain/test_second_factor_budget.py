"""One budget per account for wrong second-factor codes (issue 22, item 4): the hosted
code step and the password grant's `otp` (by username or by email) all count against it;
5 wrong codes lock every path for 15 minutes (doubling with each further lock), even for
the right code; the code form is single-use; and the next sign-in tells the user how many
codes failed since the previous one."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.core import ratelimit
from app.core.tenancy import tenant_scope
from app.users import service as user_service
from tests import factories
from tests.factories import AppHandle, TenantHandle
from tests.oauth_support import (
    PASSWORD,
    assert_oauth_error,
    audit_events,
    authorize_query,
    confirmed_totp,
    exchange,
    form_fields,
    make_alice,
    next_totp,
    pkce_pair,
    query_of,
    rate_limited_app,
    sign_in,
    submit_login,
    token_request,
)
from tests.ops.test_outages import app_without_redis

WRONG = "000000"
# Generous per-account limits, so what stops the codes is the budget, not the rate limit.
ROOMY = {"RATELIMIT_SIGNIN_PER_ACCOUNT": "1000 per minute"}


@pytest.fixture()
def web(app: Flask, tenant: TenantHandle) -> AppHandle:
    return factories.make_application(app, tenant.id, name="Acme Web")


@pytest.fixture()
def secret(app: Flask, client: FlaskClient, tenant: TenantHandle) -> str:
    """alice (alice@example.com), enrolled in TOTP; her secret."""
    make_alice(app, tenant.id)
    return confirmed_totp(client, sign_in(client, tenant.id, "alice")["access_token"])


def code_page(browser: FlaskClient, web: AppHandle) -> Any:
    """Open the login page, give alice's password: the second-factor page."""
    _, challenge = pkce_pair()
    page = browser.get("/authorize", query_string=authorize_query(web, challenge))
    step = submit_login(browser, page, "alice")
    assert step.status_code == 200 and 'name="pending"' in step.get_data(as_text=True)
    return step


def submit_code(browser: FlaskClient, page: Any, code: str) -> Any:
    fields = form_fields(page.get_data(as_text=True))
    return browser.post("/authorize/second-factor", data={**fields, "code": code})


def grant(browser: FlaskClient, tenant_id: str, login: str, code: str) -> Any:
    """The password grant with `otp`; `login` goes in `username`, or in `email` if it has @."""
    field = "email" if "@" in login else "username"
    return token_request(
        browser, tenant_id, grant_type="password", password=PASSWORD, otp=code, **{field: login}
    )


def page_code(response: Any) -> str | None:
    """The error code a hosted form shows (its data-code), or None."""
    html = response.get_data(as_text=True)
    marker = 'data-code="'
    return html.split(marker, 1)[1].split('"', 1)[0] if marker in html else None


def failure_count(app: Flask, tenant_id: str) -> int:
    with app.app_context(), tenant_scope(tenant_id):
        return user_service.get_user("alice-1").second_factor_failures


def test_wrong_codes_on_every_path_share_one_budget_of_five(
    client: FlaskClient, tenant: TenantHandle, web: AppHandle, secret: str
) -> None:
    """The issue's figure: 28 wrong codes in a minute from one IP, over the three paths.
    Now, with the default limits, the three paths together check 5, then refuse."""
    page = code_page(client, web)
    checked, outcomes = 0, []
    for attempt in range(30):
        path = ("hosted", "alice", "alice@example.com")[attempt % 3]
        if path == "hosted":
            answer = submit_code(client, page, WRONG)
            page = answer  # a wrong code shows a fresh form
            error = page_code(answer)
        else:
            answer = grant(client, tenant.id, path, WRONG)
            error = answer.get_json()["error"]
        outcomes.append((path, answer.status_code, error))
        checked += answer.status_code == 401
        if len({p for p, status, _ in outcomes[-3:] if status == 429}) == 3:
            break

    print(f"\nwrong codes checked before the lock, three paths together: {checked}")
    assert checked == 5, outcomes
    refusals = outcomes[5:]
    assert {(status, error) for _, status, error in refusals} == {
        (429, "second_factor_locked"),
        (429, "too_many_attempts"),
    }, refusals


def test_while_locked_even_the_right_code_is_refused_with_retry_after(
    app: Flask,
    client: FlaskClient,
    database_url: str,
    tmp_path: Path,
    tenant: TenantHandle,
    web: AppHandle,
    secret: str,
) -> None:
    with rate_limited_app(app, database_url, tmp_path, **ROOMY) as limited:
        browser = limited.test_client()
        page = code_page(browser, web)
        for _ in range(5):
            assert_oauth_error(grant(browser, tenant.id, "alice", WRONG), 401, "invalid_grant")

        right = next_totp(secret)
        by_email = grant(browser, tenant.id, "alice@example.com", right)
        hosted = submit_code(browser, page, right)

    body = assert_oauth_error(by_email, 429, "too_many_attempts")
    assert "minutes" in body["error_description"]
    assert 14 * 60 < int(by_email.headers["Retry-After"]) <= 15 * 60
    assert hosted.status_code == 429 and page_code(hosted) == "second_factor_locked"
    html = hosted.get_data(as_text=True)
    assert "Too many wrong codes" in html and 'name="pending"' in html  # the form, again
    assert 14 * 60 < int(hosted.headers["Retry-After"]) <= 15 * 60
    failed = audit_events(client, tenant.headers, "user.signin_failed")
    assert Counter(e["data"]["reason"] for e in failed) == {
        "wrong_otp": 5,
        "second_factor_locked": 2,
    }
    # Only the enrolment's own sign-in, before any failure.
    assert len(audit_events(client, tenant.headers, "user.signed_in")) == 1


def test_concurrent_wrong_codes_on_every_path_still_stop_at_the_budget(
    app: Flask,
    client: FlaskClient,
    database_url: str,
    tmp_path: Path,
    tenant: TenantHandle,
    web: AppHandle,
    secret: str,
) -> None:
    """Real threads, PostgreSQL and Redis: each attempt is counted before its code is
    looked at, so 15 at once still check 5."""
    with rate_limited_app(app, database_url, tmp_path, **ROOMY) as limited:
        browsers = [limited.test_client() for _ in range(5)]
        pages = [code_page(browser, web) for browser in browsers]
        tasks: list[Any] = []
        for browser, page in zip(browsers, pages, strict=True):
            tasks.append(lambda b=browser, p=page: submit_code(b, p, WRONG))
        for login in ("alice", "alice@example.com") * 5:
            tasks.append(lambda login=login: grant(limited.test_client(), tenant.id, login, WRONG))
        statuses: list[tuple[int, str | None]] = []
        start = threading.Barrier(len(tasks))

        def run(task: Any) -> None:
            start.wait()
            answer = task()
            error = answer.get_json()["error"] if answer.is_json else page_code(answer)
            statuses.append((answer.status_code, error))

        threads = [threading.Thread(target=run, args=(task,)) for task in tasks]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)

    assert len(statuses) == 15 and statuses.count((401, "invalid_grant")) == 5, statuses
    locked = {(429, "too_many_attempts"), (429, "second_factor_locked")}  # grant, page
    assert all(answer in locked for answer in statuses if answer[0] != 401), statuses
    failed = audit_events(client, tenant.headers, "user.signin_failed")
    reasons = Counter(e["data"]["reason"] for e in failed)
    assert reasons == {"wrong_otp": 5, "second_factor_locked": 10}
    assert failure_count(app, tenant.id) == 15


def test_the_code_form_works_once(
    client: FlaskClient, tenant: TenantHandle, web: AppHandle, secret: str
) -> None:
    page = code_page(client, web)
    wrong = submit_code(client, page, WRONG)
    assert wrong.status_code == 401 and page_code(wrong) == "invalid_grant"
    assert (
        form_fields(wrong.get_data(as_text=True))["pending"]
        != (form_fields(page.get_data(as_text=True))["pending"])
    )

    replayed = submit_code(client, page, next_totp(secret))  # the first form, again

    assert replayed.status_code == 400
    assert "<code>form_used</code>" in replayed.get_data(as_text=True)  # the error page
    # The fresh form still works.
    assert submit_code(client, wrong, next_totp(secret)).status_code == 200


def test_a_password_change_ends_a_pending_code_step(
    client: FlaskClient, tenant: TenantHandle, web: AppHandle, secret: str
) -> None:
    page = code_page(client, web)
    changed = client.put(
        "/api/v1/users/alice/password",
        json={"new_password": "another fine password"},
        headers=tenant.headers,
    )
    assert changed.status_code == 200, changed.get_data(as_text=True)

    answer = submit_code(client, page, next_totp(secret))

    assert answer.status_code == 401 and page_code(answer) == "signin_restart"
    assert "Sign in again" in answer.get_data(as_text=True)
    assert "Location" not in answer.headers
    assert len(audit_events(client, tenant.headers, "user.signed_in")) == 1  # the enrolment's


def test_the_next_sign_in_shows_how_many_codes_failed(
    app: Flask, client: FlaskClient, tenant: TenantHandle, web: AppHandle, secret: str
) -> None:
    for login in ("alice", "alice@example.com"):
        assert_oauth_error(grant(client, tenant.id, login, WRONG), 401, "invalid_grant")
    verifier, challenge = pkce_pair()
    query = authorize_query(web, challenge)
    page = submit_login(client, client.get("/authorize", query_string=query), "alice")
    page = submit_code(client, page, WRONG)
    assert failure_count(app, tenant.id) == 3

    notice = submit_code(client, page, next_totp(secret))

    assert notice.status_code == 200
    html = notice.get_data(as_text=True)
    assert "3 failed attempts to enter a code since your last sign-in." in html
    assert "<button" in html and "Continue" in html
    assert "Location" not in notice.headers
    on = client.post("/authorize/continue", data=form_fields(html))
    assert on.status_code == 303
    answer = query_of(on.headers["Location"])
    assert answer["state"] == query["state"]
    assert exchange(client, web, answer["code"], verifier).status_code == 200
    last = audit_events(client, tenant.headers, "user.signed_in")[0]
    assert last["data"] == {"method": "login_page", "second_factor_failures": 3}
    assert failure_count(app, tenant.id) == 0  # counted afresh


def test_the_password_grant_records_the_failed_codes_in_the_sign_in_event(
    app: Flask, client: FlaskClient, tenant: TenantHandle, secret: str
) -> None:
    for _ in range(2):
        assert_oauth_error(grant(client, tenant.id, "alice", WRONG), 401, "invalid_grant")

    assert grant(client, tenant.id, "alice@example.com", next_totp(secret)).status_code == 200

    last = audit_events(client, tenant.headers, "user.signed_in")[0]
    assert last["data"] == {"method": "password", "second_factor_failures": 2}
    assert failure_count(app, tenant.id) == 0


def test_the_budget_holds_in_memory_while_redis_is_down(
    app: Flask, database_url: str, tmp_path: Path, tenant: TenantHandle, secret: str
) -> None:
    with app_without_redis(app, database_url, tmp_path, **ROOMY) as outage:
        browser = outage.test_client()
        answers = [grant(browser, tenant.id, "alice", WRONG) for _ in range(5)]
        locked = grant(browser, tenant.id, "alice", next_totp(secret))

    for answer in answers:
        assert_oauth_error(answer, 401, "invalid_grant")
    assert_oauth_error(locked, 429, "too_many_attempts")


@pytest.mark.parametrize("storage", ["redis", "memory"])
def test_each_further_lock_lasts_twice_as_long(app: Flask, storage: str) -> None:
    """The back-off itself, with a short lock (the real one is 15 minutes)."""
    backoff = ratelimit.Backoff(
        name=f"test-{storage}-{time.time_ns()}",
        failures=2,
        lock_seconds=1,
        longest_seconds=3,
        memory_seconds=60,
    )
    with app.app_context():
        limits = app.extensions["gatehouse.ratelimits"]
        attempt = (
            (lambda: limits.attempt(backoff, "t", "u"))
            if storage == "redis"
            else (lambda: limits.memory.attempt(f"k:{backoff.name}", backoff))
        )
        assert [attempt(), attempt(), attempt()] == [0, 0, 1]  # the second starts the lock
        time.sleep(1.05)  # the 1-second lock runs out
        assert [attempt(), attempt()] == [0, 0]
        assert 1 < attempt() <= 2  # twice as long
        time.sleep(2.05)
        attempt(), attempt()
        assert attempt() == 3  # 4 s, held to the longest
        if storage == "redis":
            limits.forget(backoff, "t", "u")
            assert attempt() == 0  # success starts it afresh
