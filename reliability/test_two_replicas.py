"""Two API replicas: two gunicorn instances on one database and one Redis, the requests of
each flow alternating between them. Nothing may depend on which process answered:
refresh rotation and reuse detection, rate limits, revocation, single-use custom tokens,
signing-key rotation and last activity behave as with one replica."""

from __future__ import annotations

import json
import threading
import time
from base64 import urlsafe_b64decode
from datetime import datetime

from reliability import stack
from reliability.deployment import PASSWORD, Deployment

A, B = 0, 1
PER_ACCOUNT = 5
GRACE = 2  # REFRESH_REUSE_GRACE_SECONDS in FAST_SETTINGS


def _kid(token: str) -> str:
    header = token.split(".")[0]
    return json.loads(urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]


def _bearer(tokens: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def _last_activity(deploy: Deployment, user_id: str) -> float:
    [(at,)] = deploy.query("SELECT last_activity_at FROM user_account WHERE id = %s", user_id)
    return at.timestamp() if isinstance(at, datetime) else 0.0


def test_two_replicas(deployment: Deployment, report) -> None:  # noqa: ANN001
    deploy = deployment
    deploy.configure(RATELIMIT_SIGNIN_PER_ACCOUNT=f"{PER_ACCOUNT} per minute")
    deploy.start_api(name="replica-a")
    deploy.start_api(name="replica-b")
    deploy.start_worker()
    deploy.start_beat()
    report(f"two {stack.SERVER} replicas (2 workers each) on one PostgreSQL and one Redis")
    roamer = deploy.create_user("roamer", api=A)

    # Refresh rotation and reuse detection.
    first = deploy.sign_in(roamer, api=A).json()
    second = deploy.refresh(first["refresh_token"], api=B)
    assert second.status == 200, second
    third = deploy.refresh(second.json()["refresh_token"], api=A)
    assert third.status == 200, third
    both: list = [None, None]

    def refresh_on(replica: int) -> None:
        both[replica] = deploy.refresh(third.json()["refresh_token"], api=replica)

    threads = [threading.Thread(target=refresh_on, args=(r,)) for r in (A, B)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status for a in both] == [200, 200], both  # concurrent, within the grace
    time.sleep(GRACE + 1)
    reused = deploy.refresh(first["refresh_token"], api=B)
    assert reused.status == 401 and reused.json()["error"] == "invalid_grant", reused
    for replica, answer in ((A, both[B]), (B, both[A])):
        after = deploy.refresh(answer.json()["refresh_token"], api=replica)
        assert after.status == 401, ("the family must be revoked on every replica", after)
    [(reuse_events,)] = deploy.query(
        "SELECT count(*) FROM audit_event WHERE action = 'token.refresh_reused'"
    )
    assert reuse_events == 1
    report(
        "refresh: rotated A→B→A, two concurrent refreshes on A and B both 200, reuse of the "
        "first token on B revoked the family on both, 1 token.refresh_reused event"
    )

    # Rate limits: one counter for both replicas.
    victim = deploy.create_user("victim", api=B)
    answers = [
        deploy.sign_in(victim, api=n % 2, password="wrong-password").status
        for n in range(PER_ACCOUNT + 1)
    ]
    assert answers == [401] * PER_ACCOUNT + [429], answers
    report(f"rate limit {PER_ACCOUNT}/min per account, alternating replicas: {answers}")

    # Revocation: of a refresh token, of every session by a password change, of an API key.
    session = deploy.sign_in(roamer, api=B).json()
    revoked = deploy.http("POST", "/oauth/revoke", api=A, form={"token": session["refresh_token"]})
    assert revoked.status == 200, revoked
    assert deploy.refresh(session["refresh_token"], api=B).status == 401
    admin_key = {"Authorization": f"Bearer {deploy.key}"}
    created = deploy.http(
        "POST",
        "/api/v1/users/dana",
        api=A,
        headers=admin_key,
        json_body={"username": "dana", "password": PASSWORD, "initial_policies": []},
    )
    assert created.status == 201, created
    dana = deploy.sign_in("dana", api=A).json()
    assert deploy.http("GET", "/api/v1/users/me", api=B, headers=_bearer(dana)).status == 200
    changed = deploy.http(
        "PUT",
        "/api/v1/users/dana/password",
        api=A,
        headers=admin_key,
        json_body={"new_password": "another-password-2"},
    )
    assert changed.status == 200, changed
    refused = deploy.http("GET", "/api/v1/users/me", api=B, headers=_bearer(dana))
    assert refused.status == 401, ("B still accepts a token revoked on A", refused)
    assert deploy.refresh(dana["refresh_token"], api=B).status == 401
    issued = stack.flask(deploy.env, "keys", "create", deploy.tenant_id, "--name", "doomed")
    doomed_id = issued.split("id :")[1].split()[0]
    doomed_key = issued.split("key:")[1].split()[0]
    for replica in (A, B):  # both replicas have seen (and may cache) the key
        assert (
            deploy.http("GET", "/user/roamer", api=replica, headers={"X-APIKEY": doomed_key}).status
            == 200
        )  # noqa: E501
    stack.flask(deploy.env, "keys", "revoke", doomed_id)
    for replica in (A, B):
        answer = deploy.http("GET", "/user/roamer", api=replica, headers={"X-APIKEY": doomed_key})
        assert answer.status == 401 and answer.json()["error"] == "invalid_api_key", answer
    report(
        "revocation on A seen at once by B: a refresh token (/oauth/revoke), every session "
        "of a user (admin password change), an API key (CLI)"
    )

    # Single-use custom tokens.
    settings = {"settings": {"allow_user_token_management": True}}
    root = {"X-APIKEY": deploy.env["ROOT_API_KEY"]}
    assert (
        deploy.http(
            "PATCH", f"/tenants/{deploy.tenant_id}", headers=root, json_body=settings
        ).status
        == 200
    )  # noqa: E501
    custom = deploy.http(
        "POST", "/token/generate", api=A, headers=deploy.key_headers, json_body={"userId": "roamer"}
    )
    assert custom.status == 200, custom
    token = {"token": custom.json()["token"]}
    first_use = deploy.http(
        "POST", "/token/signin", api=B, headers=deploy.key_headers, json_body=token
    )  # noqa: E501
    replay = deploy.http(
        "POST", "/token/signin", api=A, headers=deploy.key_headers, json_body=token
    )  # noqa: E501
    assert first_use.status == 200 and replay.status == 401, (first_use, replay)
    report("a custom token made on A signed in once on B; its replay on A was refused")

    # Signing-key rotation while both replicas run.
    before = deploy.sign_in(roamer, api=A).json()
    stack.flask(deploy.env, "keys", "rotate-signing")
    tokens = [deploy.sign_in(roamer, api=replica).json() for replica in (A, B)] + [before]
    for replica in (A, B):
        kids = {
            k["kid"]
            for k in deploy.http("GET", "/.well-known/jwks.json", api=replica).json()["keys"]
        }  # noqa: E501
        for issued_tokens in tokens:
            assert _kid(issued_tokens["access_token"]) in kids
            answer = deploy.http(
                "GET", "/user/profile", api=replica, headers=_bearer(issued_tokens)
            )  # noqa: E501
            assert answer.status == 200, answer
    kids = sorted({_kid(t["access_token"]) for t in tokens})
    report(
        f"signing key rotated by the CLI: tokens signed before and after (kids {kids}; a "
        "replica signs with its cached key up to 60 s) verify on both, both publish them"
    )

    # Last activity follows the latest request, whichever replica served it.
    walker = deploy.create_user("walker")
    walker_tokens = deploy.sign_in(walker, api=A).json()
    marks = []
    for replica in (A, B, A):
        marks.append(time.time())
        answer = deploy.http("GET", "/users/me", api=replica, headers=_bearer(walker_tokens))
        assert answer.status == 200
        deploy.wait_for(
            lambda: _last_activity(deploy, "walker") >= marks[-1] - 0.01,
            15,
            "the flushed activity to reach the latest request",
        )
        time.sleep(5.5)  # past the per-process write throttle
    report("last activity followed requests on A, then B, then A (flushed by beat)")
