"""Routes of the platform surface for a tenant's delivery health: its mail deliveries and
webhook messages counted by status over the last day and the last 30 days (the console's
dashboard). The root key, or the tenant's key with `read:audit` or `manage:webhooks`."""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from app.api.auth import root_or_tenant_key
from app.api.delivery_health import tenant_delivery_health
from app.api.fields import OutputSchema
from app.api.platform import blp
from app.tenants import service as tenant_service


# Kept here rather than in schemas.py: the shapes of this module's one route.
class MailCountsSchema(OutputSchema):
    queued = ma.fields.Integer()
    sending = ma.fields.Integer()
    sent = ma.fields.Integer()
    failed = ma.fields.Integer()


class WebhookCountsSchema(OutputSchema):
    pending = ma.fields.Integer()
    delivered = ma.fields.Integer()
    failed = ma.fields.Integer()


class MailWindowsSchema(OutputSchema):
    last_24h = ma.fields.Nested(MailCountsSchema)
    last_30d = ma.fields.Nested(MailCountsSchema)


class WebhookWindowsSchema(OutputSchema):
    last_24h = ma.fields.Nested(WebhookCountsSchema)
    last_30d = ma.fields.Nested(WebhookCountsSchema)


class DeliveryHealthSchema(OutputSchema):
    """Rows written in each window, by their status now."""

    mail = ma.fields.Nested(MailWindowsSchema)
    webhooks = ma.fields.Nested(WebhookWindowsSchema)


@blp.route("/tenants/<tenant_id>/delivery-health", methods=["GET"])
@root_or_tenant_key(("read:audit", "manage:webhooks"))
@blp.response(200, DeliveryHealthSchema)
def delivery_health(tenant_id: str) -> dict[str, Any]:
    """Count the tenant's mail deliveries and webhook messages by status (24 h, 30 days)"""
    tenant_service.get_tenant(tenant_id)
    return tenant_delivery_health()
