"""Import and export work for the worker: run one import job (resumable) or write one
export job's file, queue again the jobs whose worker died or whose message was lost (the
periodic `requeue-stuck` job), and delete expired exports (the periodic clean-up)."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from flask import current_app

from app.core.db import db
from app.core.jobs import run_in_batches, send_task, tenant_task
from app.portability import exports, imports

log = logging.getLogger(__name__)


@tenant_task(name="portability.run_import", acks_late=True, reject_on_worker_lost=True)
def run_import_job(tenant_id: str, job_id: str) -> None:
    """Run (or resume) one import job in its tenant's scope, which @tenant_task enters."""
    imports.run_import(job_id)


def _requeue(task: Any, stale: list[tuple[str, str]], kind: str) -> int:
    """Send `task` again for each (tenant, job); a broker outage leaves the rest to the
    next periodic run (the rows stay as they are)."""
    for tenant_id, job_id in stale:
        try:
            send_task(task, tenant_id, job_id)
        except Exception:
            log.warning("broker unavailable; %d %s jobs wait for the next run", len(stale), kind)
            break
    return len(stale)


@shared_task(name="portability.requeue_stale_imports")
def requeue_stale_imports() -> int:
    """Queue again every import job whose worker stopped sending heartbeats."""
    return _requeue(run_import_job, imports.stale_imports_all_tenants(), "import")


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


@shared_task(name="portability.requeue_stale_exports")
def requeue_stale_exports() -> int:
    """Queue again every export job left unfinished (its message lost, its worker dead)."""
    return _requeue(run_export_job, exports.stale_exports_all_tenants(), "export")


@shared_task(name="portability.cleanup_exports")
def cleanup_exports() -> int:
    """Delete export jobs (and their files) past EXPORT_RETENTION_SECONDS."""
    return run_in_batches(
        exports.purge_expired_all_tenants, batch_size=current_app.config["CLEANUP_BATCH_SIZE"]
    )
