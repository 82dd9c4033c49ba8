"""Worker side of imports and exports: each task enters its tenant (@tenant_task) and
calls one service function; the periodic clean-up deletes expired exports."""

from __future__ import annotations

import logging

from celery import shared_task
from flask import current_app

from app.core.db import db
from app.core.jobs import run_in_batches, tenant_task
from app.portability import exports

log = logging.getLogger(__name__)


@tenant_task(name="portability.run_export_job", acks_late=True, reject_on_worker_lost=True)
def run_export_job(tenant_id: str, job_id: str) -> None:
    """Write an export job's file (a finished job is left alone, so a redelivery is
    harmless); an unexpected error marks the job failed instead of leaving it pending."""
    try:
        exports.run_export(job_id)
    except Exception:
        db.session.rollback()
        log.exception("export job %s failed", job_id)
        exports.fail_export(job_id, "The export failed; create a new export job")


@shared_task(name="portability.cleanup_exports")
def cleanup_exports() -> int:
    """Delete export jobs (and their files) past EXPORT_RETENTION_SECONDS."""
    return run_in_batches(
        exports.purge_expired_all_tenants, batch_size=current_app.config["CLEANUP_BATCH_SIZE"]
    )
