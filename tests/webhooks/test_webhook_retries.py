"""Webhook delivery behaviour with the real worker and real loopback receivers: what counts
as a failure (any non-2xx, a redirect, a timeout, a refused connection), the retries (same
`webhook-id`, same body, a valid signature each time), the delivery log, a response body
read only up to a cap, an endpoint disabled after failing long enough (and never contacted
again), per-endpoint attempt slots, one claim per attempt, and a dead worker's message sent
again when its lease ends.

The session's test worker is one thread (`pool="solo"`), so two attempts never run at the
same time here: the per-endpoint limit is shown by holding an endpoint's only slot while
the worker runs (the other endpoint's message goes out, this one waits), and the slots'
arithmetic is checked against Redis directly.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from flask import Flask

from app.core import redis_client, sweeps
from app.core.db import db
from app.core.jobs import send_task
from app.core.tenancy import tenant_scope
from app.webhooks import delivery, tasks
from tests import factories
from tests.webhook_receiver import Receiver, verify
from tests.webhooks.support import ROOT, WebhookApi, quiet_message, shift

pytestmark = pytest.mark.usefixtures("loopback_only", "celery_worker")

Receivers = Callable[[], Receiver]


def _retries(app: Flask, monkeypatch: pytest.MonkeyPatch, *delays: float) -> None:
    monkeypatch.setitem(app.config, "WEBHOOK_RETRY_SCHEDULE", list(delays))


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _done(message: dict[str, Any]) -> bool:
    return message["status"] != "pending"


def _same_message_each_time(receiver: Receiver, message_id: str, secret: str) -> None:
    """Every request carried this message's id and the very same body, each signed."""
    requests = receiver.requests()
    assert requests
    assert {request.webhook_id for request in requests} == {message_id}
    assert len({request.body for request in requests}) == 1
    for request in requests:
        assert verify(request, secret)["type"] == "webhook.test"


@pytest.mark.parametrize("status", [400, 404, 410, 500, 503])
def test_a_non_2xx_answer_is_retried_by_the_schedule_then_failed(
    app: Flask,
    webhooks: WebhookApi,
    receivers: Receivers,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
) -> None:
    _retries(app, monkeypatch, 0, 0, 0)
    receiver = receivers()
    receiver.default_status = status
    endpoint = webhooks.register(receiver.url)
    message_id = webhooks.send_test(endpoint["id"])
    message = webhooks.wait_message(endpoint["id"], message_id, _done)
    assert message["status"] == "failed"
    assert message["attempts"] == 4  # the first, and one per entry of the schedule
    assert message["last_status_code"] == status
    assert message["last_error"] == f"HTTP {status}"
    assert message["next_attempt_at"] is None
    assert len(receiver.requests()) == 4
    _same_message_each_time(receiver, message_id, endpoint["secret"])


def test_a_refused_connection_is_retried_then_failed(
    app: Flask, webhooks: WebhookApi, receivers: Receivers, monkeypatch: pytest.MonkeyPatch
) -> None:
    _retries(app, monkeypatch, 0, 0, 0)
    receiver = receivers()
    endpoint = webhooks.register(receiver.url)
    receiver.stop()  # nothing listens on its port now
    message_id = webhooks.send_test(endpoint["id"])
    message = webhooks.wait_message(endpoint["id"], message_id, _done)
    assert message["status"] == "failed"
    assert message["attempts"] == 4
    assert message["last_status_code"] is None
    assert message["last_error"] == "connection failed: ConnectionRefusedError"


def test_a_receiver_that_comes_back_gets_the_message_once(
    app: Flask, webhooks: WebhookApi, receivers: Receivers, monkeypatch: pytest.MonkeyPatch
) -> None:
    _retries(app, monkeypatch, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5)
    receiver = receivers()
    endpoint = webhooks.register(receiver.url)
    receiver.stop()
    message_id = webhooks.send_test(endpoint["id"])
    webhooks.wait_message(endpoint["id"], message_id, lambda m: m["attempts"] >= 1)
    receiver.start()  # the same port again
    message = webhooks.wait_message(endpoint["id"], message_id, _done)
    assert message["status"] == "delivered"
    assert message["attempts"] >= 2 and message["last_status_code"] == 204
    (request,) = receiver.requests()
    assert request.webhook_id == message_id
    verify(request, endpoint["secret"])


def test_every_retry_sends_the_same_id_and_body_with_a_valid_signature(
    app: Flask, webhooks: WebhookApi, receivers: Receivers, monkeypatch: pytest.MonkeyPatch
) -> None:
    _retries(app, monkeypatch, 0, 0, 0)
    receiver = receivers()
    receiver.answer_with(500, 429, 404)  # then the default 204
    endpoint = webhooks.register(receiver.url)
    message_id = webhooks.send_test(endpoint["id"])
    message = webhooks.wait_message(endpoint["id"], message_id, _done)
    assert message["status"] == "delivered"
    assert (message["attempts"], message["last_status_code"]) == (4, 204)
    assert message["last_error"] is None
    assert len(receiver.requests()) == 4
    _same_message_each_time(receiver, message_id, endpoint["secret"])
    stamps = [int(request.headers["webhook-timestamp"]) for request in receiver.requests()]
    assert stamps == sorted(stamps)  # each attempt is signed when it is made


def test_the_delivery_log_shows_attempts_status_and_next_attempt(
    app: Flask, webhooks: WebhookApi, receivers: Receivers, monkeypatch: pytest.MonkeyPatch
) -> None:
    _retries(app, monkeypatch, 30, 60)
    receiver = receivers()
    receiver.default_status = 503
    endpoint = webhooks.register(receiver.url)
    message_id = webhooks.send_test(endpoint["id"])
    message = webhooks.wait_message(endpoint["id"], message_id, lambda m: m["attempts"] >= 1)
    assert message["status"] == "pending"
    assert (message["attempts"], message["last_status_code"]) == (1, 503)
    assert message["event_type"] == "webhook.test"
    wait = (_at(message["next_attempt_at"]) - _at(message["last_attempt_at"])).total_seconds()
    assert 27 <= wait <= 33  # the schedule's first delay, ±10 % jitter
    pending = webhooks.messages(endpoint["id"], status="pending")
    assert [m["id"] for m in pending] == [message_id]
    assert webhooks.messages(endpoint["id"], status="delivered") == []


def test_a_redirect_is_not_followed(
    app: Flask, webhooks: WebhookApi, receivers: Receivers, monkeypatch: pytest.MonkeyPatch
) -> None:
    _retries(app, monkeypatch, 0)
    elsewhere = receivers()
    receiver = receivers()
    receiver.redirect_to = elsewhere.url
    endpoint = webhooks.register(receiver.url)
    message_id = webhooks.send_test(endpoint["id"])
    message = webhooks.wait_message(endpoint["id"], message_id, _done)
    assert message["status"] == "failed"
    assert (message["attempts"], message["last_status_code"]) == (2, 307)
    assert len(receiver.requests()) == 2
    assert elsewhere.requests() == []


def test_a_slow_receiver_times_out_within_the_timeout_and_is_retried(
    app: Flask, webhooks: WebhookApi, receivers: Receivers, monkeypatch: pytest.MonkeyPatch
) -> None:
    _retries(app, monkeypatch, 0)
    monkeypatch.setitem(app.config, "WEBHOOK_TIMEOUT_SECONDS", 1)
    receiver = receivers()
    receiver.delay_seconds = 3
    endpoint = webhooks.register(receiver.url)
    message_id = webhooks.send_test(endpoint["id"])
    message = webhooks.wait_message(endpoint["id"], message_id, _done)
    assert message["status"] == "failed"
    assert message["attempts"] == 2
    assert (message["last_status_code"], message["last_error"]) == (None, "timed out")
    first, second = receiver.requests()
    assert first.webhook_id == second.webhook_id == message_id
    # The retry began about one timeout after the first attempt, not after the 3 s answer.
    assert second.at - first.at < 2.5


@pytest.fixture()
def raw_server() -> Iterator[Callable[[Callable[[socket.socket], None]], str]]:
    """`start(answer)`: a loopback server that reads one request per connection and leaves
    the answer to `answer(connection)`; its URL."""
    servers: list[socket.socket] = []

    def start(answer: Callable[[socket.socket], None]) -> str:
        server = socket.create_server(("127.0.0.1", 0))
        servers.append(server)

        def serve() -> None:
            while True:
                try:
                    connection, _ = server.accept()
                except OSError:
                    return
                threading.Thread(target=_answer, args=(connection, answer), daemon=True).start()

        threading.Thread(target=serve, daemon=True).start()
        return f"http://127.0.0.1:{server.getsockname()[1]}/hook"

    yield start
    for server in servers:
        server.close()


def _answer(connection: socket.socket, answer: Callable[[socket.socket], None]) -> None:
    with connection:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(body) < length:
            body += connection.recv(65536)
        try:
            answer(connection)
        except OSError:
            pass  # the client closed: what these tests expect of it


def test_a_huge_answer_is_read_only_up_to_a_cap(
    app: Flask, webhooks: WebhookApi, raw_server: Any
) -> None:
    sent: list[int] = []

    def flood(connection: socket.socket) -> None:
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n")
        chunk = b"x" * 65536
        total = 0
        try:
            while total < 1 << 30:  # a gigabyte, were it all read
                connection.sendall(chunk)
                total += len(chunk)
        finally:
            sent.append(total)

    endpoint = webhooks.register(raw_server(flood))
    message_id = webhooks.send_test(endpoint["id"])
    message = webhooks.wait_message(endpoint["id"], message_id, _done)
    assert (message["status"], message["last_status_code"]) == ("delivered", 200)
    factories.wait_until(lambda: sent)
    assert sent[0] < 64 << 20  # the sender hit a closed connection long before the end


def test_an_answer_dribbled_byte_by_byte_is_cut_at_the_timeout(
    app: Flask, webhooks: WebhookApi, raw_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No single read waits a whole timeout, yet the attempt as a whole is bounded."""
    _retries(app, monkeypatch)  # no retries: one attempt
    monkeypatch.setitem(app.config, "WEBHOOK_TIMEOUT_SECONDS", 1)
    started: list[float] = []

    def dribble(connection: socket.socket) -> None:
        started.append(time.monotonic())
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 100:
            connection.sendall(bytes([byte]))
            time.sleep(0.1)

    endpoint = webhooks.register(raw_server(dribble))
    message_id = webhooks.send_test(endpoint["id"])
    message = webhooks.wait_message(endpoint["id"], message_id, _done)
    finished = time.monotonic()
    assert (message["status"], message["last_error"]) == ("failed", "timed out")
    assert finished - started[0] < 3  # the dribble alone would take over 12 s


def test_an_endpoint_failing_long_enough_is_disabled_and_never_contacted_again(
    app: Flask, webhooks: WebhookApi, receivers: Receivers, monkeypatch: pytest.MonkeyPatch
) -> None:
    _retries(app, monkeypatch, 60)
    monkeypatch.setitem(app.config, "WEBHOOK_DISABLE_AFTER_SECONDS", 1)
    receiver = receivers()
    receiver.default_status = 500
    endpoint = webhooks.register(receiver.url)
    first = webhooks.send_test(endpoint["id"])
    webhooks.wait_message(endpoint["id"], first, lambda m: m["attempts"] >= 1)
    assert webhooks.get(endpoint["id"])["enabled"] is True  # one failure is not enough
    # It has been failing for a while (failing_since was set by the first failure).
    assert shift(app, "webhook_endpoint", "failing_since", endpoint["id"], 10) == 1
    second = webhooks.send_test(endpoint["id"])
    webhooks.wait_message(endpoint["id"], second, lambda m: m["attempts"] >= 1)

    shown = webhooks.get(endpoint["id"])
    assert (shown["enabled"], shown["disabled_reason"]) == (False, "failing")
    audit = webhooks.client.get(
        "/audit-events",
        query_string={"action": "webhook.disabled"},
        headers=webhooks.tenant.headers,
    )
    assert audit.status_code == 200, audit.get_data(as_text=True)
    (event,) = audit.get_json()["items"]
    assert (event["actor"], event["target"]) == ("system", endpoint["id"])
    assert len(receiver.requests()) == 2

    # The first message's retry comes due: it is closed without contacting the endpoint.
    assert shift(app, "webhook_message", "next_attempt_at", first, 120) == 1
    with app.app_context():
        send_task(tasks.dispatch_due)
    message = webhooks.wait_message(endpoint["id"], first, _done)
    assert (message["status"], message["last_error"]) == ("failed", "endpoint disabled")
    # Nor does anything new reach it: no test, no replay, no message for a new event.
    response = webhooks.client.post(f"{webhooks.base}/{endpoint['id']}/test", headers=ROOT)
    assert response.status_code == 409 and response.get_json()["error"] == "webhook_disabled"
    response = webhooks.client.post(
        f"{webhooks.base}/{endpoint['id']}/messages/{second}/replay", headers=ROOT
    )
    assert response.status_code == 409 and response.get_json()["error"] == "webhook_disabled"
    response = webhooks.client.post(
        "/api/v2/users",
        json={
            "connection": "Username-Password-Authentication",
            "user_id": "bob",
            "email": "bob@example.com",
            "password": "Correct-Horse-9",
        },
        headers={"Authorization": f"Bearer {webhooks.tenant.key}"},
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    assert {m["id"] for m in webhooks.messages(endpoint["id"])} == {first, second}
    assert len(receiver.requests()) == 2


def _claimed(endpoint_id: str, message_id: str | None = None) -> delivery.Claimed:
    return delivery.Claimed(
        message_id=message_id or f"msg_{uuid.uuid4().hex}",
        endpoint_id=endpoint_id,
        url="http://127.0.0.1/",
        body="{}",
        secrets=[],
        enabled=True,
    )


def test_attempt_slots_are_counted_per_endpoint_in_redis(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "WEBHOOK_MAX_IN_FLIGHT", 2)
    slow, other = f"wh_slow{uuid.uuid4().hex[:8]}", f"wh_other{uuid.uuid4().hex[:8]}"
    with app.app_context():
        held = [_claimed(slow), _claimed(slow)]
        assert all(delivery.take_slot(claimed) for claimed in held)
        third = _claimed(slow)
        assert delivery.take_slot(third) is False  # both of the slow endpoint's are taken
        assert delivery.take_slot(_claimed(other))  # the other endpoint's are its own
        delivery.free_slot(held[0])
        assert delivery.take_slot(third)  # a freed slot is taken again
        # A slot whose worker died lapses when its lease ends.
        client = redis_client.client()
        key = delivery._slots_key(slow)
        client.zadd(key, {held[1].message_id: time.time() - 1})
        assert delivery.take_slot(_claimed(slow))
        for endpoint_id in (slow, other):
            client.delete(delivery._slots_key(endpoint_id))


def test_a_busy_endpoint_does_not_hold_back_another_endpoints_messages(
    app: Flask, webhooks: WebhookApi, receivers: Receivers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "WEBHOOK_MAX_IN_FLIGHT", 1)
    busy_receiver, free_receiver = receivers(), receivers()
    busy = webhooks.register(busy_receiver.url)
    free = webhooks.register(free_receiver.url)
    in_flight = _claimed(busy["id"])  # an attempt of the busy endpoint that is under way
    with app.app_context():
        assert delivery.take_slot(in_flight)
    try:
        waiting = webhooks.send_test(busy["id"])
        going = webhooks.send_test(free["id"])  # queued after the busy one's
        webhooks.wait_message(free["id"], going, lambda m: m["status"] == "delivered")
        held_back = webhooks.message(busy["id"], waiting)
        assert (held_back["status"], held_back["attempts"]) == ("pending", 0)
        assert busy_receiver.requests() == []
    finally:
        with app.app_context():
            delivery.free_slot(in_flight)
    # The held message waits, due, for the next attempt to that endpoint to end (which
    # sends the next in line) or for the dispatcher; the attempt here was no real one.
    with app.app_context():
        send_task(tasks.dispatch_due)
    message = webhooks.wait_message(busy["id"], waiting, _done)
    assert (message["status"], message["attempts"]) == ("delivered", 1)
    assert [request.webhook_id for request in busy_receiver.requests()] == [waiting]


def _claim_at_once(app: Flask, tenant_id: str, message_id: str) -> list[Any]:
    """What two threads, each with its own session, got from claiming the message at once."""
    start = threading.Barrier(2, timeout=10)
    results: list[Any] = [None, None]

    def attempt(slot: int) -> None:
        with app.app_context(), tenant_scope(tenant_id):
            try:
                start.wait()
                results[slot] = delivery.claim(message_id)
                db.session.commit()
            except Exception as exc:  # reported by the test, not lost in the thread
                results[slot] = exc

    threads = [threading.Thread(target=attempt, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=15)
    return results


def test_two_workers_claiming_one_message_at_once_one_wins(
    app: Flask, webhooks: WebhookApi, receivers: Receivers
) -> None:
    endpoint = webhooks.register(receivers().url)
    tenant_id = webhooks.tenant.id
    for _ in range(8):
        message_id = quiet_message(app, tenant_id, endpoint["id"])
        results = _claim_at_once(app, tenant_id, message_id)
        assert not any(isinstance(result, Exception) for result in results), results
        winners = [result for result in results if result is not None]
        assert len(winners) == 1, results
        assert winners[0].message_id == message_id and winners[0].endpoint_id == endpoint["id"]
        with app.app_context(), tenant_scope(tenant_id):
            assert delivery.claim(message_id) is None  # its lease runs: not due


def test_a_message_whose_worker_died_is_sent_again_with_the_same_id(
    app: Flask, webhooks: WebhookApi, receivers: Receivers
) -> None:
    receiver = receivers()
    endpoint = webhooks.register(receiver.url)
    message_id = quiet_message(app, webhooks.tenant.id, endpoint["id"])
    # A worker claims it, then dies before sending: the lease is all that is left.
    with app.app_context(), tenant_scope(webhooks.tenant.id):
        assert delivery.claim(message_id) is not None
        db.session.commit()
    with app.app_context():
        due = sweeps.due(tasks.DUE)
    assert (webhooks.tenant.id, message_id) not in due  # not while its lease runs
    leased = webhooks.message(endpoint["id"], message_id)
    assert (leased["status"], leased["attempts"]) == ("pending", 0)
    # The lease ends; the periodic dispatcher (beat's job) finds the message due.
    assert shift(app, "webhook_message", "next_attempt_at", message_id, 3600) == 1
    with app.app_context():
        send_task(tasks.dispatch_due)
    message = webhooks.wait_message(endpoint["id"], message_id, _done)
    assert (message["status"], message["attempts"]) == ("delivered", 1)
    (request,) = receiver.requests()
    assert request.webhook_id == message_id
    verify(request, endpoint["secret"])
