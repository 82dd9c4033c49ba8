"""Periodic token work: delete expired refresh tokens, used custom-token ids and sessions."""

from __future__ import annotations

from celery import shared_task

from app.core import sweeps
from app.tokens import service as token_service


@shared_task(name="tokens.cleanup_expired")
def cleanup_expired() -> int:
    """Delete expired token rows in bounded batches, each its own transaction."""
    return sweeps.clean(*token_service.EXPIRED)
