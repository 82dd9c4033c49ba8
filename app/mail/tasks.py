"""Mail work for the worker: send one delivery (with retries), re-queue stuck ones."""

from __future__ import annotations

import logging

from celery import Task, shared_task

from app.core import sweeps
from app.core.db import db
from app.core.jobs import tenant_task
from app.core.sweeps import Requeue
from app.mail import service as mail_service
from app.mail.models import QUEUED

log = logging.getLogger(__name__)


@tenant_task(
    bind=True,
    name="mail.send_delivery",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,  # the row counts attempts and stops at MAIL_MAX_ATTEMPTS
)
def send_delivery(self: Task, tenant_id: str, delivery_id: str) -> str:
    """Send a delivery row at most once (in its tenant's scope, which @tenant_task enters);
    retry transient failures with back-off."""
    if not mail_service.claim(tenant_id=tenant_id, delivery_id=delivery_id):
        return "skipped"  # sent, failed, or being sent by another worker
    db.session.commit()  # the claim is durable before the mail leaves
    try:
        delivery = mail_service.send_claimed(tenant_id=tenant_id, delivery_id=delivery_id)
    except mail_service.TransientMailError as exc:
        db.session.commit()
        delivery = mail_service.get_delivery(tenant_id=tenant_id, delivery_id=delivery_id)
        if delivery.status != QUEUED:
            return delivery.status
        countdown = mail_service.retry_delay(delivery.attempts)
        raise self.retry(exc=exc, countdown=countdown) from exc
    log.info("mail delivery %s: %s (attempt %d)", delivery_id, delivery.status, delivery.attempts)
    return delivery.status


# Deliveries the `requeue-stuck` job sends again, whichever tenant's (core.sweeps runs it).
STUCK = Requeue("deliveries", mail_service.stuck_deliveries, send_delivery, limit=500)


@shared_task(name="mail.requeue_stuck")
def requeue_stuck() -> int:
    """Queue again every delivery still waiting well after it was due (broker outage)."""
    return sweeps.send_again(STUCK)


@shared_task(name="mail.cleanup_deliveries")
def cleanup_deliveries() -> int:
    """Delete old sent/failed delivery rows in bounded batches."""
    return sweeps.clean(mail_service.OLD_DELIVERIES)
