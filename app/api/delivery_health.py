"""A tenant's delivery health, one shape for the platform surface (GET
/tenants/{id}/delivery-health) and the console's dashboard: its mail deliveries and webhook
messages counted by status over the last day and the last 30 days (rows written in each
window, by their status now)."""

from __future__ import annotations

from datetime import timedelta

from app.mail import service as mail_service
from app.webhooks import delivery as webhook_delivery

WINDOWS = {"last_24h": timedelta(days=1), "last_30d": timedelta(days=30)}


def tenant_delivery_health() -> dict[str, dict[str, dict[str, int]]]:
    """{"mail"|"webhooks": {window: {status: count}}} of the current tenant."""
    return {
        "mail": {name: mail_service.count_by_status(within=span) for name, span in WINDOWS.items()},
        "webhooks": {
            name: webhook_delivery.count_by_status(within=span) for name, span in WINDOWS.items()
        },
    }
