"""A tenant's webhook endpoints: register, change, rotate the signing secret, test, delete;
their delivery log and replays. Registering or changing an endpoint never contacts it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from app.audit import service as audit_service
from app.core import security
from app.core.db import db, utcnow
from app.core.errors import Conflict, Invalid, NotFound
from app.core.pagination import Page, paginate_by_creation
from app.core.tenancy import Principal, current_tenant_id
from app.tenants import service as tenant_service
from app.webhooks import events, targets
from app.webhooks.models import PENDING, WebhookEndpoint, WebhookMessage

MAX_ENDPOINTS = 50  # per tenant
MESSAGE_STATUSES = ("pending", "delivered", "failed")


@dataclass(frozen=True)
class IssuedEndpoint:
    """A new (or rotated) endpoint and its secret, shown in this answer only."""

    endpoint: WebhookEndpoint
    secret: str

    def __getattr__(self, name: str) -> Any:
        return getattr(self.endpoint, name)


def associated_data(endpoint: WebhookEndpoint, which: str = "current") -> bytes:
    # Binds a ciphertext to its row and slot: a value copied elsewhere does not decrypt.
    return f"webhook:{endpoint.tenant_id}:{endpoint.id}:{which}".encode()


def previous_associated_data(endpoint: WebhookEndpoint) -> bytes:
    return associated_data(endpoint, "previous")


def signing_secrets(endpoint: WebhookEndpoint) -> list[str]:
    """The secrets a delivery is signed with now: the current one, and the previous one
    while its grace period after a rotation lasts."""
    ring = security.keyring()
    found = [ring.decrypt(endpoint.secret_encrypted, associated_data(endpoint)).decode()]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret_encrypted and expires is not None and expires > utcnow():
        previous = ring.decrypt(
            endpoint.previous_secret_encrypted, previous_associated_data(endpoint)
        )
        found.append(previous.decode())
    return found


def create_endpoint(
    *,
    actor: Principal,
    url: str,
    event_types: list[str] | None = None,
    enabled: bool = True,
    description: str = "",
) -> IssuedEndpoint:
    """Register an endpoint (its URL checked, never contacted); NotFound for an unknown
    tenant, Invalid, Conflict."""
    tenant_service.get_tenant(current_tenant_id())
    count = db.session.scalar(select(func.count()).select_from(WebhookEndpoint)) or 0
    if count >= MAX_ENDPOINTS:
        raise Conflict(
            f"A tenant has at most {MAX_ENDPOINTS} webhook endpoints", code="too_many_webhooks"
        )
    now = utcnow()
    endpoint = WebhookEndpoint(
        id="wh_" + security.random_hex(12),
        tenant_id=current_tenant_id(),
        url=targets.check_url(url),
        event_types=_check_types(event_types or []),
        enabled=enabled,
        description=description,
        created_at=now,
        updated_at=now,
    )
    secret = _set_secret(endpoint)
    db.session.add(endpoint)
    db.session.flush()
    _audit(actor, "webhook.created", endpoint)
    return IssuedEndpoint(endpoint, secret)


def list_endpoints() -> list[WebhookEndpoint]:
    """The tenant's endpoints, oldest first; NotFound for an unknown tenant."""
    tenant_service.get_tenant(current_tenant_id())
    return list(
        db.session.scalars(
            select(WebhookEndpoint).order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        )
    )


def get_endpoint(endpoint_id: str) -> WebhookEndpoint:
    """The endpoint with this id in the current tenant; NotFound (also another tenant's)."""
    endpoint = db.session.scalar(
        select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id[:64])
    )
    if endpoint is None:
        raise NotFound("Webhook endpoint not found", code="webhook_not_found")
    return endpoint


def update_endpoint(
    *, actor: Principal, endpoint_id: str, fields: dict[str, Any]
) -> WebhookEndpoint:
    """Change url, event_types, enabled or description; enabling again forgets the
    failures that disabled it. Never contacts the target."""
    endpoint = get_endpoint(endpoint_id)
    if "url" in fields:
        endpoint.url = targets.check_url(fields["url"])
    if "event_types" in fields:
        endpoint.event_types = _check_types(fields["event_types"] or [])
    if "description" in fields:
        endpoint.description = fields["description"]
    if "enabled" in fields:
        if fields["enabled"] and not endpoint.enabled:
            endpoint.failing_since, endpoint.disabled_reason = None, None
        endpoint.enabled = fields["enabled"]
    endpoint.updated_at = utcnow()
    _audit(actor, "webhook.updated", endpoint, {"fields": sorted(fields)})
    return endpoint


def delete_endpoint(*, actor: Principal, endpoint_id: str) -> None:
    """Delete an endpoint and its delivery log; its pending messages are never sent."""
    endpoint = get_endpoint(endpoint_id)
    _audit(actor, "webhook.deleted", endpoint)
    db.session.delete(endpoint)
    db.session.flush()


def rotate_secret(*, actor: Principal, endpoint_id: str) -> IssuedEndpoint:
    """A new signing secret; the old one keeps signing too for WEBHOOK_SECRET_GRACE_SECONDS
    (both signatures in the header), so receivers can switch without losing a message."""
    endpoint = get_endpoint(endpoint_id)
    endpoint.previous_secret_encrypted = security.keyring().encrypt(
        signing_secrets(endpoint)[0].encode(), previous_associated_data(endpoint)
    )
    grace = current_app.config["WEBHOOK_SECRET_GRACE_SECONDS"]
    endpoint.previous_secret_expires_at = utcnow() + timedelta(seconds=grace)
    secret = _set_secret(endpoint)
    endpoint.updated_at = utcnow()
    _audit(actor, "webhook.secret_rotated", endpoint)
    return IssuedEndpoint(endpoint, secret)


def send_test(*, endpoint_id: str) -> WebhookMessage:
    """Queue a `webhook.test` message to this endpoint only; Conflict when disabled (a
    disabled endpoint is never contacted)."""
    endpoint = get_endpoint(endpoint_id)
    if not endpoint.enabled:
        raise Conflict("The webhook endpoint is disabled", code="webhook_disabled")
    (message_id,) = events.write_messages([endpoint.id], events.TEST_EVENT, events.test_body())
    return get_message(endpoint_id=endpoint.id, message_id=message_id)


def list_messages(
    *,
    endpoint_id: str,
    limit: int | None = None,
    cursor: str | None = None,
    status: str | None = None,
) -> Page[WebhookMessage]:
    """The endpoint's messages, newest first, keyset paged."""
    get_endpoint(endpoint_id)
    query = select(WebhookMessage).where(WebhookMessage.endpoint_id == endpoint_id)
    if status is not None:
        query = query.where(WebhookMessage.status == status)
    return paginate_by_creation(
        query,
        created_col=WebhookMessage.created_at,
        id_col=WebhookMessage.id,
        limit=limit,
        cursor=cursor,
        newest_first=True,
    )


def get_message(*, endpoint_id: str, message_id: str) -> WebhookMessage:
    get_endpoint(endpoint_id)
    message = db.session.scalar(
        select(WebhookMessage).where(
            WebhookMessage.endpoint_id == endpoint_id, WebhookMessage.id == message_id[:64]
        )
    )
    if message is None:
        raise NotFound("Webhook message not found", code="webhook_message_not_found")
    return message


def replay(*, actor: Principal, endpoint_id: str, message_id: str) -> WebhookMessage:
    """Send a message again (same `webhook-id`, same body), whatever its status: a fresh
    round of attempts; audited `webhook.message_replayed`. Conflict when the endpoint is
    disabled."""
    message = get_message(endpoint_id=endpoint_id, message_id=message_id)
    endpoint = get_endpoint(endpoint_id)
    if not endpoint.enabled:
        raise Conflict("The webhook endpoint is disabled", code="webhook_disabled")
    message.status, message.attempts, message.next_attempt_at = PENDING, 0, utcnow()
    message.last_error = None
    events.queue_after_commit([message.id])
    _audit(
        actor,
        "webhook.message_replayed",
        endpoint,
        {"message_id": message.id, "event_type": message.event_type},
    )
    return message


def _set_secret(endpoint: WebhookEndpoint) -> str:
    secret = security.new_webhook_secret()
    endpoint.secret_encrypted = security.keyring().encrypt(
        secret.encode(), associated_data(endpoint)
    )
    return secret


def _check_types(event_types: list[str]) -> list[str]:
    unknown = sorted(set(event_types) - set(events.EVENT_TYPES))
    if unknown:
        raise Invalid(
            f"Unknown event types: {', '.join(unknown)}",
            code="unknown_event_type",
            fields={"event_types": [f"Must be one of {', '.join(events.EVENT_TYPES)}"]},
        )
    return list(dict.fromkeys(event_types))


def _audit(
    actor: Principal, action: str, endpoint: WebhookEndpoint, data: dict[str, Any] | None = None
) -> None:
    audit_service.record(
        action=action, actor=actor.label, target=endpoint.id, ip=actor.ip, data=data or {}
    )
