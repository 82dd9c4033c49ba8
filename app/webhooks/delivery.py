"""One delivery attempt of one message, Standard Webhooks style, and what follows from it.

`claim` takes a due message for one attempt by moving `next_attempt_at` to the end of a
lease (longer than an attempt can take): two workers handed the same message never both
send it, and a worker killed mid-attempt leaves a message that comes due again when the
lease ends, to be sent with the same `webhook-id`. `send` makes the request: the target
resolved and checked again (targets.resolve), the connection made to the checked address,
no redirect followed, the whole attempt bounded by WEBHOOK_TIMEOUT_SECONDS (a watchdog
closes the socket of a target that answers byte by byte), and at most a small part of the
answer read. `record` books the outcome: delivered, or the next attempt after the retry
schedule's delay (with jitter), or failed after the last; an endpoint whose every attempt
has failed for WEBHOOK_DISABLE_AFTER_SECONDS is disabled, and the audit log says so.
"""

from __future__ import annotations

import http.client
import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import ColumnElement, Select, func, select, update

from app.audit import service as audit_service
from app.core import redis_client, security
from app.core.db import db, utcnow
from app.core.sweeps import Cleanup, Count
from app.webhooks import service, targets
from app.webhooks.models import DELIVERED, FAILED, PENDING, WebhookEndpoint, WebhookMessage

log = logging.getLogger(__name__)
LEASE_MARGIN_SECONDS = 30
RESPONSE_READ_LIMIT = 1024  # bytes of an answer read; only its status is kept
USER_AGENT = "Gatehouse-Webhooks/1"
DUE_PER_ENDPOINT = 10  # messages one dispatcher run sends per endpoint
_jitter = random.SystemRandom()


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True)
class Claimed:
    """What an attempt needs, read before the transaction ends (none is open while the
    request is in flight)."""

    message_id: str
    endpoint_id: str
    url: str
    body: str
    secrets: list[str]
    enabled: bool


def claim(message_id: str) -> Claimed | None:
    """Take a due pending message for one attempt (its lease written), or None when it is
    not due, not pending, or taken by another worker."""
    now = utcnow()
    lease = timedelta(seconds=current_app.config["WEBHOOK_TIMEOUT_SECONDS"] + LEASE_MARGIN_SECONDS)
    taken = db.session.execute(
        update(WebhookMessage)
        .where(
            WebhookMessage.id == message_id,
            WebhookMessage.status == PENDING,
            WebhookMessage.next_attempt_at <= now,
        )
        .values(next_attempt_at=now + lease)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not taken:
        return None
    message = db.session.get(WebhookMessage, message_id, populate_existing=True)
    endpoint = db.session.get(WebhookEndpoint, message.endpoint_id) if message else None
    if message is None or endpoint is None:
        return None
    return Claimed(
        message_id=message.id,
        endpoint_id=endpoint.id,
        url=endpoint.url,
        body=message.body,
        secrets=service.signing_secrets(endpoint) if endpoint.enabled else [],
        enabled=endpoint.enabled,
    )


def release(message_id: str, *, after_seconds: float) -> None:
    """Give a claimed message back unsent (its endpoint's attempts are all taken)."""
    db.session.execute(
        update(WebhookMessage)
        .where(WebhookMessage.id == message_id, WebhookMessage.status == PENDING)
        .values(next_attempt_at=utcnow() + timedelta(seconds=after_seconds))
        .execution_options(synchronize_session=False)
    )


def send(claimed: Claimed) -> Outcome:
    """Make one attempt; never raises for anything the target or the network does."""
    if not claimed.enabled:
        return Outcome(None, "endpoint disabled")
    try:
        target = targets.resolve(claimed.url)
    except targets.TargetRefused as exc:
        return Outcome(None, f"refused: {exc}"[:255])
    timestamp = int(utcnow().timestamp())
    signatures = " ".join(
        security.webhook_signature(secret, claimed.message_id, timestamp, claimed.body)
        for secret in claimed.secrets
    )
    headers = {
        "Host": target.host_header,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": claimed.message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
    }
    return _post(target, headers, claimed.body.encode())


def record(claimed: Claimed, outcome: Outcome) -> WebhookMessage | None:
    """Book an attempt's outcome on the message (and its endpoint); the next attempt's
    time, if any, is the message's `next_attempt_at`."""
    message = db.session.get(WebhookMessage, claimed.message_id, populate_existing=True)
    endpoint = db.session.get(WebhookEndpoint, claimed.endpoint_id)
    if message is None or endpoint is None:
        return None  # deleted with its endpoint meanwhile
    now = utcnow()
    message.attempts += 1
    message.last_attempt_at = now
    message.last_status_code = outcome.status_code
    message.last_error = outcome.error
    if outcome.delivered:
        message.status, message.next_attempt_at = DELIVERED, None
        endpoint.failing_since = None
        return message
    schedule = current_app.config["WEBHOOK_RETRY_SCHEDULE"]
    if not claimed.enabled or message.attempts > len(schedule):
        message.status, message.next_attempt_at = FAILED, None
    else:
        delay = schedule[message.attempts - 1] * _jitter.uniform(0.9, 1.1)
        message.next_attempt_at = now + timedelta(seconds=delay)
    if claimed.enabled:
        _note_failure(endpoint)
    return message


def due_messages(now: datetime) -> Select[tuple[str, str]]:
    """Select (tenant id, message id) of pending messages whose attempt is due, oldest
    first: retries, and messages whose queueing failed (broker down) or whose worker died
    (what the `webhooks` job sends, webhooks.tasks.DUE)."""
    # A few per endpoint at a time: one endpoint's backlog cannot fill the batch and hold
    # back every other tenant's retries.
    due = (
        select(
            WebhookMessage.tenant_id,
            WebhookMessage.id,
            WebhookMessage.next_attempt_at,
            func.row_number()
            .over(partition_by=WebhookMessage.endpoint_id, order_by=WebhookMessage.next_attempt_at)
            .label("place"),
        )
        .where(WebhookMessage.status == PENDING, WebhookMessage.next_attempt_at <= now)
        .subquery()
    )
    return (
        select(due.c.tenant_id, due.c.id)
        .where(due.c.place <= DUE_PER_ENDPOINT)
        .order_by(due.c.next_attempt_at)
    )


def count_by_status(*, within: timedelta) -> dict[str, int]:
    """How many of the current tenant's messages written `within` the time up to now are
    in each state."""
    since = utcnow() - within
    rows = db.session.execute(
        select(WebhookMessage.status, func.count(WebhookMessage.id))
        .where(WebhookMessage.created_at >= since)
        .group_by(WebhookMessage.status)
    )
    return _by_status(rows)


def _by_status(rows: Iterable[Any]) -> dict[str, int]:
    counts = {PENDING: 0, DELIVERED: 0, FAILED: 0}
    counts.update({status: int(count) for status, count in rows})
    return counts


def next_due_for(endpoint_id: str) -> str | None:
    """The endpoint's oldest due message (one that found the endpoint busy), if any."""
    return db.session.scalar(
        select(WebhookMessage.id)
        .where(
            WebhookMessage.endpoint_id == endpoint_id,
            WebhookMessage.status == PENDING,
            WebhookMessage.next_attempt_at <= utcnow(),
        )
        .order_by(WebhookMessage.next_attempt_at)
        .limit(1)
    )


def _old(now: datetime) -> ColumnElement[bool]:
    before = now - timedelta(days=current_app.config["WEBHOOK_RETENTION_DAYS"])
    return (WebhookMessage.status != PENDING) & (WebhookMessage.created_at < before)


# What the periodic jobs sweep across tenants (core.sweeps runs them): delivered and failed
# messages older than WEBHOOK_RETENTION_DAYS; the /metrics gauge of messages by state.
OLD_MESSAGES = Cleanup("old webhook messages", WebhookMessage, _old)
BY_STATUS = Count(WebhookMessage.status, (PENDING, DELIVERED, FAILED))


def take_slot(claimed: Claimed) -> bool:
    """One of the WEBHOOK_MAX_IN_FLIGHT attempt slots of the message's endpoint, or False
    when they are all taken: a slow endpoint holds that many workers at most, and the
    other endpoints' messages go on. A slot is held until `free_slot`, or the end of the
    attempt's lease if its worker dies. Without Redis there is no limit."""
    client = redis_client.client()
    if client is None:
        return True
    key = _slots_key(claimed.endpoint_id)
    now = utcnow().timestamp()
    lease = current_app.config["WEBHOOK_TIMEOUT_SECONDS"] + LEASE_MARGIN_SECONDS
    try:
        pipe = client.pipeline()
        pipe.zremrangebyscore(key, "-inf", now)
        pipe.zadd(key, {claimed.message_id: now + lease})
        pipe.zcard(key)
        pipe.expire(key, lease)
        held = pipe.execute()[2]
        if held > current_app.config["WEBHOOK_MAX_IN_FLIGHT"]:
            client.zrem(key, claimed.message_id)
            return False
    except redis_client.REDIS_ERRORS:
        return True  # no limit is better than no delivery
    return True


def free_slot(claimed: Claimed) -> None:
    client = redis_client.client()
    if client is None:
        return
    try:
        client.zrem(_slots_key(claimed.endpoint_id), claimed.message_id)
    except redis_client.REDIS_ERRORS:
        pass  # the slot lapses with its lease


def _slots_key(endpoint_id: str) -> str:
    return f"{current_app.config['REDIS_KEY_PREFIX']}:webhook-slots:{endpoint_id}"


def _note_failure(endpoint: WebhookEndpoint) -> None:
    now = utcnow()
    if endpoint.failing_since is None:
        endpoint.failing_since = now
        return
    limit = current_app.config["WEBHOOK_DISABLE_AFTER_SECONDS"]
    if endpoint.enabled and (now - endpoint.failing_since).total_seconds() >= limit:
        endpoint.enabled, endpoint.disabled_reason = False, "failing"
        audit_service.record(
            action="webhook.disabled",
            actor="system",
            target=endpoint.id,
            data={"reason": "every delivery failed", "failing_since": str(endpoint.failing_since)},
        )


def _post(target: targets.Target, headers: dict[str, str], body: bytes) -> Outcome:
    timeout = float(current_app.config["WEBHOOK_TIMEOUT_SECONDS"])
    try:
        sock = socket.create_connection((target.address, target.port), timeout=timeout)
    except OSError as exc:
        return Outcome(None, f"connection failed: {type(exc).__name__}")
    # The whole attempt ends at the deadline, however the target dribbles its answer.
    deadline = time.monotonic() + timeout
    watchdog = threading.Timer(timeout, _shut, (sock,))
    watchdog.start()
    try:
        if target.scheme == "https":
            context = ssl.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=target.host)
        connection = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
        connection.sock = sock  # already connected, to the address that was checked
        connection.request("POST", target.path, body=body, headers=headers)
        response = connection.getresponse()
        response.read(RESPONSE_READ_LIMIT)
        return Outcome(
            response.status, None if response.status < 300 else f"HTTP {response.status}"
        )
    except ssl.SSLError as exc:
        return Outcome(None, f"TLS failed: {exc.reason or type(exc).__name__}"[:255])
    except (OSError, http.client.HTTPException) as exc:
        # The read the watchdog cut short may fail before the watchdog's thread has ended,
        # so the clock, not is_alive(), says whether the deadline passed.
        timed_out = isinstance(exc, TimeoutError) or time.monotonic() >= deadline
        return Outcome(None, "timed out" if timed_out else f"failed: {type(exc).__name__}")
    finally:
        watchdog.cancel()
        _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
