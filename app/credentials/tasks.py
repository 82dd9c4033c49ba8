"""Periodic credential work: delete expired password-reset requests."""

from __future__ import annotations

from celery import shared_task
from flask import current_app

from app.core.jobs import run_in_batches
from app.credentials import reset as password_reset


@shared_task(name="credentials.cleanup_resets")
def cleanup_resets() -> int:
    """Delete expired reset requests in bounded batches."""
    return run_in_batches(
        password_reset.purge_expired_all_tenants,
        batch_size=current_app.config["CLEANUP_BATCH_SIZE"],
    )
