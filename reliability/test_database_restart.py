"""Database restart: the deployment's PostgreSQL (its own) is stopped and started again.
During the outage every request that needs it answers 503 in its surface's error shape,
quickly; afterwards requests succeed again without restarting the API."""

from __future__ import annotations

import collections
import socket
import time
from typing import Any

from reliability import stack
from reliability.client import Answer, call
from reliability.deployment import HIGH_LIMITS, Deployment

WORKERS = 2
HANG_LIMIT = 5.0  # "never a hang past a few seconds"


def _default_shape(body: dict[str, Any]) -> bool:
    return body.get("error") == "database_unavailable" and body.get("status") == 503


def _me_shape(body: dict[str, Any]) -> bool:
    return body.get("success") is False and body.get("error") == "DATABASE_UNAVAILABLE"


def _oauth_shape(body: dict[str, Any]) -> bool:
    return body.get("error") == "temporarily_unavailable" and "error_description" in body


def _directory_shape(body: dict[str, Any]) -> bool:
    return body.get("code") == "DATABASE_UNAVAILABLE" and isinstance(body.get("error"), str)


def _requests(deploy: Deployment, bearer: dict[str, str], email: str) -> list[tuple]:
    """(label, send, shape check) for one request of each kind and surface."""
    key = deploy.key_headers
    return [
        ("user: bearer profile", lambda a: deploy.http("GET", "/user/profile", api=a, headers=bearer), _default_shape),  # noqa: E501
        ("user: API key read", lambda a: deploy.http("GET", "/user/victim", api=a, headers=key), _default_shape),  # noqa: E501
        ("me: bearer read", lambda a: deploy.http("GET", "/users/me", api=a, headers=bearer), _me_shape),  # noqa: E501
        ("me: reset request", lambda a: deploy.request_reset(email, api=a), _me_shape),
        ("accounts: current", lambda a: deploy.http("GET", "/users/current", api=a, headers=bearer), _default_shape),  # noqa: E501
        ("directory: me", lambda a: deploy.http("GET", "/api/v1/users/me", api=a, headers=bearer), _directory_shape),  # noqa: E501
        ("oauth: sign-in", lambda a: deploy.sign_in(email, api=a), _oauth_shape),
        ("platform: root read", lambda a: deploy.http("GET", f"/tenants/{deploy.tenant_id}", api=a, headers={"X-APIKEY": deploy.env["ROOT_API_KEY"]}), _default_shape),  # noqa: E501
    ]  # fmt: skip


def _all_succeed(deploy: Deployment, kinds: list[tuple], api: int = 0) -> dict[str, Answer]:
    """{} when every kind of request succeeded, else the ones that did not."""
    answers = {label: send(api) for label, send, _ in kinds}
    return {label: a for label, a in answers.items() if a.status != 200}


def test_database_restart(deployment: Deployment, report) -> None:  # noqa: ANN001
    deploy = deployment
    deploy.configure(**HIGH_LIMITS)  # many sign-ins and resets of one account, one address
    deploy.start_api(workers=WORKERS)
    deploy.start_worker()
    deploy.start_beat()
    deploy.allow_reset_host()
    email = deploy.create_user("victim")
    tokens = deploy.sign_in(email).json()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    kinds = _requests(deploy, bearer, email)
    for _ in range(3 * WORKERS):  # every API process holds pooled connections now
        failed = _all_succeed(deploy, kinds)
        assert not failed, f"the deployment does not work before the fault: {failed}"

    # 1. A long outage with traffic: every answer is a quick 503 in the surface's shape.
    deploy.postgres.stop("fast")
    report(f"injected: PostgreSQL (port {deploy.postgres.port}) stopped (fast shutdown)")
    down_at = time.monotonic()
    statuses: collections.Counter[int] = collections.Counter()
    slowest = 0.0
    while time.monotonic() - down_at < 10:
        for label, send, shape in kinds:
            answer = send(0)
            statuses[answer.status] += 1
            slowest = max(slowest, answer.seconds)
            assert answer.status == 503, (label, answer)
            assert "Traceback" not in answer.text, (label, answer)
            assert shape(answer.json()), (label, answer)
            assert answer.seconds < HANG_LIMIT, (label, answer)
    ready = deploy.http("GET", "/readyz")
    assert ready.status == 503 and ready.json()["checks"]["database"].startswith("down"), ready
    assert ready.json()["checks"]["broker"] == "ok", ready
    assert deploy.http("GET", "/healthz").status == 200
    report(
        f"during {time.monotonic() - down_at:.0f} s down: {sum(statuses.values())} requests on "
        f"{len(kinds)} kinds, answers {dict(statuses)}, each in its surface's shape; slowest "
        f"{slowest:.2f} s; /readyz 503 {ready.json()['checks']}; /healthz 200"
    )

    deploy.postgres.start()
    back_at = time.monotonic()
    report("injected: PostgreSQL started again")
    recovered = _wait_all_succeed(deploy, kinds)
    report(f"every kind of request succeeded again {time.monotonic() - back_at:.1f} s later")
    assert recovered

    # 2. A restart between two requests: pooled connections are dead when the next comes.
    for _ in range(3 * WORKERS):
        failed = _all_succeed(deploy, kinds)
        assert not failed, failed
    deploy.postgres.stop("fast")
    deploy.postgres.start()
    report("injected: PostgreSQL restarted between two requests (pooled connections dead)")
    after: collections.Counter[int] = collections.Counter()
    for _ in range(5 * WORKERS):
        for label, send, shape in kinds:
            answer = send(0)
            after[answer.status] += 1
            if answer.status != 200:
                assert answer.status == 503 and shape(answer.json()), (label, answer)
    report(f"after the restart: answers {dict(after)} (closed pooled connections replaced)")
    assert after == {200: 5 * WORKERS * len(kinds)}

    # Background work recovered too: a reset mail goes out.
    sent_before = len(deploy.postmark.mails())
    assert deploy.request_reset(email).status == 200
    deploy.wait_for(
        lambda: len(deploy.postmark.mails()) > sent_before, 30, "a reset mail after the restarts"
    )
    report("a reset mail asked after the restarts was delivered by the worker")

    # 3. A database that accepts connections but never answers: 503 after the timeout.
    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(64)  # the kernel completes handshakes; nothing ever answers
        port = blackhole.getsockname()[1]
        frozen_env = {
            **deploy.env,
            "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{port}/gatehouse",
            "DATABASE_TIMEOUT_SECONDS": "2",
        }
        frozen = stack.api_server(frozen_env, deploy.folder, "api-frozen-db", workers=1)
        deploy.services.append(frozen)
        base = frozen.extra["base"]
        stack.wait_until(lambda: call(base, "GET", "/healthz").status == 200, 30, "frozen api")
        report("injected: an API whose database accepts connections and never answers")
        answers = [call(base, "GET", "/user/victim", headers=deploy.key_headers) for _ in range(3)]
        for answer in answers:
            assert answer.status == 503 and _default_shape(answer.json()), answer
            assert answer.seconds < HANG_LIMIT, answer
        report(
            f"its requests answered 503 after {max(a.seconds for a in answers):.1f} s at "
            "most (DATABASE_TIMEOUT_SECONDS=2)"
        )


def _wait_all_succeed(deploy: Deployment, kinds: list[tuple]) -> bool:
    def check() -> bool:
        return not any(_all_succeed(deploy, kinds, api=0) for _ in range(WORKERS))

    return bool(deploy.wait_for(check, 30, "requests to succeed after the restart"))
