"""Webhook deliveries under faults (issue 26), on the real stack (gunicorn, a Celery worker
and beat) with a loopback receiver (tests/webhook_receiver.py) that verifies every request
with the official `standardwebhooks` package:

- the receiver refuses connections for 60 s while 50 user updates are raised: once it is
  back every message is delivered, each webhook-id answered 2xx exactly once;
- the worker is SIGKILLed while the receiver holds a request open: the message comes due
  again when its lease ends, and a new worker sends it with the same webhook-id;
- Redis is stopped while events are raised: their rows wait, and the periodic dispatcher
  sends them once Redis is back.

The retry schedule and the dispatcher's period are shortened (documented settings), so the
whole file runs in about three minutes.
"""

from __future__ import annotations

import collections
import signal
import time
from collections.abc import Iterator

import pytest

from reliability.deployment import Deployment
from tests.webhook_receiver import Receiver, verify

RETRY_SCHEDULE = "1,2,4,8,15,30,30"  # cumulative 1, 3, 7, 15, 30, 60, 90 s
TIMEOUT_SECONDS = 10  # an attempt's lease is this + delivery.LEASE_MARGIN_SECONDS (30)
LEASE_SECONDS = TIMEOUT_SECONDS + 30
SETTINGS = {
    "WEBHOOK_RETRY_SCHEDULE": RETRY_SCHEDULE,
    "WEBHOOK_DISPATCH_INTERVAL_SECONDS": "1",
    "WEBHOOK_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
    # The receiver is on loopback over http: a production deployment refuses both.
    "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
    "WEBHOOK_ALLOW_HTTP": "true",
}
OUTAGE_SECONDS = 60
EVENTS = 50


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


def _start(deploy: Deployment, receiver: Receiver, users: int) -> tuple[str, list[str]]:
    """The stack running, an endpoint for user.updated at the receiver, `users` users; the
    endpoint's secret and the user ids."""
    deploy.configure(**SETTINGS)
    deploy.start_api()
    deploy.start_worker()
    deploy.start_beat()
    created = deploy.http(
        "POST",
        f"/tenants/{deploy.tenant_id}/webhooks",
        headers=_root(deploy),
        json_body={"url": receiver.url, "event_types": ["user.updated"]},
    )
    assert created.status == 201, created
    uids = [f"hooked{n}" for n in range(users)]
    for uid in uids:
        deploy.create_user(uid)
    return created.json()["secret"], uids


def _root(deploy: Deployment) -> dict[str, str]:
    return {"Authorization": f"Bearer {deploy.env['ROOT_API_KEY']}"}


def _update(deploy: Deployment, uid: str, n: int) -> None:
    answer = deploy.http(
        "PATCH",
        f"/api/v2/users/{uid}",
        headers={"Authorization": f"Bearer {deploy.key}"},
        json_body={"user_metadata": {"n": n}},
    )
    assert answer.status == 200, answer


def _messages(deploy: Deployment) -> dict[str, tuple[str, int]]:
    """webhook-id → (status, attempts booked)."""
    rows = deploy.query("SELECT id, status, attempts FROM webhook_message")
    return {message_id: (status, attempts) for message_id, status, attempts in rows}


def _received(receiver: Receiver, secret: str) -> collections.Counter[str]:
    """Requests per webhook-id, each verified with standardwebhooks (raises otherwise)."""
    counts: collections.Counter[str] = collections.Counter()
    for request in receiver.requests():
        payload = verify(request, secret)
        assert payload["type"] == "user.updated", payload
        counts[request.webhook_id] += 1
    return counts


def test_webhooks_receiver_down(deployment: Deployment, receiver: Receiver, report) -> None:  # noqa: ANN001
    deploy = deployment
    secret, uids = _start(deploy, receiver, users=5)

    receiver.stop()
    down_at = time.monotonic()
    report(f"injected: receiver on port {receiver.port} stopped (connections refused)")
    for n in range(EVENTS):
        _update(deploy, uids[n % len(uids)], n)
    report(f"{EVENTS} user updates answered 200 in {time.monotonic() - down_at:.1f} s")
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
    during = _messages(deploy)
    receiver.start()
    back_at = time.monotonic()
    tried = sum(attempts for _, attempts in during.values())
    report(
        f"receiver started again on the same port after {back_at - down_at:.1f} s; "
        f"meanwhile {tried} failed attempts booked, statuses "
        f"{dict(collections.Counter(status for status, _ in during.values()))}"
    )
    assert len(during) == EVENTS and all(s == "pending" for s, _ in during.values()), during

    deploy.wait_for(
        lambda: all(s == "delivered" for s, _ in _messages(deploy).values()),
        60,
        "every message to be delivered after the receiver returned",
    )
    report(
        f"every message delivered {time.monotonic() - back_at:.1f} s after the receiver returned"
    )
    time.sleep(5)  # let every queued retry and dispatcher run go by: nothing may send again
    messages = _messages(deploy)
    received = _received(receiver, secret)
    duplicates = sum(count - 1 for count in received.values())
    report(
        f"counted: events {EVENTS}, attempts {sum(a for _, a in messages.values())} "
        f"(booked; {tried} while down), delivered "
        f"{sum(1 for s, _ in messages.values() if s == 'delivered')}, requests received "
        f"{sum(received.values())} (all 2xx, all verified), distinct webhook-ids "
        f"{len(received)}, duplicates {duplicates}"
    )
    assert set(received) == set(messages)
    assert duplicates == 0


def test_webhooks_worker_killed(deployment: Deployment, receiver: Receiver, report) -> None:  # noqa: ANN001
    deploy = deployment
    secret, [uid] = _start(deploy, receiver, users=1)
    worker = deploy.services[1]
    assert worker.name == "worker"

    receiver.delay_seconds = 8  # holds the request, within the attempt's timeout
    started = time.monotonic()
    _update(deploy, uid, 1)
    deploy.wait_for(receiver.requests, 30, "the worker to call the receiver")
    [(message_id, status, attempts)] = deploy.query(
        "SELECT id, status, attempts FROM webhook_message"
    )
    assert (status, attempts) == ("pending", 0)
    worker.kill(signal.SIGKILL)
    killed_at = time.monotonic()
    receiver.delay_seconds = 0
    report(
        f"injected: SIGKILL to the whole worker (pid {worker.pid} and its pool) while the "
        f"receiver held {message_id} ({killed_at - started:.1f} s after the update)"
    )
    deploy.start_worker("worker2")
    new_worker_at = time.monotonic()
    report(f"a new worker started {new_worker_at - killed_at:.1f} s later")
    deploy.wait_for(
        lambda: _messages(deploy)[message_id][0] == "delivered",
        LEASE_SECONDS + 60,
        "the held message to be redelivered by the new worker",
    )
    report(
        f"redelivered {time.monotonic() - killed_at:.1f} s after the kill, "
        f"{time.monotonic() - new_worker_at:.1f} s after the new worker started "
        f"(lease {LEASE_SECONDS} s = WEBHOOK_TIMEOUT_SECONDS {TIMEOUT_SECONDS} + 30)"
    )
    time.sleep(5)  # nothing may send again
    received = _received(receiver, secret)
    requests = receiver.requests()
    report(
        f"counted: requests {len(requests)} with webhook-ids {dict(received)} (the first held "
        f"and abandoned by the killed worker, the second answered 204), both verified; "
        f"row {_messages(deploy)[message_id]}"
    )
    assert received == {message_id: 2}
    assert requests[0].body == requests[1].body  # the same signed text on both attempts
    assert _messages(deploy)[message_id] == ("delivered", 1)


def test_webhooks_redis_down(deployment: Deployment, receiver: Receiver, report) -> None:  # noqa: ANN001
    deploy = deployment
    secret, uids = _start(deploy, receiver, users=2)
    events = 10

    deploy.redis.stop()
    down_at = time.monotonic()
    report(f"injected: redis-server (port {deploy.redis.port}) stopped")
    slowest = 0.0
    for n in range(events):
        before = time.monotonic()
        _update(deploy, uids[n % len(uids)], n)
        slowest = max(slowest, time.monotonic() - before)
    waiting = _messages(deploy)
    report(
        f"{events} user updates answered 200 without Redis (slowest {slowest:.2f} s); "
        f"rows {dict(collections.Counter(s for s, _ in waiting.values()))}"
    )
    assert len(waiting) == events and all(v == ("pending", 0) for v in waiting.values())
    time.sleep(3)  # several dispatcher periods go by without a broker
    assert receiver.requests() == []

    deploy.redis.start()
    back_at = time.monotonic()
    report(f"injected: redis-server started again after {back_at - down_at:.1f} s")
    deploy.wait_for(
        lambda: all(s == "delivered" for s, _ in _messages(deploy).values()),
        90,
        "the messages raised without Redis to be delivered",
    )
    report(f"every message delivered {time.monotonic() - back_at:.1f} s after Redis returned")
    time.sleep(5)
    received = _received(receiver, secret)
    duplicates = sum(count - 1 for count in received.values())
    report(
        f"counted: events {events}, delivered {len(received)} distinct webhook-ids in "
        f"{sum(received.values())} requests (verified), duplicates {duplicates}"
    )
    assert set(received) == set(waiting) and duplicates == 0
