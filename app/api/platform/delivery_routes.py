"""Routes of the platform surface for a tenant's delivery health: its mail deliveries and
webhook messages counted by status over the last day and the last 30 days (the console's
dashboard). The root key, or the tenant's key with `read:audit` or `manage:webhooks`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import marshmallow as ma

from app.api.auth import root_or_tenant_key
from app.api.fields import OutputSchema
from app.api.platform import blp
from app.mail import service as mail_service
from app.tenants import service as tenant_service
from app.webhooks import delivery as webhook_delivery

WINDOWS = {"last_24h": timedelta(days=1), "last_30d": timedelta(days=30)}


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
    return {
        "mail": {name: mail_service.count_by_status(within=span) for name, span in WINDOWS.items()},
        "webhooks": {
            name: webhook_delivery.count_by_status(within=span) for name, span in WINDOWS.items()
        },
    }
