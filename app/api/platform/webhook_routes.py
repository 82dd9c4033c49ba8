"""Routes of the platform surface for webhook endpoints: the root key or a tenant key
holding `manage:webhooks`. Another tenant's endpoint or message ids answer 404."""

from __future__ import annotations

from typing import Any

from app.api.auth import current_principal, root_or_tenant_key
from app.api.platform import blp
from app.api.platform.webhook_schemas import (
    CreateWebhookSchema,
    IssuedWebhookSchema,
    MessageQuerySchema,
    PatchWebhookSchema,
    WebhookMessagePageSchema,
    WebhookMessageSchema,
    WebhookSchema,
)
from app.core.pagination import Page
from app.webhooks import service as webhook_service
from app.webhooks.models import WebhookEndpoint, WebhookMessage

SCOPE = "manage:webhooks"
ENDPOINTS = "/tenants/<tenant_id>/webhooks"
ENDPOINT = ENDPOINTS + "/<webhook_id>"


@blp.route(ENDPOINTS, methods=["POST"])
@root_or_tenant_key(SCOPE)
@blp.arguments(CreateWebhookSchema)
@blp.response(201, IssuedWebhookSchema)
@blp.errors(409)
def create_webhook(body: dict[str, Any], tenant_id: str) -> webhook_service.IssuedEndpoint:
    """Register a webhook endpoint (its signing secret is shown only in this answer)"""
    return webhook_service.create_endpoint(actor=current_principal(), **body)


@blp.route(ENDPOINTS, methods=["GET"])
@root_or_tenant_key(SCOPE)
@blp.response(200, WebhookSchema(many=True))
def list_webhooks(tenant_id: str) -> list[WebhookEndpoint]:
    """List the tenant's webhook endpoints"""
    return webhook_service.list_endpoints()


@blp.route(ENDPOINT, methods=["GET"])
@root_or_tenant_key(SCOPE)
@blp.response(200, WebhookSchema)
def get_webhook(tenant_id: str, webhook_id: str) -> WebhookEndpoint:
    """Get a webhook endpoint"""
    return webhook_service.get_endpoint(webhook_id)


@blp.route(ENDPOINT, methods=["PATCH"])
@root_or_tenant_key(SCOPE)
@blp.arguments(PatchWebhookSchema)
@blp.response(200, WebhookSchema)
def patch_webhook(body: dict[str, Any], tenant_id: str, webhook_id: str) -> WebhookEndpoint:
    """Change a webhook's url, event types, description, or enable/disable it"""
    return webhook_service.update_endpoint(
        actor=current_principal(), endpoint_id=webhook_id, fields=body
    )


@blp.route(ENDPOINT, methods=["DELETE"])
@root_or_tenant_key(SCOPE)
@blp.response(204)
def delete_webhook(tenant_id: str, webhook_id: str) -> None:
    """Delete a webhook endpoint and its delivery log"""
    webhook_service.delete_endpoint(actor=current_principal(), endpoint_id=webhook_id)


@blp.route(ENDPOINT + "/rotate-secret", methods=["POST"])
@root_or_tenant_key(SCOPE)
@blp.response(200, IssuedWebhookSchema)
def rotate_webhook_secret(tenant_id: str, webhook_id: str) -> webhook_service.IssuedEndpoint:
    """Issue a new signing secret; the old one also signs during the grace period"""
    return webhook_service.rotate_secret(actor=current_principal(), endpoint_id=webhook_id)


@blp.route(ENDPOINT + "/test", methods=["POST"])
@root_or_tenant_key(SCOPE)
@blp.response(202, WebhookMessageSchema)
@blp.errors(409)
def test_webhook(tenant_id: str, webhook_id: str) -> WebhookMessage:
    """Send a `webhook.test` message to this endpoint (409 when it is disabled)"""
    return webhook_service.send_test(endpoint_id=webhook_id)


@blp.route(ENDPOINT + "/messages", methods=["GET"])
@root_or_tenant_key(SCOPE)
@blp.arguments(MessageQuerySchema, location="query")
@blp.response(200, WebhookMessagePageSchema)
def list_webhook_messages(
    query: dict[str, Any], tenant_id: str, webhook_id: str
) -> Page[WebhookMessage]:
    """The endpoint's delivery log, newest first (cursor-paged; filter by status)"""
    return webhook_service.list_messages(endpoint_id=webhook_id, **query)


@blp.route(ENDPOINT + "/messages/<message_id>/replay", methods=["POST"])
@root_or_tenant_key(SCOPE)
@blp.response(202, WebhookMessageSchema)
@blp.errors(409)
def replay_webhook_message(tenant_id: str, webhook_id: str, message_id: str) -> WebhookMessage:
    """Send a message again, with the same webhook-id and body (409 when disabled)"""
    return webhook_service.replay(
        actor=current_principal(), endpoint_id=webhook_id, message_id=message_id
    )
