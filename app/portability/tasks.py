"""Import work for the worker: run one import job (resumable), and queue again the jobs
whose worker died (the periodic `requeue-stuck` job)."""

from __future__ import annotations

import logging

from celery import shared_task

from app.core.jobs import send_task, tenant_task
from app.portability import imports

log = logging.getLogger(__name__)


@tenant_task(name="portability.run_import", acks_late=True, reject_on_worker_lost=True)
def run_import_job(tenant_id: str, job_id: str) -> None:
    """Run (or resume) one import job in its tenant's scope, which @tenant_task enters."""
    imports.run_import(job_id)


@shared_task(name="portability.requeue_stale_imports")
def requeue_stale_imports() -> int:
    """Queue again every import job whose worker stopped sending heartbeats."""
    stale = imports.stale_imports_all_tenants()
    for tenant_id, job_id in stale:
        try:
            send_task(run_import_job, tenant_id, job_id)
        except Exception:
            log.warning("broker unavailable; %d import jobs wait for the next run", len(stale))
            break
    return len(stale)
