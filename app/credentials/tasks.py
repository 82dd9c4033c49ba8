"""Credential work for the worker: delete expired password-reset requests (periodic), and
the hosted forgot-password page's reset requests."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from app.core import sweeps
from app.core.jobs import tenant_task
from app.credentials import reset as password_reset


@shared_task(name="credentials.cleanup_resets")
def cleanup_resets() -> int:
    """Delete expired reset requests in bounded batches."""
    return sweeps.clean(password_reset.EXPIRED)


@tenant_task(name="credentials.hosted_reset_request")
def hosted_reset_request(
    tenant_id: str, email: str, continue_with: dict[str, Any] | None, ip: str | None
) -> None:
    """Mail the hosted reset link to the users holding `email` (none: audited only): the
    forgot-password page's request, done here so that the page answers in the same time
    whether or not the address is registered."""
    password_reset.request_reset(
        tenant_id=tenant_id,
        username=None,
        email=email,
        host=None,
        ip=ip,
        continue_with=continue_with,
    )
