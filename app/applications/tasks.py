"""Periodic application work: delete authorization codes long expired."""

from __future__ import annotations

from celery import shared_task

from app.applications import grants as application_grants
from app.core import sweeps


@shared_task(name="applications.cleanup_codes")
def cleanup_codes() -> int:
    """Delete long-expired authorization codes in bounded batches."""
    return sweeps.clean(application_grants.EXPIRED_CODES)
