"""Periodic tenant work: flush API-key use into `last_used_at`."""

from __future__ import annotations

from celery import shared_task

from app.tenants import service as tenant_service


@shared_task(name="tenants.flush_key_usage")
def flush_key_usage() -> int:
    """Write buffered API-key use to `last_used_at` in one batch."""
    return tenant_service.flush_key_usage()
