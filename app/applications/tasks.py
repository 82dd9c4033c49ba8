"""Periodic application work: delete authorization codes long expired."""

from __future__ import annotations

from celery import shared_task
from flask import current_app

from app.applications import grants as application_grants
from app.core.jobs import run_in_batches


@shared_task(name="applications.cleanup_codes")
def cleanup_codes() -> int:
    """Delete long-expired authorization codes in bounded batches."""
    return run_in_batches(
        application_grants.purge_expired_all_tenants,
        batch_size=current_app.config["CLEANUP_BATCH_SIZE"],
    )
