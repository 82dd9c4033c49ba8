"""Audit work done by the worker (events that must not slow the request down)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from celery import shared_task

from app.audit import service as audit_service
from app.core.tenancy import tenant_scope


@shared_task(name="audit.record_event", autoretry_for=(ConnectionError,), retry_backoff=True)
def record_event(tenant_id: str, event: dict[str, Any]) -> None:
    """Write one audit event; `event` holds record()'s arguments, `at` as ISO text."""
    at = datetime.fromisoformat(event.pop("at")) if event.get("at") else None
    with tenant_scope(tenant_id):
        audit_service.record(at=at, **event)
