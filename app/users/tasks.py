"""Periodic user work: flush the last-activity buffer into the database."""

from __future__ import annotations

from celery import shared_task

from app.users import service as user_service


@shared_task(name="users.flush_last_activity")
def flush_last_activity() -> int:
    """Write buffered activity timestamps to `last_activity_at` in one batch."""
    return user_service.flush_activity()
