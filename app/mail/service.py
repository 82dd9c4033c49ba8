"""Create delivery rows and deliver them exactly as the row says: through Postmark
(postmarker, `POSTMARK_API_URL` honoured) or, in development without a token, into the
outbox folder. A row is claimed atomically before sending, so it is sent at most once.

A delivery's functions run in its tenant's scope, entered by the task that sends it; what
the periodic jobs sweep across tenants is declared here and run by core.sweeps.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import requests
from flask import current_app
from postmarker.core import PostmarkClient
from postmarker.exceptions import ClientError
from sqlalchemy import ColumnElement, Select, func, or_, select, update

from app.core import security
from app.core.db import db, utcnow
from app.core.errors import Invalid
from app.core.sweeps import Cleanup, Count
from app.mail.models import FAILED, QUEUED, SENDING, SENT, EmailDelivery
from app.tenants import service as tenant_service

log = logging.getLogger(__name__)
OUTBOX_TOKEN = "outbox"


class TransientMailError(Exception):
    """The provider could not take the mail now (5xx, timeout, connection): retry later."""


@dataclass
class MailSettings:
    server_token: str  # OUTBOX_TOKEN means "write to instance/outbox/"
    sender: str


def mail_settings(tenant_id: str) -> MailSettings:
    """The token and sender for a tenant's mail (tenant settings first, then deployment);
    Invalid `mail_not_configured` when neither has both, except in development, where
    mail goes to the outbox."""
    tenant = tenant_service.get_tenant(tenant_id)
    token = (
        tenant_service.postmark_server_token(tenant) or current_app.config["POSTMARK_SERVER_TOKEN"]
    )
    sender = tenant.email_from or current_app.config["EMAIL_FROM"]
    if token and sender:
        return MailSettings(token, sender)
    if current_app.config["APP_ENV"] == "development":
        return MailSettings(OUTBOX_TOKEN, sender or "gatehouse@localhost")
    raise Invalid(
        "No Postmark token or sender address is set for this tenant",
        code="mail_not_configured",
    )


def associated_data(delivery: EmailDelivery) -> bytes:
    return f"mail:{delivery.tenant_id}:{delivery.id}".encode()


def create_delivery(
    *, tenant_id: str, kind: str, to: str, sender: str, subject: str, text: str, html: str
) -> EmailDelivery:
    """Write a queued delivery row in the current transaction (the caller queues the task
    after commit)."""
    now = utcnow()
    delivery = EmailDelivery(
        id=security.random_hex(16),
        tenant_id=tenant_id,
        kind=kind,
        to_address=to,
        from_address=sender,
        subject=subject,
        body_encrypted="",
        status=QUEUED,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )
    body = json.dumps({"text": text, "html": html}).encode()
    delivery.body_encrypted = security.keyring().encrypt(body, associated_data(delivery))
    db.session.add(delivery)
    db.session.flush()
    return delivery


def retry_delay(attempt: int) -> int:
    """Seconds before retry number `attempt` (1-based): base, 2×base, 4×base, …"""
    return current_app.config["MAIL_RETRY_BASE_SECONDS"] * 2 ** (attempt - 1)


def _sending_lease() -> int:
    """Seconds after which a row left `sending` (its worker died mid-send) is claimable."""
    return current_app.config["MAIL_SENDING_LEASE_SECONDS"]


def claim(*, tenant_id: str, delivery_id: str) -> bool:
    """Mark a due row of the tenant in scope `sending` (one attempt more) if no one else
    has; the caller commits before sending, so two workers never send the same row."""
    now = utcnow()
    lease_expired = now - timedelta(seconds=_sending_lease())
    result = db.session.execute(
        update(EmailDelivery)
        .where(
            EmailDelivery.tenant_id == tenant_id,
            EmailDelivery.id == delivery_id,
            or_(
                EmailDelivery.status == QUEUED,
                (EmailDelivery.status == SENDING) & (EmailDelivery.updated_at < lease_expired),
            ),
        )
        .values(status=SENDING, attempts=EmailDelivery.attempts + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def _status_of(error: Exception) -> int | None:
    response = getattr(error, "response", None) or getattr(error.__cause__, "response", None)
    return getattr(response, "status_code", None)


def _send(delivery: EmailDelivery, settings_token: str) -> str:
    body = json.loads(
        security.keyring().decrypt(delivery.body_encrypted, associated_data(delivery))
    )
    if settings_token == OUTBOX_TOKEN:
        return _write_outbox(delivery, body)
    client = PostmarkClient(
        server_token=settings_token,
        root_api_url=current_app.config["POSTMARK_API_URL"].rstrip("/") + "/",
        timeout=current_app.config["MAIL_TIMEOUT_SECONDS"],
    )
    try:
        answer = client.emails.send(
            From=delivery.from_address,
            To=delivery.to_address,
            Subject=delivery.subject,
            TextBody=body["text"],
            HtmlBody=body["html"],
            MessageStream="outbound",
        )
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise TransientMailError(type(exc).__name__) from exc
    except (ClientError, requests.HTTPError) as exc:
        status = _status_of(exc)
        if status is None or status >= 500:
            raise TransientMailError(f"HTTP {status}") from exc
        raise
    return str(answer.get("MessageID", ""))


def _write_outbox(delivery: EmailDelivery, body: dict[str, str]) -> str:
    message = EmailMessage()
    message["From"], message["To"] = delivery.from_address, delivery.to_address
    message["Subject"] = delivery.subject
    message.set_content(body["text"])
    message.add_alternative(body["html"], subtype="html")
    outbox = Path(current_app.instance_path) / "outbox"
    outbox.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = outbox / f"{delivery.created_at:%Y%m%dT%H%M%S}-{delivery.id}.eml"
    # Only the owner may read a mail: it can hold a reset link.
    descriptor = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(bytes(message))
    log.info(
        "mail %s to %s (%s) written to %s", delivery.id, delivery.to_address, delivery.subject, path
    )
    return f"outbox:{path.name}"


def send_claimed(*, tenant_id: str, delivery_id: str) -> EmailDelivery:
    """Send a row this worker claimed and record the outcome on it. Raises
    TransientMailError (row queued again, or failed after the last attempt) so the caller
    can schedule a retry; a 4xx answer fails the row with the error recorded."""
    delivery = db.session.scalar(select(EmailDelivery).where(EmailDelivery.id == delivery_id))
    if delivery is None or delivery.status != SENDING:
        raise LookupError(f"delivery {delivery_id} is not claimed")
    try:
        message_id = _send(delivery, mail_settings(tenant_id).server_token)
    except TransientMailError as exc:
        _record_failure(delivery, str(exc), final=delivery.attempts >= _max_attempts())
        raise
    except Exception as exc:
        _record_failure(delivery, f"{type(exc).__name__}: {exc}"[:1000], final=True)
        return delivery
    delivery.status, delivery.sent_at = SENT, utcnow()
    delivery.provider_message_id, delivery.last_error = message_id[:64], None
    db.session.flush()
    return delivery


def _max_attempts() -> int:
    return max(1, current_app.config["MAIL_MAX_ATTEMPTS"])


def _record_failure(delivery: EmailDelivery, error: str, *, final: bool) -> None:
    delivery.last_error = error
    if final:
        delivery.status = FAILED
    else:
        delivery.status = QUEUED
        delivery.next_attempt_at = utcnow() + timedelta(seconds=retry_delay(delivery.attempts))
    db.session.flush()


def stuck_deliveries(now: datetime) -> Select[tuple[str, str]]:
    """Select (tenant id, delivery id) of rows still queued well after they were due, or
    left `sending` by a worker that died mid-send (its claim has run out): what the
    `requeue-stuck` job sends again (mail.tasks.STUCK)."""
    cutoff = now - timedelta(seconds=current_app.config["MAIL_REQUEUE_AFTER_SECONDS"])
    lease_expired = now - timedelta(seconds=_sending_lease())
    return (
        select(EmailDelivery.tenant_id, EmailDelivery.id)
        .where(
            or_(
                (EmailDelivery.status == QUEUED) & (EmailDelivery.next_attempt_at <= cutoff),
                (EmailDelivery.status == SENDING) & (EmailDelivery.updated_at < lease_expired),
            )
        )
        .order_by(EmailDelivery.next_attempt_at)
    )


def get_delivery(*, tenant_id: str, delivery_id: str) -> EmailDelivery:
    """A delivery of the tenant in scope; LookupError when there is none."""
    delivery = db.session.scalar(
        select(EmailDelivery).where(
            EmailDelivery.tenant_id == tenant_id, EmailDelivery.id == delivery_id
        )
    )
    if delivery is None:
        raise LookupError(f"no delivery {delivery_id}")
    return delivery


def _old(now: datetime) -> ColumnElement[bool]:
    cutoff = now - timedelta(days=current_app.config["DELIVERY_RETENTION_DAYS"])
    return EmailDelivery.status.in_((SENT, FAILED)) & (EmailDelivery.created_at < cutoff)


# What the periodic jobs sweep across tenants (core.sweeps runs them): sent or failed
# deliveries older than DELIVERY_RETENTION_DAYS; the /metrics gauge of rows by state.
OLD_DELIVERIES = Cleanup("old mail deliveries", EmailDelivery, _old)
BY_STATUS = Count(EmailDelivery.status, (QUEUED, SENDING, SENT, FAILED))


def _by_status(rows: Iterable[Any]) -> dict[str, int]:
    counts = {QUEUED: 0, SENDING: 0, SENT: 0, FAILED: 0}
    counts.update({status: int(count) for status, count in rows})
    return counts


def count_by_status(*, within: timedelta) -> dict[str, int]:
    """How many of the current tenant's deliveries created `within` the time up to now are
    in each state."""
    since = utcnow() - within
    rows = db.session.execute(
        select(EmailDelivery.status, func.count(EmailDelivery.id))
        .where(EmailDelivery.created_at >= since)
        .group_by(EmailDelivery.status)
    )
    return _by_status(rows)
