"""Webhook work for the worker, on a queue of its own (WEBHOOK_QUEUE), so slow receivers
never delay mail or imports: hand new messages out, attempt one message, send what came
due (retries; messages whose queueing failed or whose worker died), purge old ones."""

from __future__ import annotations

import logging

from celery import Task, shared_task
from flask import current_app

from app.core import sweeps
from app.core.db import db
from app.core.jobs import send_task, tenant_task
from app.core.sweeps import Requeue
from app.webhooks import delivery
from app.webhooks.models import PENDING

log = logging.getLogger(__name__)
DUE_BATCH = 500
# A retry due within this long is queued with a countdown; later ones wait for the
# dispatcher (a Redis broker redelivers long-delayed tasks, and the rows are the truth).
COUNTDOWN_LIMIT_SECONDS = 300


@tenant_task(name="webhooks.dispatch")
def dispatch(tenant_id: str, message_ids: list[str]) -> int:
    """Queue one attempt task per message (one broker message per request that changed
    something, however many endpoints listen)."""
    for message_id in message_ids:
        send_task(deliver, tenant_id, message_id)
    return len(message_ids)


@tenant_task(
    bind=True,
    name="webhooks.deliver",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,
)
def deliver(self: Task, tenant_id: str, message_id: str) -> str:
    """Attempt one message at most once per claim (in its tenant's scope)."""
    claimed = delivery.claim(message_id)
    db.session.commit()  # the lease is durable before the request leaves
    if claimed is None:
        return "skipped"  # not due, done, or taken by another worker
    if not delivery.take_slot(claimed):
        # Its endpoint is busy (slow): the message waits, due, until an attempt to that
        # endpoint ends and sends the next in line (or the dispatcher does), instead of
        # spinning through the queue.
        delivery.release(message_id, after_seconds=0)
        db.session.commit()
        return "busy"
    try:
        outcome = delivery.send(claimed)
    finally:
        delivery.free_slot(claimed)
    message = delivery.record(claimed, outcome)
    db.session.commit()
    waiting = delivery.next_due_for(claimed.endpoint_id)
    if waiting is not None:
        _later(tenant_id, waiting, 0)
    if message is None:
        return "gone"
    log.info(
        "webhook message %s: %s (attempt %d, status %s)",
        message_id,
        message.status,
        message.attempts,
        outcome.status_code or outcome.error,
    )
    if message.status == PENDING and message.next_attempt_at is not None:
        wait = (message.next_attempt_at - message.last_attempt_at).total_seconds()
        if wait <= COUNTDOWN_LIMIT_SECONDS:
            _later(tenant_id, message_id, wait)
    return message.status


# Messages the `webhooks` job sends, whichever tenant's (core.sweeps runs it).
DUE = Requeue("webhook messages", delivery.due_messages, deliver, limit=DUE_BATCH)


@shared_task(name="webhooks.dispatch_due")
def dispatch_due() -> int:
    """Queue an attempt for every message that came due and is not being attempted."""
    return sweeps.send_again(DUE)


@shared_task(name="webhooks.cleanup_messages")
def cleanup_messages() -> int:
    """Delete old delivered and failed messages in bounded batches."""
    return sweeps.clean(delivery.OLD_MESSAGES)


def _later(tenant_id: str, message_id: str, seconds: float) -> None:
    # In-process (no broker) a countdown would run at once: the dispatcher sends it instead.
    if current_app.extensions["celery"].conf.task_always_eager:
        return
    try:
        send_task(deliver, tenant_id, message_id, countdown=max(seconds, 0.0))
    except Exception:
        log.warning("could not queue webhook message %s; the dispatcher will", message_id)
