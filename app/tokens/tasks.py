"""Periodic token work: delete expired refresh tokens and used custom-token ids."""

from __future__ import annotations

from celery import shared_task
from flask import current_app

from app.core.jobs import run_in_batches
from app.tokens import service as token_service


@shared_task(name="tokens.cleanup_expired")
def cleanup_expired() -> int:
    """Delete expired token rows in bounded batches, each its own transaction."""
    return run_in_batches(
        token_service.purge_expired_all_tenants, batch_size=current_app.config["CLEANUP_BATCH_SIZE"]
    )
