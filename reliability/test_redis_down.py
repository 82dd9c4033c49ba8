"""Broker down: the deployment's Redis is stopped (its own, never the machine's). Reads and
sign-ins go on, rate limits fall back to per-process memory (logged once), reset requests
are answered as usual and their mails go out once Redis is back; /readyz tells."""

from __future__ import annotations

import collections
import time

from reliability.deployment import Deployment

WORKERS = 2
PER_ACCOUNT = 5
FALLBACK_LOG = "rate limits fall back to per-process memory"


def test_redis_down(deployment: Deployment, report) -> None:  # noqa: ANN001
    deploy = deployment
    deploy.configure(RATELIMIT_SIGNIN_PER_ACCOUNT=f"{PER_ACCOUNT} per minute")
    deploy.start_api(workers=WORKERS)
    deploy.start_worker()
    deploy.start_beat()
    deploy.allow_reset_host()
    reader = deploy.create_user("reader")
    victim = deploy.create_user("victim")
    walker = deploy.create_user("walker")
    askers = [deploy.create_user(f"asker{n}") for n in range(3)]
    signed_in = deploy.sign_in(reader)
    assert signed_in.status == 200, signed_in
    tokens = signed_in.json()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert deploy.http("GET", "/readyz").json()["checks"]["broker"] == "ok"

    deploy.redis.stop()
    down_at = time.monotonic()
    report(f"injected: redis-server (port {deploy.redis.port}) stopped")
    statuses: collections.Counter[int] = collections.Counter()
    slowest = 0.0

    def count(answer):  # noqa: ANN001, ANN202
        nonlocal slowest
        statuses[answer.status] += 1
        slowest = max(slowest, answer.seconds)
        return answer

    # Token-authenticated reads, on every surface that takes a user token, and API-key reads.
    for _ in range(20):
        for path in ("/user/profile", "/users/me", "/users/current", "/api/v1/users/me"):
            answer = count(deploy.http("GET", path, headers=bearer))
            assert answer.status == 200, (path, answer)
        answer = count(deploy.http("GET", "/user/reader", headers=deploy.key_headers))
        assert answer.status == 200, answer

    # Sign-in and refresh keep working.
    fresh = count(deploy.sign_in(reader))
    assert fresh.status == 200, fresh
    rotated = count(deploy.refresh(tokens["refresh_token"]))
    assert rotated.status == 200, rotated

    # A user first seen during the outage: its activity is written through to the database.
    walker_tokens = count(deploy.sign_in(walker)).json()
    walker_bearer = {"Authorization": f"Bearer {walker_tokens['access_token']}"}
    # Reads go on for longer than the breaker's retry period (Redis is tried again, fails).
    until = time.monotonic() + 12
    while time.monotonic() < until:
        answer = count(deploy.http("GET", "/users/me", headers=walker_bearer))
        assert answer.status == 200, answer
        time.sleep(0.05)
    [(seen,)] = deploy.query("SELECT last_activity_at FROM user_account WHERE id = 'walker'")
    assert seen is not None, "activity during the outage was not written through"
    report("activity of a user first seen during the outage was written to the database")

    # Rate limits still hold, per process: at most WORKERS × the limit before a 429.
    attempts = 0
    while True:
        attempts += 1
        answer = count(deploy.sign_in(victim, password="wrong-password"))
        if answer.status == 429:
            assert answer.json()["error"] == "temporarily_unavailable", answer
            break
        assert answer.status == 401, answer
        assert attempts <= WORKERS * PER_ACCOUNT, "no rate limit while Redis is down"
    report(
        f"sign-in limit {PER_ACCOUNT}/min per account held without Redis: 429 after "
        f"{attempts - 1} refused attempts ({WORKERS} workers, memory limits per process)"
    )

    # Reset requests are answered as usual; their rows wait in the database.
    for email in askers:
        answer = count(deploy.request_reset(email))
        assert answer.status == 200 and answer.json() == {"msg": "ok"}, answer
    assert deploy.deliveries() == {"queued": len(askers)}

    ready = count(deploy.http("GET", "/readyz"))
    assert ready.status == 503, ready
    assert ready.json()["checks"]["database"] == "ok"
    assert ready.json()["checks"]["broker"].startswith("down"), ready
    statuses[503] -= 1  # the readiness probe's 503 is the expected answer, not a failure
    served = sum(statuses.values())
    report(
        f"during the outage: {served} requests, answers {dict(sorted(statuses.items()))}, "
        f"slowest {slowest:.2f} s; /readyz 503 {ready.json()['checks']}"
    )
    assert set(statuses) <= {200, 401, 429, 503} and statuses[500] == 0
    assert slowest < 3, "a request waited on the dead Redis"
    fallback_lines = deploy.logs().count(FALLBACK_LOG)
    assert 1 <= fallback_lines <= WORKERS, f"fallback logged {fallback_lines} times"
    report(f"fallback logged {fallback_lines} time(s) for {WORKERS} API processes")

    deploy.redis.start()
    outage = time.monotonic() - down_at
    back_at = time.monotonic()
    report(f"injected: redis-server started again after {outage:.1f} s")
    deploy.wait_for(lambda: deploy.http("GET", "/readyz").status == 200, 30, "/readyz 200")
    report(f"/readyz answered 200 again {time.monotonic() - back_at:.1f} s later")
    deploy.wait_for(
        lambda: deploy.deliveries() == {"sent": len(askers)}, 60, "the queued mails to go out"
    )
    report(f"queued mails delivered {time.monotonic() - back_at:.1f} s after Redis returned")
    time.sleep(5)  # every requeue has run again by now: nothing may be sent twice
    delivered = collections.Counter(m.body["To"] for m in deploy.postmark.mails())
    report(f"counted: {dict(delivered)} (each address once)")
    assert delivered == {email: 1 for email in askers}

    # Back on Redis: activity is buffered and flushed again, limits are shared again.
    assert deploy.http("GET", "/user/profile", headers=bearer).status == 200
    assert deploy.sign_in(reader).status == 200
