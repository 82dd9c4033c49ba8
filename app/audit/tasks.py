"""Audit work done by the worker (events that must not slow the request down)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.audit import service as audit_service
from app.core.jobs import tenant_task


@tenant_task(name="audit.record_event", autoretry_for=(ConnectionError,), retry_backoff=True)
def record_event(tenant_id: str, event: dict[str, Any]) -> None:
    """Write one audit event in `tenant_id` (its scope entered by @tenant_task); `event`
    holds record()'s arguments, `at` as ISO text."""
    at = datetime.fromisoformat(event.pop("at")) if event.get("at") else None
    audit_service.record(at=at, **event)
